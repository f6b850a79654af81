"""Training data for a good-only recipe: good frames made defective, one class `anomaly`.

Example::

    from training.goodonly_data import synthesize_data

    data = prepare("GOOD@v1", workdir=run / "data", references=True)   # good frames, goldens
    data = synthesize_data(data, workdir=run / "synthetic", options=recipe.good_only, seed=0)
    data.names                       # {0: 'anomaly'}; then compose_data as any reference recipe

Each good frame of the train and val splits is written `options.variants` times with
synthetic defects (training/synthetic_defects.py) and, with `options.keep_good`, once as
itself with an empty label, so the model also learns what a good frame against its golden
part looks like. Every image keeps its golden part (linked under references/), so
training/reference_data.py composes it as it composes any reference data.

The variants are made once, when the run is set up, and kept in the run folder under
$QC_HOME/runs (pre-generated, not remade per epoch); Ultralytics' flips, shifts, scales and
mosaic then vary them every epoch. A label a good frame carries is ignored: the frames are
good by the data's own word, and a box on one would be a defect we were told is not there.
Image i of a split depends on (seed, split, i) alone.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from inspection.data.formats.yolo import read_data_yaml, reference_path_for
from inspection.detect.imaging import read_file
from inspection.errors import DatasetError, ImageError
from inspection.evaluate.scoring import AGNOSTIC
from training.data import TrainingData, link_file
from training.recipe import GoodOnlyOptions
from training.synthetic_defects import add_defects

SPLITS = ("train", "val")


def synthesize_data(data: TrainingData, *, workdir: Path, options: GoodOnlyOptions, seed: int = 0) -> TrainingData:
    """Write defective variants of every good frame of `data` (prepared with references)."""
    source = read_data_yaml(data.yaml_path, splits=SPLITS)
    spec: dict = {"path": str(workdir.resolve()), "names": dict(AGNOSTIC)}
    for split_index, split in enumerate(SPLITS):
        items = source.splits.get(split, ())
        for index, item in enumerate(tqdm(items, desc=f"synthetic defects on {split}", unit="frame", leave=False)):
            golden = reference_path_for(item.path)
            if golden is None:
                raise DatasetError(f"{item.path}: no golden part beside it; a good-only recipe needs "
                                   "each good frame's reference (import with --references DIR)")
            try:
                frame = read_file(item.path)
            except ImageError as error:
                raise DatasetError(f"{error}; fix or delete it (good frames, {split})") from error
            rng = np.random.default_rng([seed, split_index, index])
            stem = item.relative.with_suffix("")
            if options.keep_good:
                _write(workdir, split, stem.with_name(f"{stem.name}_good"), frame, np.zeros((0, 4)), golden)
            for variant in range(options.variants):
                made = add_defects(frame, rng, count=options.count, size=options.size,
                                   kinds=tuple(options.kinds), min_box=options.min_box)
                _write(workdir, split, stem.with_name(f"{stem.name}_syn{variant}"), made.image, made.boxes, golden)
        spec[split] = f"images/{split}"
    yaml_path = workdir / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return replace(data, yaml_path=yaml_path, names=dict(AGNOSTIC))


def _write(workdir: Path, split: str, stem: Path, image: np.ndarray, boxes: np.ndarray, golden: Path) -> None:
    # PNG: JPEG would smear a synthetic defect's edges into its surroundings, and re-encode
    # the frame's own JPEG noise a second time.
    target = workdir / "images" / split / stem.with_suffix(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), image):
        raise DatasetError(f"{target}: OpenCV could not write the frame; check the disk")
    height, width = image.shape[:2]
    label = workdir / "labels" / split / stem.with_suffix(".txt")
    label.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"0 {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} {(x1 - x0) / width:.6f} "
             f"{(y1 - y0) / height:.6f}" for x0, y0, x1, y1 in boxes]
    label.write_text("".join(line + "\n" for line in lines))
    link_file(golden, (workdir / "references" / split / stem).with_suffix(golden.suffix))
