"""What is in a dataset version, what is wrong with it, and how two versions differ.

Example::

    from inspection.data.versions import open_version
    from inspection.data.stats import dataset_stats, diff_versions, plot_stats

    stats = dataset_stats(open_version("bottles@v2"))
    print(stats.class_counts, stats.class_counts_by_split["test"], len(stats.label_errors))
    plot_stats(stats, "bottles-v2.png")                   # needs matplotlib (qc[train])
    change = diff_versions(open_version("bottles@v1"), open_version("bottles@v2"))
    print(len(change.added), len(change.relabelled), change.class_counts["scratch"])

Images are compared by content hash and boxes by class name, so a diff stays right when a
later version numbers its classes differently.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspection.data.formats import SPLITS, Problem, yolo
from inspection.data.versions import DatasetVersion
from inspection.errors import DatasetError

# Edges of the box-size histogram, in pixels of sqrt(width * height). COCO calls boxes under
# 32 px "small"; defects are often smaller, hence the finer bins at the bottom.
BOX_SIZE_EDGES = (0, 8, 16, 32, 64, 128, 256, 512, 1024)
LABEL_ERROR_KINDS = frozenset(
    {
        "bad_label",
        "unknown_class",
        "out_of_bounds",
        "zero_area",
        "size_mismatch",
        "unsupported_region",
        "rotated_box",
        "crowd_box",
    }
)


@dataclass(frozen=True)
class DatasetStats:
    """Counts and problems of one version. Problems name the file to fix."""

    ref: str
    content_hash: str
    images: int
    boxes: int
    images_by_split: dict[str, int]
    class_counts: dict[str, int]
    class_counts_by_split: dict[str, dict[str, int]]
    box_size_bins: list[str]
    box_size_counts: list[int]
    unlabelled: list[str]
    duplicates: list[Problem] = field(default_factory=list)
    label_errors: list[Problem] = field(default_factory=list)
    other_problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for key in ("duplicates", "label_errors", "other_problems"):
            record[key] = [problem.to_dict() for problem in getattr(self, key)]
        return record


@dataclass(frozen=True)
class VersionDiff:
    """From version `a` to version `b`: images by their source name (or stored file)."""

    a: str
    b: str
    added: list[str]
    removed: list[str]
    relabelled: list[str]
    split_changed: list[str]
    unchanged: int
    class_counts: dict[str, tuple[int, int]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dataset_stats(version: DatasetVersion) -> DatasetStats:
    """Counts per class and split, box sizes, unlabelled images, and every problem: those
    met at import (from the manifest) and any the stored labels show now."""
    names = version.names
    by_split: dict[str, Counter] = {split: Counter() for split in SPLITS}
    sizes: list[float] = []
    unlabelled: list[str] = []
    rechecked: list[Problem] = []
    for entry in version.entries:
        label_file = version.path / entry["label"]
        detections, problems = yolo.parse_labels(
            version.label_text(entry),
            image_wh=(entry["width"], entry["height"]),
            names=names,
            file=str(label_file),
            image=_shown(entry),
        )
        rechecked += problems
        if detections is None:
            continue
        if len(detections) == 0:
            unlabelled.append(_shown(entry))
        by_split[entry["split"]].update(detections.class_names)
        sizes += np.sqrt(detections.area).tolist()
    total: Counter[str] = Counter()
    for counter in by_split.values():
        total.update(counter)
    ordered = [names[i] for i in sorted(names)]
    counts, _ = np.histogram(sizes, bins=[*BOX_SIZE_EDGES, np.inf])
    imported = version.problems
    return DatasetStats(
        ref=version.ref,
        content_hash=version.content_hash,
        images=len(version.entries),
        boxes=sum(total.values()),
        images_by_split={s: sum(e["split"] == s for e in version.entries) for s in SPLITS},
        class_counts={name: total[name] for name in ordered},
        class_counts_by_split={s: {n: by_split[s][n] for n in ordered} for s in SPLITS},
        box_size_bins=_bin_labels(),
        box_size_counts=[int(c) for c in counts],
        unlabelled=unlabelled,
        duplicates=[p for p in imported if p.kind == "duplicate"],
        label_errors=[p for p in imported if p.kind in LABEL_ERROR_KINDS] + rechecked,
        other_problems=[
            p for p in imported if p.kind not in LABEL_ERROR_KINDS and p.kind != "duplicate"
        ],
    )


def diff_versions(a: DatasetVersion, b: DatasetVersion) -> VersionDiff:
    """Images added, removed, relabelled (other boxes or classes) or moved to another split
    between `a` and `b`, and each class's box count in both."""
    entries_a = {e["sha256"]: e for e in a.entries}
    entries_b = {e["sha256"]: e for e in b.entries}
    common = sorted(set(entries_a) & set(entries_b))
    (boxes_a, counts_a), (boxes_b, counts_b) = _boxes_and_totals(a), _boxes_and_totals(b)
    relabelled = [sha for sha in common if boxes_a[sha] != boxes_b[sha]]
    moved = [sha for sha in common if entries_a[sha]["split"] != entries_b[sha]["split"]]
    classes = list(dict.fromkeys([*counts_a, *counts_b]))
    return VersionDiff(
        a=a.ref,
        b=b.ref,
        added=[_shown(entries_b[sha]) for sha in sorted(set(entries_b) - set(entries_a))],
        removed=[_shown(entries_a[sha]) for sha in sorted(set(entries_a) - set(entries_b))],
        relabelled=[_shown(entries_b[sha]) for sha in relabelled],
        split_changed=[_shown(entries_b[sha]) for sha in moved],
        unchanged=len(common) - len(set(relabelled) | set(moved)),
        class_counts={name: (counts_a.get(name, 0), counts_b.get(name, 0)) for name in classes},
    )


