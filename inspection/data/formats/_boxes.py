"""The one set of rules every reader applies to the boxes it found, so that all formats
refuse and repair the same things in the same way.

Example::

    detections, problems = checked_detections(
        xyxy=np.array([[10, 10, 50, 30]]), class_id=np.array([0]),
        names={0: "scratch"}, image_wh=(640, 480),
        file="labels/a.txt", image="images/a.png", refs=["line 1"],
    )

Rules, and why:

- unknown class id, or a coordinate that is not a number: the image is left out. Dropping
  only the box would leave a defect in the image labelled as background.
- a box wholly outside the image: the image is left out; it usually means the whole file
  uses the wrong coordinates (pixels where fractions belong, or the wrong image).
- a box partly outside: clipped to the image. Up to `_SILENT_CLIP_PX` is float rounding
  (YOLO fractions, editors that put a corner on the far edge) and is clipped silently;
  more is reported.
- a box of zero width or height: dropped and reported; it cannot hold a defect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from inspection.data.formats.labelled import Problem
from inspection.detections import Detections

_SILENT_CLIP_PX = 1.0


def checked_detections(
    *,
    xyxy: np.ndarray,
    class_id: np.ndarray,
    names: Mapping[int, str],
    image_wh: tuple[int, int],
    file: str,
    image: str | None,
    refs: Sequence[str] | None = None,
) -> tuple[Detections | None, list[Problem]]:
    """Detections that pass the rules above (None if the image must be left out), and the
    problems found. `refs` names each box in messages, e.g. "line 3"."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    class_id = np.asarray(class_id, dtype=np.int64).reshape(-1)
    refs = list(refs) if refs is not None else [f"box {i + 1}" for i in range(len(xyxy))]
    width, height = image_wh

    def refused(kind: str, message: str) -> tuple[None, list[Problem]]:
        return None, [Problem(file=file, kind=kind, message=message, skipped=True, image=image)]

    bad = ~np.asarray(np.isfinite(xyxy).all(axis=1))
    if bad.any():
        return refused("bad_label", f"{_where(refs, bad)}: a coordinate is not a number; fix it")
    unknown = ~np.isin(class_id, list(names))
    if unknown.any():
        ids = sorted({int(c) for c in class_id[unknown]})
        return refused(
            "unknown_class",
            f"{_where(refs, unknown)}: class id {', '.join(map(str, ids))} is not in the class "
            f"list ({_class_list(names)}); fix the label or add the class to the class list",
        )

    problems = []
    zero = (xyxy[:, 2] <= xyxy[:, 0]) | (xyxy[:, 3] <= xyxy[:, 1])
    if zero.any():
        problems.append(
            Problem(
                file=file,
                kind="zero_area",
                message=f"{_where(refs, zero)}: box has no width or height and was left out; "
                "redraw it if it marks a defect",
                skipped=False,
                image=image,
            )
        )
        keep = ~zero
        xyxy, class_id, refs = xyxy[keep], class_id[keep], [r for r, k in zip(refs, keep, strict=True) if k]

    limits = np.array([width, height, width, height], dtype=np.float64)
    clipped = np.clip(xyxy, 0, limits)
    outside = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if outside.any():
        return refused(
            "out_of_bounds",
            f"{_where(refs, outside)}: box {_box(xyxy[outside][0])} lies outside the "
            f"{width}x{height} image; check that the labels belong to this image and use "
            "the format's coordinates",
        )
    moved = np.abs(clipped - xyxy).max(axis=1, initial=0) > _SILENT_CLIP_PX
    if moved.any():
        problems.append(
            Problem(
                file=file,
                kind="out_of_bounds",
                message=f"{_where(refs, moved)}: box {_box(xyxy[moved][0])} reaches past the "
                f"{width}x{height} image and was clipped to it",
                skipped=False,
                image=image,
            )
        )
    detections = Detections(
        xyxy=clipped.astype(np.float32),
        confidence=np.ones(len(clipped), dtype=np.float32),
        class_id=class_id,
        names=names,
        image_wh=image_wh,
    )
    return detections, problems


def _where(refs: Sequence[str], mask: np.ndarray) -> str:
    chosen = [ref for ref, hit in zip(refs, mask, strict=True) if hit]
    more = f" and {len(chosen) - 3} more" if len(chosen) > 3 else ""
    return ", ".join(chosen[:3]) + more


def _box(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _class_list(names: Mapping[int, str]) -> str:
    if not names:
        return "empty"
    return ", ".join(f"{i}={names[i]}" for i in sorted(names))
