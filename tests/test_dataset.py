"""Versioned datasets: immutable, content-addressed, stably split, readable by Ultralytics."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from inspection.data.formats import LabelledImage, yolo
from inspection.data.stats import dataset_stats, diff_versions, plot_stats
from inspection.data.versions import (
    import_dataset,
    list_versions,
    materialise,
    open_version,
    split_for,
    write_version,
)
from inspection.detections import Detections
from inspection.errors import DatasetError

NAMES = {0: "scratch", 1: "dent"}


def write_image(path: Path, *, seed: int, size: tuple[int, int] = (64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def boxes_for(seed: int, size: tuple[int, int] = (64, 48)) -> Detections:
    """Seed 0 mod 5 gives no boxes (a defect-free part); the others one or two."""
    n = [0, 1, 2, 1, 1][seed % 5]
    rng = np.random.default_rng(1000 + seed)
    corner = rng.uniform(0, 30, (n, 2))
    xyxy = np.hstack([corner, corner + rng.uniform(4, 16, (n, 2))])
    return Detections(
        xyxy=xyxy,
        confidence=np.ones(n),
        class_id=rng.integers(0, 2, n),
        names=NAMES,
        image_wh=size,
    )


def make_yolo(root: Path, seeds, *, data_yaml: bool = True) -> Path:
    for seed in seeds:
        write_image(root / "images" / f"part_{seed}.png", seed=seed)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"part_{seed}.txt").write_text(yolo.label_text(boxes_for(seed)))
    if data_yaml:
        (root / "data.yaml").write_text("names: [scratch, dent]\n")
    return root


@pytest.fixture
def store(tmp_path) -> Path:
    return tmp_path / "datasets"


@pytest.fixture
def v1(tmp_path, store):
    return import_dataset(
        make_yolo(tmp_path / "src", range(20)), format="yolo", name="bottles", root=store
    )


# -- what a version holds ----------------------------------------------------------------------


def test_an_import_writes_images_by_content_hash_labels_and_a_manifest(v1, store):
    manifest = json.loads((store / "bottles" / "v1" / "manifest.json").read_text())

    assert (manifest["name"], manifest["version"], v1.ref) == ("bottles", "v1", "bottles@v1")
    assert manifest["source"]["format"] == "yolo"
    assert manifest["classes"] == {"0": "scratch", "1": "dent"}
    assert len(manifest["images"]) == 20 and manifest["problems"] == []
    entry = manifest["images"][0]
    image = store / "bottles" / "v1" / entry["file"]
    assert image.name == f"{entry['sha256']}.png"
    assert (entry["width"], entry["height"]) == (64, 48)
    assert entry["split"] in ("train", "val", "test")
    assert entry["lineage"]["source_file"].endswith(".txt")
    assert (store / "bottles" / "v1" / entry["label"]).read_text().count("\n") == entry["boxes"]
    assert len(manifest["content_hash"]) == 64
    assert v1.verify() == []


def test_a_version_reads_back_with_the_boxes_it_was_given(v1):
    by_source = {Path(i.lineage["source_image"]).stem: i for i in v1.images()}

    for seed in range(20):
        expected = boxes_for(seed)
        got = by_source[f"part_{seed}"].detections
        np.testing.assert_allclose(got.xyxy, expected.xyxy, atol=1e-3)
        np.testing.assert_array_equal(got.class_id, expected.class_id)


def test_a_reimport_makes_v2_and_never_touches_v1(tmp_path, v1, store):
    v2 = import_dataset(tmp_path / "src", format="yolo", name="bottles", root=store)

    assert v2.version == "v2"
    assert v2.content_hash == v1.content_hash  # same data, same hash
    assert v1.verify() == [] and v2.verify() == []
    assert [v.ref for v in list_versions(root=store)] == ["bottles@v1", "bottles@v2"]


def test_an_existing_version_is_refused(tmp_path, v1, store):
    with pytest.raises(DatasetError, match="immutable"):
        import_dataset(tmp_path / "src", format="yolo", name="bottles", version="v1", root=store)


def test_versions_are_read_only_on_disk(v1):
    writable = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    for path in [v1.path, *v1.path.rglob("*")]:
        assert path.stat().st_mode & writable == 0, path


def test_a_label_deleted_from_a_version_is_reported_as_damage_not_a_traceback(v1):
    entry = v1.entries[0]
    label = v1.path / entry["label"]
    label.parent.chmod(0o755)
    label.unlink()
    with pytest.raises(DatasetError, match="damaged after it was written"):
        list(v1.images())


def test_a_crash_during_import_leaves_no_half_version(tmp_path, store):
    def failing():
        yield LabelledImage(path=write_image(tmp_path / "a.png", seed=1), detections=boxes_for(1))
        raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        write_version(failing(), name="bottles", source={"format": "test"}, root=store)

    assert list((store / "bottles").iterdir()) == []


def test_versions_are_opened_by_name_version_or_latest(tmp_path, v1, store):
    v2 = import_dataset(tmp_path / "src", format="yolo", name="bottles", version="june", root=store)

    assert open_version("bottles@v1", root=store).path == v1.path
    assert open_version("bottles@latest", root=store).path == v2.path
    assert open_version("bottles", root=store).path == v2.path
    with pytest.raises(DatasetError, match="v1, june"):
        open_version("bottles@v9", root=store)
    with pytest.raises(DatasetError, match="bottles"):
        open_version("cans", root=store)


# -- splits -----------------------------------------------------------------------------------


def test_splits_follow_the_content_hash_and_hold_their_shares():
    hashes = [f"{i * 2654435761 % 16**8:08x}" + "0" * 56 for i in range(4000)]
    splits = [split_for(h, test_fraction=0.1, val_fraction=0.15) for h in hashes]

    assert splits.count("test") / 4000 == pytest.approx(0.1, abs=0.02)
    assert splits.count("val") / 4000 == pytest.approx(0.15, abs=0.02)
    assert split_for("00000000" + "f" * 56) == "test" and split_for("f" * 64) == "train"


def test_splits_stay_the_same_when_more_images_are_added(tmp_path, v1, store):
    make_yolo(tmp_path / "src", range(20, 50))
    v2 = import_dataset(tmp_path / "src", format="yolo", name="bottles", root=store)

    before = {e["sha256"]: e["split"] for e in v1.entries}
    after = {e["sha256"]: e["split"] for e in v2.entries}
    assert len(after) == 50
    assert {sha: after[sha] for sha in before} == before


# -- problems -----------------------------------------------------------------------------------


def test_bad_files_are_recorded_by_name_and_the_rest_is_imported(tmp_path, store):
    source = make_yolo(tmp_path / "src", range(8))
    (source / "labels" / "part_1.txt").unlink()
    (source / "labels" / "part_2.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    (source / "images" / "part_3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (source / "images" / "copy_of_4.png").write_bytes(
        (source / "images" / "part_4.png").read_bytes()
    )
    (source / "labels" / "copy_of_4.txt").write_text((source / "labels" / "part_4.txt").read_text())

    version = import_dataset(source, format="yolo", name="bottles", root=store)

    assert version.manifest["counts"]["images"] == 5  # 9 files, 4 left out
    problems = {p.kind: p for p in version.problems}
    assert problems["missing_label"].file.endswith("part_1.txt")
    assert problems["unknown_class"].file.endswith("part_2.txt")
    assert problems["unreadable_image"].file.endswith("part_3.png")
    duplicate = problems["duplicate"]
    assert {Path(duplicate.file).name, Path(duplicate.image).name} == {
        "part_4.png",
        "copy_of_4.png",
    }
    assert "same labels" in duplicate.message
    assert version.manifest["counts"]["skipped"] == 4


def test_a_source_with_nothing_importable_is_refused_with_its_problems(tmp_path, store):
    source = make_yolo(tmp_path / "src", range(2))
    for label in (source / "labels").iterdir():
        label.unlink()

    with pytest.raises(DatasetError, match=r"no image could be imported.*part_0"):
        import_dataset(source, format="yolo", name="bottles", root=store)
    assert not (store / "bottles" / "v1").exists()


def test_label_studio_class_ids_stay_those_of_the_previous_version(tmp_path, store):
    write_image(tmp_path / "media" / "a.png", seed=1)
    task = {
        "id": 1,
        "data": {"image": "a.png"},
        "annotations": [
            {
                "id": 1,
                "result": [
                    {
                        "type": "rectanglelabels",
                        "original_width": 64,
                        "original_height": 48,
                        "value": {
                            "x": 10,
                            "y": 10,
                            "width": 20,
                            "height": 20,
                            "rectanglelabels": ["dent"],
                        },
                    }
                ],
            }
        ],
    }
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task]))
    import_dataset(export, format="labelstudio", name="ls", images=tmp_path / "media", root=store)
    task["annotations"][0]["result"][0]["value"]["rectanglelabels"] = ["crack"]
    export.write_text(json.dumps([task]))

    v2 = import_dataset(
        export, format="labelstudio", name="ls", images=tmp_path / "media", root=store
    )

    assert v2.names == {0: "dent", 1: "crack"}
    assert v2.entries[0]["lineage"]["labelstudio_task_id"] == 1


# -- training layout ----------------------------------------------------------------------------


def test_materialise_links_the_version_into_a_yolo_layout(tmp_path, v1):
    data_yaml = materialise(v1, tmp_path / "work")

    data = yaml.safe_load(data_yaml.read_text())
    assert data["path"] == str(tmp_path / "work")
    assert data["names"] == NAMES and data["qc_content_hash"] == v1.content_hash
    for entry in v1.entries:
        name = Path(entry["file"]).name
        image = tmp_path / "work" / "images" / entry["split"] / name
        label = tmp_path / "work" / "labels" / entry["split"] / f"{entry['sha256']}.txt"
        assert image.is_symlink() and image.resolve() == (v1.path / entry["file"]).resolve()
        assert label.is_symlink() and label.read_text() == v1.label_text(entry)


def test_materialise_again_replaces_the_old_layout(tmp_path, v1, store):
    materialise(v1, tmp_path / "work")
    (tmp_path / "work" / "labels" / "train.cache").write_text("stale")

    materialise(v1, tmp_path / "work")

    assert not (tmp_path / "work" / "labels" / "train.cache").exists()
    assert v1.verify() == []


def test_ultralytics_reads_the_materialised_layout(tmp_path, v1, monkeypatch):
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))
    utils = pytest.importorskip("ultralytics.data.utils")
    from ultralytics.data.dataset import YOLODataset

    monkeypatch.setattr(utils, "check_font", lambda *args, **kwargs: None)  # downloads a font
    data = utils.check_det_dataset(str(materialise(v1, tmp_path / "work")))
    dataset = YOLODataset(img_path=data["train"], data=data, task="detect", imgsz=64, augment=False)

    train = [e for e in v1.entries if e["split"] == "train"]
    assert len(dataset) == len(train)
    assert sum(len(label["cls"]) for label in dataset.labels) == sum(e["boxes"] for e in train)
    assert (tmp_path / "work" / "labels" / "train.cache").exists()  # beside the links
    assert not list(v1.path.rglob("*.cache"))


# -- stats, diff, export --------------------------------------------------------------------------


def test_stats_count_classes_per_split_and_list_unlabelled_images(v1):
    stats = dataset_stats(v1)

    assert stats.images == 20 and sum(stats.images_by_split.values()) == 20
    assert stats.boxes == sum(e["boxes"] for e in v1.entries) == sum(stats.class_counts.values())
    for name in NAMES.values():
        assert stats.class_counts[name] == sum(
            stats.class_counts_by_split[s][name] for s in stats.images_by_split
        )
    assert sorted(Path(p).name for p in stats.unlabelled) == [
        f"part_{s}.png" for s in (0, 10, 15, 5)
    ]
    assert sum(stats.box_size_counts) == stats.boxes
    assert stats.label_errors == [] and stats.duplicates == []
    json.dumps(stats.to_dict())


def test_stats_report_import_problems_by_file(tmp_path, store):
    source = make_yolo(tmp_path / "src", range(5))
    (source / "labels" / "part_1.txt").write_text("0 0.5 0.5 0.0 0.1\n")
    (source / "images" / "again.png").write_bytes((source / "images" / "part_2.png").read_bytes())
    (source / "labels" / "again.txt").write_text("")

    stats = dataset_stats(import_dataset(source, format="yolo", name="b", root=store))

    assert [p.kind for p in stats.label_errors] == ["zero_area"]
    assert stats.label_errors[0].file.endswith("part_1.txt")
    assert "different labels" in stats.duplicates[0].message


def test_stats_plot_is_a_png(tmp_path, v1):
    pytest.importorskip("matplotlib")

    out = plot_stats(dataset_stats(v1), tmp_path / "plots" / "v1.png")

    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_diff_shows_added_removed_and_relabelled_images_and_class_changes(tmp_path, v1, store):
    source = tmp_path / "src"
    (source / "images" / "part_3.png").unlink()
    (source / "labels" / "part_3.txt").unlink()
    (source / "labels" / "part_1.txt").write_text("1 0.5 0.5 0.25 0.25\n")  # moved and renamed
    (source / "labels" / "part_2.txt").write_text("")  # both boxes deleted
    make_yolo(source, [77])
    v2 = import_dataset(source, format="yolo", name="bottles", root=store)

    change = diff_versions(v1, v2)

    assert [Path(p).name for p in change.added] == ["part_77.png"]
    assert [Path(p).name for p in change.removed] == ["part_3.png"]
    assert sorted(Path(p).name for p in change.relabelled) == ["part_1.png", "part_2.png"]
    assert change.unchanged == 17 and change.split_changed == []

    def boxes(version) -> int:
        return sum(e["boxes"] for e in version.entries)

    assert sum(b - a for a, b in change.class_counts.values()) == boxes(v2) - boxes(v1)


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_an_export_imports_again_as_the_same_data(tmp_path, v1, store, fmt):
    from inspection.data.versions import export_version

    integer = fmt == "voc"
    version = v1
    if integer:  # VOC keeps whole pixels: start from whole-pixel boxes
        items = [
            LabelledImage(
                path=i.path,
                detections=Detections(
                    xyxy=np.round(i.detections.xyxy),
                    confidence=i.detections.confidence,
                    class_id=i.detections.class_id,
                    names=NAMES,
                    image_wh=i.image_wh,
                ),
            )
            for i in v1.images()
        ]
        version = write_version(items, name="whole", source={"format": "test"}, root=store)
    out = export_version(version, format=fmt, out=tmp_path / "export")

    again = import_dataset(out, format=fmt, name="again", names=list(NAMES.values()), root=store)

    change = diff_versions(version, again)
    assert (change.added, change.removed, change.relabelled) == ([], [], [])
    assert again.names == NAMES


# -- command line ---------------------------------------------------------------------------------


def test_the_command_line_imports_lists_shows_diffs_and_exports(tmp_path, monkeypatch):
    from qc.commands.dataset import app

    monkeypatch.setenv("QC_HOME", str(tmp_path / "home"))
    source = make_yolo(tmp_path / "src", range(12))
    (source / "labels" / "part_1.txt").unlink()
    runner = CliRunner()

    imported = runner.invoke(
        app, ["import", str(source), "--format", "yolo", "--name", "cans", "--quiet"]
    )
    assert imported.exit_code == 0, imported.output
    assert "cans@v1: 11 images" in imported.output and "part_1.txt" in imported.output
    assert (tmp_path / "home" / "datasets" / "cans" / "v1" / "manifest.json").is_file()
    runner.invoke(app, ["import", str(source), "-f", "yolo", "-n", "cans", "--quiet"])

    listed = runner.invoke(app, ["list", "--json"])
    assert [row["ref"] for row in json.loads(listed.output)] == ["cans@v1", "cans@v2"]
    stats = runner.invoke(app, ["stats", "cans@v1", "--json"])
    assert json.loads(stats.output)["images"] == 11
    shown = runner.invoke(app, ["stats", "cans"])
    assert "scratch" in shown.output and "missing_label" not in shown.output
    assert "part_1.txt" in shown.output
    diffed = runner.invoke(app, ["diff", "cans@v1", "cans@v2"])
    assert "0 added, 0 removed, 0 relabelled" in diffed.output
    exported = runner.invoke(
        app, ["export", "cans@v2", "--format", "coco", "--out", str(tmp_path / "out")]
    )
    assert exported.exit_code == 0 and (tmp_path / "out" / "annotations").is_dir()

    refused = runner.invoke(
        app, ["import", str(source), "-f", "yolo", "-n", "cans", "--version", "v1"]
    )
    assert isinstance(refused.exception, DatasetError) and "immutable" in str(refused.exception)


def test_every_command_line_option_has_help():
    import typer.main

    from qc.commands.dataset import app

    group = typer.main.get_group(app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help":
                assert param.help, f"{name} --{param.name} has no help"
