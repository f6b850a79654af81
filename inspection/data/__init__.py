"""Labelled data: dataset versions, their statistics, the annotation formats, synthetic parts.

Example::

    from inspection.data.versions import open_version

    version = open_version("pcb@latest")
    for image in version.images(split="val"):
        print(image.path, image.detections.class_names)

`formats/` holds one module per annotation format, `synth/` the synthetic defect generator,
`versions.py` immutable content-hashed dataset versions, `stats.py` counts, sizes and diffs.
"""
