"""Training data for reference recipes: each image composed with its aligned golden part.

Example::

    from training.reference_data import compose_data

    composed = compose_data(data, options=recipe.reference, workdir=run_folder / "composed",
                            seed=recipe.seed)
    composed.yaml_path    # images are now [frame, reference, |frame - reference|] planes

The composite is made exactly as the service makes it (inspection/detect/reference.py): the
reference is aligned onto the frame by the same phase correlation, then composed. Training
frames then get a small random misregistration of the reference (`shift` pixels, `degrees`
of rotation, drawn per image from the recipe's seed), so the model learns to ignore what
alignment leaves behind: edge slivers in the difference plane that are not defects. Val is
composed without it, as the line sees it.

Augmentation stays identical for frame and reference because they travel as one image:
Ultralytics' flips, translation, scale and mosaic move all three planes together. Its HSV
hue and saturation steps would mix the planes, so a reference recipe refuses them (value,
which scales the planes alike, is allowed; see training/recipe.py), as it refuses
albumentations steps that do not treat the planes alike.

Composites are written as PNG (lossless: JPEG's colour subsampling would smear the planes
into each other), with the label linked beside, so tiles (training/tiles.py) cut frame and
reference identically.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from inspection.data.formats.yolo import label_path_for, read_data_yaml, reference_path_for
from inspection.detect.imaging import read_file
from inspection.detect.reference import CHANNELS, Motion, align, compose
from inspection.errors import DatasetError, ImageError
from inspection.evaluate.scoring import COMPOSED_KEY
from training.data import TrainingData, link_file


def misregister(reference: np.ndarray, rng: np.random.Generator, *, shift: float, degrees: float) -> np.ndarray:
    """`reference` moved by up to `shift` pixels and turned by up to `degrees` about its
    centre, at random; the uncovered border repeats the edge."""
    if shift <= 0 and degrees <= 0:
        return reference
    height, width = reference.shape[:2]
    angle = float(rng.uniform(-degrees, degrees)) if degrees > 0 else 0.0
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    if shift > 0:
        matrix[:, 2] = matrix[:, 2] + rng.uniform(-shift, shift, size=2)
    return cv2.warpAffine(reference, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def compose_data(data: TrainingData, *, workdir: Path, shift: float, degrees: float,
                 motion: Motion | str = Motion.TRANSLATION, seed: int = 0,
                 splits: tuple[str, ...] = ("train", "val")) -> TrainingData:
    """Write every image of `data` (prepared with references) composed with its reference."""
    source = read_data_yaml(data.yaml_path, splits=splits)
    # The key tells scoring these images are the network's input already (export checks).
    spec: dict = {"path": str(workdir.resolve()), "names": source.names, COMPOSED_KEY: ",".join(CHANNELS)}
    rng = np.random.default_rng(seed)
    for split in splits:
        items = source.splits.get(split, ())
        for item in tqdm(items, desc=f"composing {split} with references", unit="image", leave=False):
            golden_path = reference_path_for(item.path)
            if golden_path is None:
                raise DatasetError(f"{item.path}: no reference image beside it; prepare the data "
                                   "with references (a references/ or templates/ folder)")
            try:
                frame, golden = read_file(item.path), read_file(golden_path)
            except ImageError as error:
                raise DatasetError(f"{error}; fix or delete it (composing {split})") from error
            aligned = align(frame, golden, motion=motion).reference
            if split == "train":
                aligned = misregister(aligned, rng, shift=shift, degrees=degrees)
            relative = item.relative.with_suffix(".png")
            target = workdir / "images" / split / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), compose(frame, aligned)):
                raise DatasetError(f"{target}: OpenCV could not write the composite; check the disk")
            label = label_path_for(item.path, root=Path(item.path.anchor))
            if label.is_file():
                link_file(label, (workdir / "labels" / split / relative).with_suffix(".txt"))
        spec[split] = f"images/{split}"
    yaml_path = workdir / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return replace(data, yaml_path=yaml_path)
