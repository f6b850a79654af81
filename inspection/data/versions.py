"""Versioned datasets: immutable snapshots of labelled images that training reads.

Example::

    from inspection.data.versions import import_dataset, materialise, open_version

    version = import_dataset("export.json", format="labelstudio", name="bottles",
                             images="/srv/label-studio/media")      # -> bottles@v1, v2, ...
    print(version.ref, version.content_hash, len(version.entries))
    for image in open_version("bottles@latest").images(split="test"):
        print(image.path, image.detections.class_names)
    data_yaml = materialise(version, workdir="runs/exp1/data")      # for Ultralytics

On disk, under `Settings().datasets_dir` ($QC_HOME/datasets)::

    bottles/v2/manifest.json            what is in the version, and where it came from
    bottles/v2/images/<sha256>.png      the images, byte for byte, named by content
    bottles/v2/labels/<sha256>.txt      YOLO labels (class x_center y_center width height)
    bottles/v2/references/<sha256>.png  each image's golden part, when imported with references

A version is built in a hidden folder beside its target and renamed into place, so a crash
never leaves half a version, and is then made read-only: a version never changes, so a model
trained on `bottles@v2` (content_hash in its ONNX metadata) can always be traced to its data.
An image already stored by an earlier version of the dataset is hard-linked, not copied.

Splits are decided per image by its content hash (`split_for`), never by a random draw: an
image stays in the same split as the dataset grows, and the test split stays a frozen holdout.

The manifest (schema 1) holds: name, version, created (UTC, ISO 8601), source {format, path,
images}, classes {"0": name, ...}, split {test_fraction, val_fraction}, content_hash, counts,
images [{sha256, file, label, width, height, split, boxes, lineage, and reference and
reference_sha256 when the image has one}], problems [{file, kind, message, skipped, image}].
`content_hash` is the sha256 over the class map and, for each image in hash order, its hash,
split, reference hash (if any) and label text: what training sees, nothing else.

Stats, diffs and plots live in `inspection.data.stats`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from inspection.data.formats import SPLITS, LabelledImage, Problem, format_module, yolo
from inspection.errors import DatasetError
from inspection.settings import Settings

MANIFEST = "manifest.json"
SCHEMA = 1
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_VAL_FRACTION = 0.15

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_AUTO_VERSION = re.compile(r"v(\d+)")


@dataclass(frozen=True)
class DatasetVersion:
    """One stored version: its folder and its manifest."""

    path: Path
    manifest: Mapping[str, Any]

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def ref(self) -> str:
        """ "name@version", as `open_version` takes it."""
        return f"{self.name}@{self.version}"

    @property
    def created(self) -> str:
        return self.manifest["created"]

    @property
    def content_hash(self) -> str:
        return self.manifest["content_hash"]

    @property
    def names(self) -> dict[int, str]:
        return {int(i): name for i, name in self.manifest["classes"].items()}

    @property
    def entries(self) -> list[dict[str, Any]]:
        """One manifest record per image: sha256, file, label, width, height, split, boxes,
        lineage."""
        return list(self.manifest["images"])

    @property
    def has_references(self) -> bool:
        """Whether every image carries its reference (what a reference recipe needs)."""
        return bool(self.entries) and all("reference" in entry for entry in self.entries)

    @property
    def problems(self) -> list[Problem]:
        return [Problem.from_dict(record) for record in self.manifest.get("problems", [])]

    def label_text(self, entry: Mapping[str, Any]) -> str:
        label = self.path / entry["label"]
        try:
            return label.read_text(encoding="utf-8")
        except OSError as error:
            raise DatasetError(
                f"{label}: cannot read it ({error.strerror}); {self.ref} was damaged after it was "
                "written (versions are immutable): import the data again as a new version"
            ) from error

    def images(self, *, split: str | None = None) -> Iterator[LabelledImage]:
        """The version's labelled images (of one split if given), in manifest order."""
        names = self.names
        for entry in self.entries:
            if split is not None and entry["split"] != split:
                continue
            label = self.path / entry["label"]
            detections, problems = yolo.parse_labels(
                self.label_text(entry),
                image_wh=(entry["width"], entry["height"]),
                names=names,
                file=str(label),
            )
            if detections is None:
                raise DatasetError(
                    f"{label} was changed after {self.ref} was written ({problems[0].message}); "
                    "versions are immutable: import the data again as a new version"
                )
            yield LabelledImage(
                path=self.path / entry["file"],
                detections=detections,
                lineage={**entry.get("lineage", {}), "sha256": entry["sha256"]},
                split=entry["split"],
                reference=self.path / entry["reference"] if "reference" in entry else None,
            )

    def verify(self, *, images: bool = True) -> list[str]:
        """What no longer matches the manifest (empty when the version is intact): missing
        files, image hashes (when `images`), and the content hash over the labels."""
        errors = []
        labels = {}
        for entry in self.entries:
            image, label = self.path / entry["file"], self.path / entry["label"]
            if not image.is_file() or not label.is_file():
                errors.append(f"{image if not image.is_file() else label} is missing")
                continue
            if images and _sha256(image.read_bytes()) != entry["sha256"]:
                errors.append(f"{image} does not match its sha256")
            if "reference" in entry:
                golden = self.path / entry["reference"]
                if not golden.is_file():
                    errors.append(f"{golden} is missing")
                elif images and _sha256(golden.read_bytes()) != entry["reference_sha256"]:
                    errors.append(f"{golden} does not match its sha256")
            labels[entry["sha256"]] = label.read_text(encoding="utf-8")
        if not errors and content_hash(self.names, self.entries, labels) != self.content_hash:
            errors.append(f"{self.path}: labels or splits do not match content_hash")
        return errors


