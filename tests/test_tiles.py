"""Native-resolution tiles keep every defect at camera scale, whole in at least one tile."""

from __future__ import annotations

import numpy as np
import yaml

from training.data import prepare
from training.tiles import starts, tile_data


def test_tiles_cover_the_frame_with_the_asked_overlap():
    assert starts(640, 320, 64) == [0, 256, 320]
    assert starts(640, 320, 0) == [0, 320]
    assert starts(300, 320, 64) == [0]
    assert starts(1000, 320, 64)[-1] == 680


def test_every_defect_lies_whole_in_some_tile_at_its_original_pixel_size(tmp_path):
    from inspection.synth import write_dataset

    summary = write_dataset(tmp_path / "src", n=6, seed=2, width=640, height=480, val_fraction=0.5,
                            defects=(3, 5))
    data = prepare(summary.data_yaml, workdir=tmp_path / "work")
    tiled = tile_data(data, size=320, overlap=96, workdir=tmp_path / "tiles")
    spec = yaml.safe_load(tiled.yaml_path.read_text())
    assert spec["names"] == yaml.safe_load(summary.data_yaml.read_text())["names"]
    for split in ("train", "val"):
        for label in (summary.root / "labels" / split).glob("*.txt"):
            for line in label.read_text().splitlines():
                _, cx, cy, w, h = map(float, line.split())
                width_px, height_px = w * 640, h * 480
                if width_px > 96 or height_px > 96:
                    continue  # larger than the overlap: may be cut by every tile
                tiles = (tmp_path / "tiles" / "labels" / split).glob(f"{label.stem}_*.txt")
                sizes = [tuple(map(float, row.split()[3:5])) for t in tiles for row in t.read_text().splitlines()]
                assert any(np.allclose((tw * 320, th * 320), (width_px, height_px), atol=1.0)
                           for tw, th in sizes), f"{label.name}: {line} not whole in any tile"
