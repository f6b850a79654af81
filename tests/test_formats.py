"""Annotation formats: what goes out comes back, and bad input is reported, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.data.formats import (
    LabelledImage,
    Problem,
    coco,
    format_module,
    labelstudio,
    voc,
    yolo,
)
from inspection.detections import Detections
from inspection.errors import DatasetError

NAMES = {0: "scratch", 1: "dent", 2: "stain"}
SIZES = [(96, 64), (80, 80), (64, 120), (101, 77), (128, 96), (72, 50)]
SPLITS = ["train", "train", "val", "test", "train", None]


def write_image(path: Path, size: tuple[int, int], *, seed: int) -> Path:
    """A small noise image: every seed gives different bytes, so a different content hash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def random_boxes(size: tuple[int, int], *, seed: int, integer: bool = False) -> Detections:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 4))
    width, height = size
    corner = rng.uniform(0, [width * 0.6, height * 0.6], (n, 2))
    extent = rng.uniform(2, [width * 0.4, height * 0.4], (n, 2))
    xyxy = np.hstack([corner, corner + extent])
    if integer:
        xyxy = np.round(xyxy)
    return Detections(
        xyxy=xyxy.astype(np.float32),
        confidence=np.ones(n),
        class_id=rng.integers(0, len(NAMES), n),
        names=NAMES,
        image_wh=size,
    )


def make_images(
    folder: Path, *, integer: bool = False, suffix: str = ".png"
) -> list[LabelledImage]:
    return [
        LabelledImage(
            path=write_image(folder / f"part_{i}{suffix}", size, seed=i),
            detections=random_boxes(size, seed=100 + i, integer=integer),
            split=split,
        )
        for i, (size, split) in enumerate(zip(SIZES, SPLITS, strict=True))
    ]


@pytest.fixture
def images(tmp_path: Path) -> list[LabelledImage]:
    return make_images(tmp_path / "source")


def read_back(items) -> tuple[dict[str, LabelledImage], list[Problem]]:
    items = list(items)
    problems = [item for item in items if isinstance(item, Problem)]
    labelled = {item.path.name: item for item in items if isinstance(item, LabelledImage)}
    return labelled, problems


def assert_same_boxes(original: LabelledImage, read: LabelledImage, *, atol: float = 1e-3) -> None:
    assert read.image_wh == original.image_wh
    assert read.names == NAMES
    np.testing.assert_allclose(read.detections.xyxy, original.detections.xyxy, atol=atol, rtol=0)
    np.testing.assert_array_equal(read.detections.class_id, original.detections.class_id)
    assert (read.detections.confidence == 1.0).all()


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yolo", "coco", "labelstudio"])
def test_a_round_trip_keeps_every_box_to_float32_precision(tmp_path, images, fmt):
    module = format_module(fmt)
    written = module.write(images, tmp_path / fmt, names=NAMES)
    # Label Studio names classes without numbering them: the ids come from the caller.
    options = {"names": list(NAMES.values())} if fmt == "labelstudio" else {}

    labelled, problems = read_back(module.read(written, **options))

    assert problems == []
    assert sorted(labelled) == sorted(image.path.name for image in images)
    for image in images:
        assert_same_boxes(image, labelled[image.path.name])


@pytest.mark.parametrize("fmt", ["yolo", "coco"])
def test_splits_survive_a_round_trip(tmp_path, images, fmt):
    module = format_module(fmt)
    labelled, _ = read_back(module.read(module.write(images, tmp_path / fmt, names=NAMES)))

    assert {name: item.split for name, item in labelled.items()} == {
        image.path.name: image.split for image in images
    }


@pytest.mark.parametrize("one_based", [False, True])
def test_voc_round_trip_keeps_whole_pixel_boxes_exactly(tmp_path, one_based):
    images = make_images(tmp_path / "source", integer=True)
    written = voc.write(images, tmp_path / "voc", names=NAMES, one_based=one_based)

    labelled, problems = read_back(
        voc.read(written, names=list(NAMES.values()), one_based=one_based)
    )

    assert problems == []
    for image in images:
        assert_same_boxes(image, labelled[image.path.name], atol=0)
        assert labelled[image.path.name].split == image.split


