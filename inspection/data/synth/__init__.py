"""Synthetic defect images with exact labels: for tests, demos and a first model on CPU.

Example::

    >>> from inspection.data.synth import CLASS_NAMES, make_sample
    >>> sample = make_sample(7, width=320, height=240)
    >>> sample.image.shape, sample.image.dtype.name
    ((240, 320, 3), 'uint8')
    >>> CLASS_NAMES
    {0: 'scratch', 1: 'dent', 2: 'crack', 3: 'particle', 4: 'missing'}

    from inspection.data.synth import write_dataset

    summary = write_dataset("data/synth", n=200, seed=0, progress=True)
    print(summary.data_yaml)       # ready for `yolo train data=...`

Each frame is a surface (`surfaces`: brushed metal, PCB, electrode foil), up to four defects
(`defects`), then light, blur and noise (`optics`). Every box is the tight box of the pixels
its defect changed. The same seed gives the same bytes; image i of a dataset depends only on
(seed, i). Imports numpy, OpenCV, PyYAML and tqdm only.
"""

from inspection.data.synth.defects import CLASS_NAMES
from inspection.data.synth.generator import (
    DatasetSummary,
    Sample,
    is_val,
    make_sample,
    sample_seed,
    write_dataset,
)
from inspection.data.synth.surfaces import SURFACES

__all__ = [
    "CLASS_NAMES",
    "SURFACES",
    "DatasetSummary",
    "Sample",
    "is_val",
    "make_sample",
    "sample_seed",
    "write_dataset",
]