def split_for(
    sha256: str,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> str:
    """test, val or train for an image, from the first 8 hex digits of its sha256 read as a
    fraction of 16**8: the same image always lands in the same split."""
    fraction = int(sha256[:8], 16) / 16**8
    if fraction < test_fraction:
        return "test"
    if fraction < test_fraction + val_fraction:
        return "val"
    return "train"


def content_hash(
    names: Mapping[int, str], entries: Iterable[Mapping[str, Any]], labels: Mapping[str, str]
) -> str:
    """sha256 over the class map and, per image in hash order, hash, split and label text."""
    digest = hashlib.sha256()
    digest.update(json.dumps({str(i): names[i] for i in sorted(names)}, sort_keys=True).encode())
    for entry in sorted(entries, key=lambda e: e["sha256"]):
        digest.update(f"\n{entry['sha256']} {entry['split']}\n".encode())
        if "reference_sha256" in entry:  # absent for plain images: their hashes are unchanged
            digest.update(f"reference {entry['reference_sha256']}\n".encode())
        digest.update(labels[entry["sha256"]].encode())
    return digest.hexdigest()


def datasets_root(root: str | Path | None = None) -> Path:
    return Path(root) if root is not None else Settings().datasets_dir


def parse_ref(ref: str) -> tuple[str, str | None]:
    """("bottles", "v2") from "bottles@v2"; ("bottles", None) from "bottles" or "bottles@latest"."""
    name, _, version = ref.partition("@")
    if not _NAME.fullmatch(name) or (version and not _NAME.fullmatch(version)):
        raise DatasetError(
            f"{ref!r} is not a dataset reference; write NAME, NAME@VERSION or NAME@latest "
            "(letters, digits, '.', '_', '-')"
        )
    return name, None if version in ("", "latest") else version


def list_versions(
    name: str | None = None, *, root: str | Path | None = None
) -> list[DatasetVersion]:
    """Every stored version (of dataset `name` if given), by name, then oldest first."""
    root = datasets_root(root)
    folders = [root / name] if name else sorted(p for p in root.glob("*") if p.is_dir())
    versions = []
    for folder in folders:
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        for candidate in folder.iterdir():
            if candidate.name.startswith(".") or not (candidate / MANIFEST).is_file():
                continue
            versions.append(_load(candidate))
    return sorted(versions, key=lambda v: (v.name, v.created, _version_key(v.version)))


def open_version(ref: str, *, root: str | Path | None = None) -> DatasetVersion:
    """The version named by "name", "name@v2" or "name@latest" (the newest)."""
    name, version = parse_ref(ref)
    root = datasets_root(root)
    versions = list_versions(name, root=root)
    if not versions:
        known = ", ".join(sorted({v.name for v in list_versions(root=root)})) or "none"
        raise DatasetError(
            f"no dataset named {name!r} in {root} (datasets: {known}); import one with "
            "`qc dataset import`"
        )
    if version is None:
        return versions[-1]
    for candidate in versions:
        if candidate.version == version:
            return candidate
    raise DatasetError(
        f"{name} has no version {version!r} (versions: "
        f"{', '.join(v.version for v in versions)}); see `qc dataset list`"
    )


def import_dataset(
    source: str | Path,
    *,
    format: str,
    name: str,
    version: str | None = None,
    images: str | Path | None = None,
    names: Sequence[str] | None = None,
    allow_missing_labels: bool = False,
    voc_one_based: bool = False,
    image_key: str | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    root: str | Path | None = None,
    progress: bool = False,
    references: str | Path | None = None,
) -> DatasetVersion:
    """Read `source` in `format` and store it as a new version of dataset `name`.

    Each image's reference (its golden part) is stored with it: from the folder `references`
    (the image's file name, any image suffix), or, for YOLO folders, from a `references` or
    `templates` folder beside `images` (formats/yolo.reference_path_for). With `references`
    given, an image without one is a DatasetError naming it.

    `version` defaults to the next vN. For formats that name classes rather than number them
    (voc, labelstudio), class ids follow `names`, else the latest version's classes, so ids
    stay stable; new classes are added after them. Problems with single files are recorded in
    the manifest; the other images are imported.
    """
    source = Path(source).absolute()
    images = Path(images).absolute() if images is not None else None
    if not source.exists():
        raise DatasetError(f"{source} does not exist; check the path")
    module = format_module(format)
    if names is None and format in ("voc", "labelstudio"):
        earlier = list_versions(name, root=root) if _NAME.fullmatch(name) else []
        names = list(earlier[-1].names.values()) if earlier else None
    if format == "yolo":
        items = module.read(source, names=names, allow_missing_labels=allow_missing_labels)
    elif format == "coco":
        items = module.read(source, images=images)
    elif format == "voc":
        items = module.read(
            source,
            images=images,
            names=names,
            one_based=voc_one_based,
            allow_missing_labels=allow_missing_labels,
        )
    else:
        items = module.read(source, images=images, names=names, image_key=image_key)
    if references is not None or format == "yolo":
        items = _with_references(items, Path(references).absolute() if references is not None else None)
    return write_version(
        items,
        name=name,
        version=version,
        source={"format": format, "path": str(source), "images": str(images) if images else None},
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        root=root,
        progress=progress,
    )


def _with_references(items: Iterable[LabelledImage | Problem], folder: Path | None
                     ) -> Iterator[LabelledImage | Problem]:
    from dataclasses import replace

    from inspection.data.formats._image_files import IMAGE_SUFFIXES

    if folder is not None and not folder.is_dir():
        raise DatasetError(f"--references {folder}: no such folder; give the folder of golden images")
    for item in items:
        if isinstance(item, Problem) or item.reference is not None:
            yield item
            continue
        if folder is None:  # a YOLO folder: references beside images, when it has them
            found = yolo.reference_path_for(item.path)
            yield replace(item, reference=found) if found else item
            continue
        candidates = [folder / item.path.name] + [folder / (item.path.stem + s) for s in sorted(IMAGE_SUFFIXES)]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise DatasetError(f"{item.path}: no reference named {item.path.stem}.* in {folder}; "
                               "add its golden image there, or import without --references")
        yield replace(item, reference=found)


def write_version(
    items: Iterable[LabelledImage | Problem],
    *,
    name: str,
    version: str | None = None,
    source: Mapping[str, Any],
    names: Mapping[int, str] | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    root: str | Path | None = None,
    progress: bool = False,
) -> DatasetVersion:
    """Store labelled images (and the problems met reading them) as a new, read-only version.

    Any source of `LabelledImage`s works: a format reader, or corrections read from the
    inspection records. `names` is the class map when no image carries one.
    """
    if not _NAME.fullmatch(name):
        raise DatasetError(f"dataset name {name!r}: use letters, digits, '.', '_', '-'")
    if version is not None and (not _NAME.fullmatch(version) or version == "latest"):
        raise DatasetError(f"version {version!r}: use letters, digits, '.', '_', '-', not 'latest'")
    if not (test_fraction >= 0 and val_fraction >= 0 and test_fraction + val_fraction < 1):
        raise DatasetError("test and val fractions must be >= 0 and leave some images to train on")
    dataset_dir = datasets_root(root) / name
    dataset_dir.mkdir(parents=True, exist_ok=True)
    version = version or _next_version(dataset_dir)
    target = dataset_dir / version
    if target.exists():
        raise DatasetError(
            f"{name}@{version} already exists at {target}; versions are immutable: leave out "
            "--version to import as the next version, or choose a new one"
        )
    building = Path(tempfile.mkdtemp(prefix=f".building-{version}-", dir=dataset_dir))
    try:
        manifest = _build(
            items,
            folder=building,
            stored=_stored_images(dataset_dir),
            names=names,
            fractions=(test_fraction, val_fraction),
            progress=progress,
            description=f"{name}@{version}",
        )
        manifest = {
            "schema": SCHEMA,
            "name": name,
            "version": version,
            "created": datetime.now(UTC).isoformat(),
            "source": dict(source),
            **manifest,
        }
        (building / MANIFEST).write_text(
            json.dumps(manifest, indent=1, default=str), encoding="utf-8"
        )
        # Read-only before the rename, so a version is never seen writable. Renaming within
        # one folder needs no write permission on the folder being renamed.
        _make_read_only(building)
        try:
            building.rename(target)
        except OSError as error:
            raise DatasetError(
                f"{target} appeared while importing (another import?); run the import again"
            ) from error
    except BaseException:
        _make_writable(building)
        shutil.rmtree(building, ignore_errors=True)
        raise
    return _load(target)


def _build(
    items: Iterable[LabelledImage | Problem],
    *,
    folder: Path,
    stored: Mapping[str, Path],
    names: Mapping[int, str] | None,
    fractions: tuple[float, float],
    progress: bool,
    description: str,
) -> dict[str, Any]:
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    entries: list[dict[str, Any]] = []
    problems: list[Problem] = []
    labels: dict[str, str] = {}
    first_source: dict[str, str] = {}
    used_classes: set[int] = set()
    for item in tqdm(items, desc=f"importing {description}", unit=" images", disable=not progress):
        if isinstance(item, Problem):
            problems.append(item)
            continue
        if names is None:
            names = item.names
        elif item.names and item.names != dict(names):
            raise DatasetError(
                f"{item.path}: its classes {item.names} differ from the other images' "
                f"{dict(names)}; read the source with one class list"
            )
        problems.extend(item.problems)
        used_classes.update(int(c) for c in item.detections.class_id)
        try:
            data = item.path.read_bytes()
        except OSError as error:
            problems.append(
                Problem(file=str(item.path), kind="unreadable_image", message=f"{error.strerror}")
            )
            continue
        sha = _sha256(data)
        label = yolo.label_text(item.detections)
        if sha in labels:
            same = (
                "with the same labels"
                if labels[sha] == label
                else "but different labels; the first one's labels were kept: correct the other"
            )
            problems.append(
                Problem(
                    file=str(item.path),
                    kind="duplicate",
                    message=f"same image as {first_source[sha]} {same}",
                    image=first_source[sha],
                )
            )
            continue
        file = f"images/{sha}{item.path.suffix.lower()}"
        _store(data, folder / file, already=stored.get(Path(file).name))
        golden: dict[str, str] = {}
        if item.reference is not None:
            try:
                reference_data = item.reference.read_bytes()
            except OSError as error:
                raise DatasetError(f"{item.reference}: cannot read this reference image "
                                   f"({error.strerror}); fix it or import without references") from error
            reference_sha = _sha256(reference_data)
            golden = {"reference": f"references/{reference_sha}{item.reference.suffix.lower()}",
                      "reference_sha256": reference_sha}
            target = folder / golden["reference"]
            if not target.exists():  # several images may share one golden part
                target.parent.mkdir(exist_ok=True)
                _store(reference_data, target, already=stored.get(target.name))
        (folder / "labels" / f"{sha}.txt").write_text(label, encoding="utf-8")
        labels[sha], first_source[sha] = label, str(item.path)
        width, height = item.image_wh
        entries.append(
            {
                "sha256": sha,
                "file": file,
                "label": f"labels/{sha}.txt",
                "width": width,
                "height": height,
                "split": split_for(sha, test_fraction=fractions[0], val_fraction=fractions[1]),
                "boxes": len(item.detections),
                "lineage": dict(item.lineage),
                **golden,
            }
        )
    unnamed = sorted(used_classes - set(names or {}))
    if unnamed:
        raise DatasetError(
            f"class ids {unnamed} have no names; give the class names (names=...) when writing"
        )
    if not entries:
        shown = "; ".join(str(p) for p in problems[:3]) or "no images found"
        raise DatasetError(
            f"no image could be imported ({len(problems)} problems: {shown}); fix the source "
            "or check --format and --images"
        )
    names = dict(names or {})
    by_split = {split: sum(e["split"] == split for e in entries) for split in SPLITS}
    return {
        "classes": {str(i): names[i] for i in sorted(names)},
        "split": {"test_fraction": fractions[0], "val_fraction": fractions[1]},
        "content_hash": content_hash(names, entries, labels),
        "counts": {
            "images": len(entries),
            "boxes": sum(e["boxes"] for e in entries),
            "images_by_split": by_split,
            "problems": len(problems),
            "skipped": sum(p.skipped for p in problems),
        },
        "images": entries,
        "problems": [p.to_dict() for p in problems],
    }


def materialise(version: DatasetVersion, workdir: str | Path) -> Path:
    """Lay `version` out for Ultralytics under `workdir` and return its data.yaml.

    workdir/images/{train,val,test}/ and workdir/labels/... hold symlinks into the version,
    so Ultralytics' label caches (written beside the label folders) land in `workdir`, never
    in the read-only version. data.yaml has an absolute `path:` and carries qc_dataset and
    qc_content_hash for the training run's records. Rebuilds earlier layouts in `workdir`.
    """
    workdir = Path(workdir).absolute()
    counts = {split: sum(e["split"] == split for e in version.entries) for split in SPLITS}
    for split in ("train", "val"):
        if counts[split] == 0:
            raise DatasetError(
                f"{version.ref} has no {split} images ({len(version.entries)} in all); import "
                "more images, or import again with a larger --val-fraction"
            )
    for folder in ("images", "labels"):
        if (workdir / folder).is_symlink() or (workdir / folder).is_file():
            (workdir / folder).unlink()
        elif (workdir / folder).exists():
            shutil.rmtree(workdir / folder)  # removes our symlinks, never what they point to
    if (workdir / "references").is_dir() and not (workdir / "references").is_symlink():
        shutil.rmtree(workdir / "references")
    for entry in version.entries:
        image = workdir / "images" / entry["split"] / Path(entry["file"]).name
        label = workdir / "labels" / entry["split"] / Path(entry["label"]).name
        links = [(image, version.path / entry["file"]), (label, version.path / entry["label"])]
        if "reference" in entry:  # beside the image, under its name (yolo.reference_path_for)
            golden = workdir / "references" / entry["split"] / (
                Path(entry["file"]).stem + Path(entry["reference"]).suffix)
            links.append((golden, version.path / entry["reference"]))
        for link, target in links:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target.absolute())
    data_yaml = workdir / "data.yaml"
    yolo.write_data_yaml(
        data_yaml,
        names=version.names,
        splits=[split for split in SPLITS if counts[split]],
        root=workdir,
    )
    with data_yaml.open("a", encoding="utf-8") as extra:
        extra.write(f"qc_dataset: {version.ref}\nqc_content_hash: {version.content_hash}\n")
    return data_yaml


