"""The model registry and the promotion gate: which ONNX file is in production, and why.

Example::

    from inspection.models.registry import Registry
    from inspection.settings import Settings

    registry = Registry(Settings().models_dir)
    print(registry.production("default").model_path)

`registry.py` holds versions and the atomic production pointer, `gate.py` the comparison
that a candidate must pass, `promotion.py` the gate applied to registry entries.
"""