def plot_stats(stats: DatasetStats, out: str | Path) -> Path:
    """A PNG with boxes per class (stacked by split) and the box-size histogram."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise DatasetError("plots need matplotlib: pip install 'qc[train]'") from error
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A bare Figure on the Agg canvas: no pyplot, no global backend, no display needed.
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    classes_axis, sizes_axis = figure.subplots(1, 2)
    names = list(stats.class_counts)
    bottom = np.zeros(len(names))
    for split in SPLITS:
        heights = np.array([stats.class_counts_by_split[split][n] for n in names], dtype=float)
        classes_axis.bar(names, heights, bottom=bottom, label=split)
        bottom += heights
    classes_axis.set_title(f"{stats.ref}: boxes per class")
    classes_axis.set_ylabel("boxes")
    classes_axis.legend()
    classes_axis.tick_params(axis="x", labelrotation=30)
    sizes_axis.bar(stats.box_size_bins, stats.box_size_counts, color="tab:gray")
    sizes_axis.set_title("box size, sqrt(width x height)")
    sizes_axis.set_xlabel("pixels")
    sizes_axis.set_ylabel("boxes")
    sizes_axis.tick_params(axis="x", labelrotation=45)
    figure.savefig(out, dpi=100)
    return out


def _boxes_and_totals(version: DatasetVersion) -> tuple[dict[str, list[tuple]], dict[str, int]]:
    """Per image (by sha256) its boxes by class name, and the box count per class: one parse
    of each label. A label damaged since the version was written is a DatasetError."""
    boxes: dict[str, list[tuple]] = {}
    totals: Counter = Counter()
    for image in version.images():
        detections = image.detections
        # 0.01 px: below any real relabelling, above float noise of the label text.
        boxes[image.lineage["sha256"]] = sorted(
            (name, *np.round(box, 2).tolist())
            for name, box in zip(detections.class_names, detections.xyxy, strict=True)
        )
        totals.update(detections.class_names)
    return boxes, {name: totals[name] for name in version.names.values()}


def _shown(entry: Mapping[str, Any]) -> str:
    return str(entry.get("lineage", {}).get("source_image") or entry["file"])


def _bin_labels() -> list[str]:
    edges = BOX_SIZE_EDGES
    return [*(f"{lo}-{hi}" for lo, hi in itertools.pairwise(edges)), f"{edges[-1]}+"]