def test_voc_stores_whole_pixels_so_a_box_moves_at_most_half_a_pixel(tmp_path, images):
    labelled, _ = read_back(
        voc.read(voc.write(images, tmp_path / "voc", names=NAMES), names=list(NAMES.values()))
    )

    for image in images:
        assert_same_boxes(image, labelled[image.path.name], atol=0.5)


def test_voc_numbers_new_classes_after_the_given_ones_in_sorted_order(tmp_path, images):
    written = voc.write(images, tmp_path / "voc", names=NAMES)

    labelled, _ = read_back(voc.read(written, names=["stain"]))

    assert next(iter(labelled.values())).names == {0: "stain", 1: "dent", 2: "scratch"}


def test_writers_refuse_a_folder_that_holds_files(tmp_path, images):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")

    with pytest.raises(DatasetError, match="not empty"):
        yolo.write(images, tmp_path / "out", names=NAMES)


# -- YOLO layouts and bad input ---------------------------------------------------------------


def write_yolo(root: Path, images: list[LabelledImage], *, sub: str = "") -> None:
    for image in images:
        target = root / "images" / sub / image.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(image.path.read_bytes())
        label = root / "labels" / sub / (image.path.stem + ".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(yolo.label_text(image.detections))


def test_yolo_reads_classes_txt_and_split_folders(tmp_path, images):
    root = tmp_path / "yolo"
    write_yolo(root, images[:3], sub="train")
    write_yolo(root, images[3:], sub="valid")
    (root / "classes.txt").write_text("scratch\ndent\nstain\n")

    labelled, problems = read_back(yolo.read(root))

    assert problems == []
    assert {item.split for item in labelled.values()} == {"train", "val"}
    assert labelled["part_3.png"].lineage["source_split"] == "val"
    assert labelled["part_3.png"].lineage["source_file"].endswith("labels/valid/part_3.txt")
    for image in images:
        assert_same_boxes(image, labelled[image.path.name])


def test_yolo_reads_a_data_yaml_with_a_names_mapping(tmp_path, images):
    root = tmp_path / "yolo"
    write_yolo(root, images)
    (root / "data.yaml").write_text(
        "train: images\nval: images\nnames:\n  0: scratch\n  1: dent\n  2: stain\n"
    )

    labelled, problems = read_back(yolo.read(root / "data.yaml"))

    assert problems == [] and len(labelled) == len(images)


def test_yolo_without_class_names_is_refused_with_the_fix(tmp_path, images):
    write_yolo(tmp_path / "yolo", images)

    with pytest.raises(DatasetError, match=r"data\.yaml"):
        list(yolo.read(tmp_path / "yolo"))


@pytest.fixture
def broken_yolo(tmp_path, images) -> Path:
    """Six images: one without a label file, one with class 7 of 3, one corrupt image, one
    with a zero-area box next to a good one, one with a box far past the edge, one fine."""
    root = tmp_path / "broken"
    write_yolo(root, images)
    (root / "classes.txt").write_text("scratch\ndent\nstain\n")
    (root / "labels" / "part_0.txt").unlink()
    (root / "labels" / "part_1.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    (root / "images" / "part_2.png").write_bytes(b"not a png at all")
    (root / "labels" / "part_3.txt").write_text("0 0.5 0.5 0.0 0.2\n1 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "part_4.txt").write_text("1 0.98 0.5 0.2 0.2\n")
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    return root


def test_bad_yolo_files_are_reported_by_name_and_the_rest_imports(broken_yolo):
    labelled, problems = read_back(yolo.read(broken_yolo))

    by_kind = {problem.kind: problem for problem in problems}
    assert by_kind["missing_label"].file.endswith("labels/part_0.txt")
    assert "part_0.png" in by_kind["missing_label"].message
    assert by_kind["unknown_class"].file.endswith("labels/part_1.txt")
    assert "line 1" in by_kind["unknown_class"].message and "7" in by_kind["unknown_class"].message
    assert by_kind["unreadable_image"].file.endswith("images/part_2.png")
    assert by_kind["orphan_label"].file.endswith("labels/orphan.txt")
    assert all(problem.skipped for problem in problems)

    assert sorted(labelled) == ["part_3.png", "part_4.png", "part_5.png"]
    zero_area = labelled["part_3.png"]
    assert len(zero_area.detections) == 1 and zero_area.problems[0].kind == "zero_area"
    assert not zero_area.problems[0].skipped
    clipped = labelled["part_4.png"]
    assert clipped.problems[0].kind == "out_of_bounds"
    assert clipped.detections.xyxy[0, 2] == clipped.image_wh[0]


def test_yolo_can_read_images_without_label_files_as_defect_free(broken_yolo):
    labelled, problems = read_back(yolo.read(broken_yolo, allow_missing_labels=True))

    assert "missing_label" not in {problem.kind for problem in problems}
    assert len(labelled["part_0.png"].detections) == 0


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("0 0.5 0.5 0.2", "bad_label"),
        ("dent 0.5 0.5 0.2 0.2", "bad_label"),
        ("0 nan 0.5 0.2 0.2", "bad_label"),
        ("0 50 40 20 20", "out_of_bounds"),  # pixels where fractions belong
    ],
)
def test_a_malformed_yolo_line_leaves_its_image_out(line, kind):
    detections, problems = yolo.parse_labels(line, image_wh=(100, 100), names=NAMES, file="a.txt")

    assert detections is None
    assert problems[0].kind == kind and problems[0].file == "a.txt"


def test_yolo_reads_a_segmentation_polygon_as_its_bounding_box():
    detections, _ = yolo.parse_labels(
        "1 0.1 0.2 0.5 0.2 0.3 0.6", image_wh=(100, 50), names=NAMES, file="a.txt"
    )

    np.testing.assert_allclose(detections.xyxy, [[10, 10, 50, 30]], atol=1e-4)


# -- COCO ---------------------------------------------------------------------------------------


def test_bad_coco_entries_are_reported_by_name_and_the_rest_imports(tmp_path, images):
    written = coco.write(images, tmp_path / "coco", names=NAMES)
    annotations = written / "annotations" / "train.json"
    document = json.loads(annotations.read_text())
    document["images"][0]["width"] += 1  # part_0: size mismatch
    document["images"].append({"id": 99, "file_name": "train/gone.png", "width": 8, "height": 8})
    document["annotations"].append(
        {
            "id": 500,
            "image_id": document["images"][1]["id"],
            "category_id": 42,
            "bbox": [1, 1, 4, 4],
        }
    )
    annotations.write_text(json.dumps(document))

    labelled, problems = read_back(coco.read(written))

    kinds = {problem.kind: problem for problem in problems}
    assert set(kinds) == {"size_mismatch", "missing_image", "unknown_class"}
    assert all(problem.file == str(annotations) for problem in problems)
    assert "gone.png" in kinds["missing_image"].message
    assert "42" in kinds["unknown_class"].message
    assert sorted(labelled) == sorted(image.path.name for image in images[2:])


def test_coco_categories_map_to_class_ids_in_id_order(tmp_path, images):
    written = coco.write(images, tmp_path / "coco", names=NAMES)

    labelled, _ = read_back(coco.read(written))

    assert next(iter(labelled.values())).names == NAMES


# -- Label Studio ---------------------------------------------------------------------------------


def region(box_percent, label, *, size, rotation=0.0, region_id="a"):
    x, y, w, h = box_percent
    return {
        "id": region_id,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": size[0],
        "original_height": size[1],
        "value": {
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "rotation": rotation,
            "rectanglelabels": [label],
        },
    }


@pytest.fixture
def label_studio_export(tmp_path) -> Path:
    """Label Studio's media folder and a JSON export referring to it four ways."""
    media = tmp_path / "media"
    write_image(media / "upload" / "3" / "ab12cd34-frame1.png", (200, 100), seed=1)
    write_image(media / "line2" / "frame2.png", (200, 100), seed=2)
    write_image(media / "frame3.png", (200, 100), seed=3)
    write_image(media / "frame4.png", (200, 100), seed=4)
    size = (200, 100)
    tasks = [
        {
            "id": 11,
            "data": {"image": "/data/upload/3/ab12cd34-frame1.png", "inspection_id": "insp-7"},
            "annotations": [
                {
                    "id": 1,
                    "updated_at": "2024-05-01T10:00:00Z",
                    "result": [region((10, 20, 30, 40), "scratch", size=size)],
                },
                {
                    "id": 2,
                    "updated_at": "2024-05-02T10:00:00Z",
                    "result": [region((10, 20, 25, 40), "dent", size=size)],
                },
                {
                    "id": 3,
                    "updated_at": "2024-05-03T10:00:00Z",
                    "was_cancelled": True,
                    "result": [],
                },
            ],
        },
        {
            "id": 12,
            "data": {"image": "/data/local-files/?d=line2/frame2.png"},
            "annotations": [
                {"id": 4, "result": [region((50, 50, 10, 20), "scratch", size=size, rotation=90)]}
            ],
        },
        {
            "id": 13,
            "data": {"image": "https://cameras.example/line1/frame3.png?sig=x"},
            "annotations": [
                {
                    "id": 5,
                    "result": [
                        {"type": "choices", "from_name": "verdict", "value": {"choices": ["OK"]}}
                    ],
                }
            ],
        },
        {"id": 14, "data": {"image": "frame4.png"}, "annotations": []},
        {
            "id": 15,
            "data": {"image": "/data/upload/3/missing.png"},
            "annotations": [{"id": 6, "result": []}],
        },
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    return export


def test_label_studio_export_is_read_with_the_latest_submitted_annotation(
    label_studio_export, tmp_path
):
    labelled, problems = read_back(labelstudio.read(label_studio_export, images=tmp_path / "media"))

    first = labelled["ab12cd34-frame1.png"]
    assert first.names == {0: "dent", 1: "scratch"}
    np.testing.assert_allclose(first.detections.xyxy, [[20, 20, 70, 60]], atol=1e-4)
    assert first.detections.class_names == ["dent"]
    assert first.lineage["labelstudio_task_id"] == 11
    assert first.lineage["labelstudio_annotation_id"] == 2
    assert first.lineage["inspection_id"] == "insp-7"

    verdict_only = labelled["frame3.png"]
    assert len(verdict_only.detections) == 0  # a choice is no region: a defect-free image

    kinds = {problem.kind: problem for problem in problems}
    assert set(kinds) == {"not_annotated", "missing_image"}
    assert "task 14" in kinds["not_annotated"].message
    assert (
        "task 15" in kinds["missing_image"].message
        and "missing.png" in kinds["missing_image"].message
    )
    assert all(problem.file == str(label_studio_export) for problem in problems)


def test_label_studio_rotated_boxes_become_their_upright_bounds_in_pixels(
    label_studio_export, tmp_path
):
    labelled, _ = read_back(labelstudio.read(label_studio_export, images=tmp_path / "media"))

    rotated = labelled["frame2.png"]
    # 20 x 20 px at (100, 50), turned 90 degrees clockwise about its top-left corner.
    np.testing.assert_allclose(rotated.detections.xyxy, [[80, 50, 100, 70]], atol=1e-4)
    assert rotated.problems[0].kind == "rotated_box"


# -- other libraries read what we write ---------------------------------------------------------


def test_supervision_reads_our_yolo_coco_and_voc_to_the_same_boxes(tmp_path, images):
    sv = pytest.importorskip("supervision")
    flat = [LabelledImage(path=i.path, detections=i.detections) for i in images]
    out = tmp_path / "out"
    data_yaml = yolo.write(flat, out / "yolo", names=NAMES)
    coco_dir = coco.write(flat, out / "coco", names=NAMES)
    integer = [
        LabelledImage(path=i.path, detections=random_boxes(i.image_wh, seed=7, integer=True))
        for i in flat
    ]
    voc_dir = voc.write(integer, out / "voc", names=NAMES, one_based=True)

    from_yolo = sv.DetectionDataset.from_yolo(
        images_directory_path=str(out / "yolo" / "images"),
        annotations_directory_path=str(out / "yolo" / "labels"),
        data_yaml_path=str(data_yaml),
    )
    from_coco = sv.DetectionDataset.from_coco(
        images_directory_path=str(coco_dir / "images"),
        annotations_path=str(coco_dir / "annotations.json"),
    )
    from_voc = sv.DetectionDataset.from_pascal_voc(
        images_directory_path=str(voc_dir / "JPEGImages"),
        annotations_directory_path=str(voc_dir / "Annotations"),
    )
    for dataset, originals, atol in (
        (from_yolo, flat, 1e-3),
        (from_coco, flat, 1e-3),
        (from_voc, integer, 0),
    ):
        by_name = {Path(path).name: dataset.annotations[path] for path in dataset.image_paths}
        for image in originals:
            got = by_name[image.path.name]
            expected = image.detections
            order = np.lexsort(expected.xyxy.T[::-1])
            got_order = np.lexsort(got.xyxy.T[::-1])
            np.testing.assert_allclose(got.xyxy[got_order], expected.xyxy[order], atol=atol)
            names = [dataset.classes[c] for c in got.class_id[got_order]]
            assert names == [NAMES[int(c)] for c in expected.class_id[order]]


def test_pycocotools_loads_our_coco(tmp_path, images, capsys):
    from pycocotools.coco import COCO

    written = coco.write(images[:1], tmp_path / "coco", names=NAMES)

    api = COCO(str(written / "annotations" / "train.json"))

    assert [c["name"] for c in api.loadCats(api.getCatIds())] == ["scratch", "dent", "stain"]
    boxes = [a["bbox"] for a in api.loadAnns(api.getAnnIds())]
    x, y, x2, y2 = images[0].detections.xyxy[0]
    assert boxes[0] == pytest.approx([x, y, x2 - x, y2 - y])


def test_label_studio_converter_reads_our_tasks_to_the_same_boxes(tmp_path, images):
    pytest.importorskip("label_studio_sdk")
    from label_studio_sdk.converter import Converter

    tasks = labelstudio.write(images[:2], tmp_path / "ls", names=NAMES)
    config = (
        '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
        + "".join(f'<Label value="{name}"/>' for name in NAMES.values())
        + "</RectangleLabels></View>"
    )
    converter = Converter(config=config, project_dir=str(tmp_path / "ls"), download_resources=False)
    converter.convert_to_coco(str(tasks), str(tmp_path / "converted"), is_dir=False)

    result = json.loads((tmp_path / "converted" / "result.json").read_text())
    categories = {c["id"]: c["name"] for c in result["categories"]}
    got = sorted((categories[a["category_id"]], *a["bbox"]) for a in result["annotations"])
    expected = sorted(
        (NAMES[int(c)], x1, y1, x2 - x1, y2 - y1)
        for image in images[:2]
        for c, (x1, y1, x2, y2) in zip(image.detections.class_id, image.detections.xyxy.tolist(), strict=True)
    )
    assert [g[0] for g in got] == [e[0] for e in expected]
    np.testing.assert_allclose([g[1:] for g in got], [e[1:] for e in expected], atol=1e-3)
