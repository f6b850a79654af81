"""Native-resolution tiles keep every defect at camera scale, whole in at least one tile."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from inspection.detect.tiling import starts
from inspection.errors import DatasetError
from training.data import prepare
from training.tiles import tile_data


def test_tiles_cover_the_frame_with_the_asked_overlap():
    assert starts(640, 320, 64) == [0, 256, 320]
    assert starts(640, 320, 0) == [0, 320]
    assert starts(300, 320, 64) == [0]
    assert starts(1000, 320, 64)[-1] == 680


def test_every_defect_lies_whole_in_some_tile_at_its_original_pixel_size(tmp_path):
    from inspection.data.synth import write_dataset

    summary = write_dataset(tmp_path / "src", n=6, seed=2, width=640, height=480, val_fraction=0.5,
                            defects=(3, 5))
    data = prepare(summary.data_yaml, workdir=tmp_path / "work")
    tiled = tile_data(data, size=320, overlap=96, workdir=tmp_path / "tiles")
    spec = yaml.safe_load(tiled.yaml_path.read_text())
    assert spec["names"] == yaml.safe_load(summary.data_yaml.read_text())["names"]
    for split in ("train", "val"):
        for label in (summary.root / "labels" / split).glob("*.txt"):
            for line in label.read_text().splitlines():
                _, _, _, w, h = map(float, line.split())
                width_px, height_px = w * 640, h * 480
                if width_px > 96 or height_px > 96:
                    continue  # larger than the overlap: may be cut by every tile
                tiles = (tmp_path / "tiles" / "labels" / split).glob(f"{label.stem}_*.txt")
                sizes = [tuple(map(float, row.split()[3:5])) for t in tiles for row in t.read_text().splitlines()]
                assert any(np.allclose((tw * 320, th * 320), (width_px, height_px), atol=1.0)
                           for tw, th in sizes), f"{label.name}: {line} not whole in any tile"


def _image(path, shade=90, size=(128, 128)):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), shade, np.uint8))


def _yolo(root, labels: dict[str, str]):
    """A YOLO folder with one 128x128 image per entry of `labels` (path under images/)."""
    for n, (name, text) in enumerate(labels.items()):
        _image(root / "images" / name, shade=40 + 20 * n)
        label = (root / "labels" / name).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(text)
    (root / "data.yaml").write_text("names: [scratch, dent]\ntrain: images/train\nval: images/val\n")
    return root / "data.yaml"


def _tile_labels(folder):
    return {p.name: p.read_text() for p in sorted(folder.glob("*.txt"))}


def test_same_named_images_in_two_subfolders_get_their_own_tiles(tmp_path):
    data_yaml = _yolo(tmp_path / "src", {
        "train/station1/a.png": "0 0.25 0.25 0.1 0.1\n",
        "train/station2/a.png": "1 0.75 0.75 0.1 0.1\n",
        "val/a.png": "",
    })
    data = prepare(data_yaml, workdir=tmp_path / "work")

    tile_data(data, size=128, overlap=0, workdir=tmp_path / "tiles")

    labels = _tile_labels(tmp_path / "tiles" / "labels" / "train")
    assert set(labels) == {"station1_a_0_0.txt", "station2_a_0_0.txt"}
    assert labels["station1_a_0_0.txt"].startswith("0 0.250000 0.250000")
    assert labels["station2_a_0_0.txt"].startswith("1 0.750000 0.750000")
    assert len(list((tmp_path / "tiles" / "images" / "train").glob("*.png"))) == 2


def test_a_segmentation_label_is_tiled_as_its_bounding_box(tmp_path):
    """Ultralytics trains detection on a polygon's bounding box; so do the tiles, rather
    than reading the polygon's first four numbers as a box."""
    triangle = "0 0.1 0.1 0.3 0.1 0.2 0.3\n"  # box x 0.1-0.3, y 0.1-0.3: 12.8-38.4 px
    data_yaml = _yolo(tmp_path / "src", {"train/a.png": triangle, "val/b.png": ""})
    data = prepare(data_yaml, workdir=tmp_path / "work")

    tile_data(data, size=64, overlap=16, workdir=tmp_path / "tiles")

    [row] = _tile_labels(tmp_path / "tiles" / "labels" / "train")["a_0_0.txt"].splitlines()
    values = [float(v) for v in row.split()]
    assert len(values) == 5
    assert values == pytest.approx([0, 25.6 / 64, 25.6 / 64, 25.6 / 64, 25.6 / 64], abs=1e-5)


@pytest.mark.parametrize(
    ("label", "says"),
    [("0 0.5 0.5 wide 0.1\n", "line 1: expected 'class x_center"), ("7 0.5 0.5 0.1 0.1\n", "class id 7")],
    ids=["not-a-number", "unknown-class"],
)
def test_a_bad_label_stops_tiling_naming_the_file(tmp_path, label, says):
    data_yaml = _yolo(tmp_path / "src", {"train/a.png": label, "val/b.png": ""})
    data = prepare(data_yaml, workdir=tmp_path / "work")
    with pytest.raises(DatasetError, match=says) as raised:
        tile_data(data, size=64, overlap=16, workdir=tmp_path / "tiles")
    assert "a.txt" in str(raised.value)


def test_an_unreadable_image_stops_tiling_naming_the_file(tmp_path):
    data_yaml = _yolo(tmp_path / "src", {"train/a.png": "", "val/b.png": ""})
    (tmp_path / "src" / "images" / "train" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    data = prepare(data_yaml, workdir=tmp_path / "work")
    with pytest.raises(DatasetError, match=r"a\.png.*fix or delete it"):
        tile_data(data, size=64, overlap=16, workdir=tmp_path / "tiles")
