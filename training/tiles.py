"""Native-resolution tiles: train on crops of full-size frames, infer on the whole frame.

Small defects vanish when a frame is shrunk to the network input: a 10-pixel pin-hole in a
640-pixel DeepPCB image is 5 pixels at imgsz 320. Cutting the frames into overlapping tiles of
the training size keeps every defect at the pixel scale the camera sees, at the cost per
iteration of a small input; the trained network, being fully convolutional, is then exported
at the full frame size (the recipe's `export_imgsz`) and sees the same scale on the line.

Tiles overlap by `overlap` pixels, so a defect smaller than the overlap lies whole in at least
one tile. A box cut by a tile edge is kept, clipped, when at least `min_visible` of its area is
inside; a sliver below that is dropped (its few pixels stay, unlabelled).

Example::

    tiled = tile_data(data, size=320, overlap=64, workdir=run_folder / "tiles")
    tiled.yaml_path   # a data.yaml of tiles, same class names, train and val tiled
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from inspection.data.formats.yolo import label_path_for, parse_labels, read_data_yaml
from inspection.detect.imaging import read_file
from inspection.detect.tiling import starts
from inspection.errors import ConfigError, DatasetError, ImageError
from training.data import TrainingData


def _read_boxes(image: Path, *, width: int, height: int, names: dict[int, str]) -> np.ndarray:
    """(class, x1, y1, x2, y2) rows in pixels, read with the rules every YOLO reader applies
    (a segmentation polygon becomes its bounding box); `DatasetError` for a bad label file."""
    label = label_path_for(image, root=Path(image.anchor))
    if not label.is_file():
        return np.zeros((0, 5), np.float32)  # no label file: no defects, as Ultralytics reads it
    detections, problems = parse_labels(
        label.read_text(encoding="utf-8", errors="replace"),
        image_wh=(width, height), names=names, file=str(label), image=str(image),
    )
    if detections is None:
        raise DatasetError(str(problems[0]))
    return np.column_stack([detections.class_id.astype(np.float32),
                            detections.xyxy.astype(np.float32)]).reshape(-1, 5)


def tile_data(data: TrainingData, *, size: int, overlap: int, workdir: Path,
              min_visible: float = 0.4, splits: tuple[str, ...] = ("train", "val")) -> TrainingData:
    if not 0 <= overlap < size:
        raise ConfigError(f"tile_overlap {overlap} must be at least 0 and below the tile size {size}")
    source = read_data_yaml(data.yaml_path, splits=splits)
    out_spec = {"path": str(workdir.resolve()), "names": source.names}
    for split in splits:
        (workdir / "images" / split).mkdir(parents=True, exist_ok=True)
        (workdir / "labels" / split).mkdir(parents=True, exist_ok=True)
        for item in tqdm(source.splits.get(split, ()), desc=f"tiling {split}", unit="image", leave=False):
            try:
                image = read_file(item.path)  # the line's decoder, BGR as cv2.imwrite wants
            except ImageError as error:
                raise DatasetError(f"{error}; fix or delete it (tiling {split})") from error
            height, width = image.shape[:2]
            boxes = _read_boxes(item.path, width=width, height=height, names=source.names)
            areas = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2])
            # Named from the path under the split folder: same-named images of two
            # subfolders get different tiles.
            name = "_".join(item.relative.with_suffix("").parts)
            for y in starts(height, size, overlap):
                for x in starts(width, size, overlap):
                    crop = image[y:y + size, x:x + size]
                    ch, cw = crop.shape[:2]
                    clipped = boxes.copy()
                    clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]] - x, 0, cw)
                    clipped[:, [2, 4]] = np.clip(clipped[:, [2, 4]] - y, 0, ch)
                    visible = (clipped[:, 3] - clipped[:, 1]) * (clipped[:, 4] - clipped[:, 2])
                    keep = visible >= min_visible * np.maximum(areas, 1e-6)
                    stem = f"{name}_{x}_{y}"
                    cv2.imwrite(str(workdir / "images" / split / f"{stem}.png"), crop)
                    lines = [
                        f"{int(c)} {(x1 + x2) / 2 / cw:.6f} {(y1 + y2) / 2 / ch:.6f} "
                        f"{(x2 - x1) / cw:.6f} {(y2 - y1) / ch:.6f}"
                        for c, x1, y1, x2, y2 in clipped[keep]
                    ]
                    (workdir / "labels" / split / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines))
        out_spec[split] = f"images/{split}"
    yaml_path = workdir / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(out_spec, sort_keys=False))
    return replace(data, yaml_path=yaml_path)