def export_version(version: DatasetVersion, *, format: str, out: str | Path) -> Path:
    """Write `version` in `format` (yolo, coco, voc, labelstudio) into the new or empty
    folder `out`, splits included; returns what the format's `write` returns."""
    return format_module(format).write(version.images(), Path(out), names=version.names)


def _load(folder: Path) -> DatasetVersion:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(
            f"{folder / MANIFEST}: unreadable ({error}); the version is damaged"
        ) from error
    return DatasetVersion(path=folder, manifest=manifest)


def _next_version(dataset_dir: Path) -> str:
    numbers = [
        int(match.group(1))
        for path in dataset_dir.iterdir()
        if (match := _AUTO_VERSION.fullmatch(path.name))
    ]
    return f"v{max(numbers, default=0) + 1}"


def _version_key(version: str) -> tuple[int, str]:
    match = _AUTO_VERSION.fullmatch(version)
    return (int(match.group(1)) if match else -1, version)


def _stored_images(dataset_dir: Path) -> dict[str, Path]:
    """Image files of the dataset's earlier versions by file name (which is their hash)."""
    stored: dict[str, Path] = {}
    for folder in [*dataset_dir.glob("*/images"), *dataset_dir.glob("*/references")]:
        if not folder.parent.name.startswith("."):
            for path in folder.iterdir():
                stored.setdefault(path.name, path)
    return stored


def _store(data: bytes, target: Path, *, already: Path | None) -> None:
    if already is not None:
        try:
            os.link(already, target)  # same bytes, by name; costs no space
            return
        except OSError:
            pass  # another file system, or links refused: copy
    with target.open("xb") as file:
        file.write(data)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make_read_only(folder: Path) -> None:
    read_only = ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    for path in [*folder.rglob("*"), folder]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & read_only)


def _make_writable(folder: Path) -> None:
    if folder.exists():
        for path in [folder, *folder.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR)
