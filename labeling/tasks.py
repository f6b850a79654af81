"""An inspection as a Label Studio task: the image inline, the model's or the reviewer's boxes
as a pre-annotation, the inspection id in the task data.

Example::

    task = task_for(record, image_bytes, review=latest_review)
    task["data"]["inspection_id"], task["predictions"][0]["model_version"]

How the image travels: inline, as a `data:` URL in the task itself. Label Studio in a plant
runs on another host, with no shared disk and no route to the station or to this service;
the one request that creates the task carries its pixels, its pre-annotation and its
inspection id together, so a task can never exist without its image or be half-made. The
cost: Label Studio stores the image base64-encoded (4/3 of the file) in its database, ~1.4 MB
for a 2448x2048 JPEG at q90; a day's labeling budget (tens to hundreds of frames) is far
below what its database holds. Uploading files through the import API instead would need a
second request per task to attach the prediction and the inspection id, and a crash between
the two leaves a task that cannot be traced back. Pulling never downloads images: the
annotation comes back, and the pixels are read from qc's own image store by the inspection's
sha256.

A model that judges against a golden image (labeling/config.py) gets a project that shows it
beside the frame: the task carries it as `reference`, inline too (the station's reference the
frame was judged against; a placeholder saying so where the frame has none, since Label
Studio refuses a task lacking a field its config names).

The prediction's `score` is the frame's: how sure its author is that the frame shows a defect,
the highest confidence among its boxes (the box that decides a FAIL), 0 without boxes; a
reviewer's is 1 where they stand by a defect, 0 where they cleared the frame. Label Studio sorts
and filters tasks by it, so a labeller can take the surest defects or the doubtful middle first;
the weakest box's confidence, used before, ranked a frame with one clear defect and one faint
speck among the doubtful ones.

Coordinates are percent of the original image (x, y of the top-left corner, width, height),
with `original_width`/`original_height`, as Label Studio's RectangleLabels keep them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any

from inspection.rules import ANOMALY_CLASS
from inspection.store.records import InspectionRecord
from inspection.store.reviews import FrameDecision, Review
from labeling.config import FROM_NAME, TO_NAME

MEDIA_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp"}
# What a reference project shows beside a frame judged without a golden image (an older model's).
NO_REFERENCE = ("data:image/svg+xml;base64," + base64.b64encode(
    b'<svg xmlns="http://www.w3.org/2000/svg" width="320" height="80"><rect width="320" height="80" fill="#222"/>'
    b'<text x="16" y="46" fill="#fff" font-family="sans-serif" font-size="18">'
    b"no golden image for this frame</text></svg>").decode("ascii"))


def data_url(image: bytes, image_format: str | None) -> str:
    media = MEDIA_TYPES.get(image_format or "jpeg", "application/octet-stream")
    return f"data:{media};base64,{base64.b64encode(image).decode('ascii')}"


def region(n: int, class_name: str, xyxy: Sequence[float], *, image_wh: tuple[int, int],
           score: float | None = None) -> dict[str, Any]:
    """One RectangleLabels result in percent coordinates."""
    width, height = image_wh
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    result: dict[str, Any] = {
        "id": f"qc{n}", "type": "rectanglelabels", "from_name": FROM_NAME, "to_name": TO_NAME,
        "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"x": x1 / width * 100, "y": y1 / height * 100, "width": (x2 - x1) / width * 100,
                  "height": (y2 - y1) / height * 100, "rotation": 0, "rectanglelabels": [class_name]},
    }
    if score is not None:
        result["score"] = round(float(score), 5)
    return result


def reviewed_boxes(review: Review | None) -> list[tuple[str, tuple[float, float, float, float]]] | None:
    """The defects a reviewer stands by (confirmed, re-classed, drawn), or None when nobody
    reviewed the frame or the last decision was retracted (the model's boxes stand then)."""
    if review is None or review.decision is FrameDecision.RETRACTED:
        return None
    return [(box.class_name, box.xyxy) for box in review.boxes if box.is_defect]


def frame_score(confidences: Iterable[float]) -> float:
    """The frame's score: the highest box confidence (the one that decides a FAIL), 0 with none."""
    return round(max((float(c) for c in confidences), default=0.0), 5)


def task_for(record: InspectionRecord, image: bytes, *, review: Review | None,
             reasons: Iterable[dict[str, Any]] = (), with_reference: bool = False,
             reference: tuple[bytes, str | None] | None = None) -> dict[str, Any]:
    """The task to import: data {image, inspection_id, station, verdict, image_sha256,
    reasons, a good-only model's boxes as `anomalies` (x1, y1, x2, y2 in pixels), and
    `reference`, the golden image, for a project that shows it} and one prediction: the
    reviewer's boxes (model_version "review:<name>") where a reviewer corrected the frame, else
    the model's (model_version "name@vN", the model that judged the frame) with their
    confidences; its score is the frame's (see the module's docstring)."""
    image_wh = (record.width, record.height)
    reviewed = reviewed_boxes(review)
    if reviewed is not None:
        results = [region(n, name, xyxy, image_wh=image_wh, score=1.0)
                   for n, (name, xyxy) in enumerate(reviewed, 1)]
        assert review is not None  # reviewed boxes come from a review
        prediction = {"model_version": f"review:{review.reviewer}", "score": 1.0 if results else 0.0,
                      "result": results}
    else:
        # A good-only model's boxes name no class the project labels (`anomaly`): the labeller
        # draws the real ones; the task data says where the model looked (`anomalies`).
        named = [d for d in record.detections if d["class"] != ANOMALY_CLASS]
        results = [region(n, d["class"], d["box"], image_wh=image_wh, score=d["confidence"])
                   for n, d in enumerate(named, 1)]
        prediction = {"model_version": f"{record.model_name}@{record.model_version}",
                      "score": frame_score(d["confidence"] for d in named), "result": results}
    task: dict[str, Any] = {
        "data": {
            "image": data_url(image, record.image_format),
            "inspection_id": record.id,
            "station": record.station_id,
            "verdict": record.verdict.value if hasattr(record.verdict, "value") else str(record.verdict),
            "image_sha256": record.image_sha256,
            "reasons": ", ".join(sorted({r.get("reason", "") for r in reasons if r.get("reason")})) or "chosen",
            **({"anomalies": "; ".join(f"[{', '.join(str(round(v)) for v in d['box'])}]" for d in anomalies)}
               if (anomalies := [d for d in record.detections if d["class"] == ANOMALY_CLASS]) else {}),
        },
        "predictions": [prediction],
    }
    if with_reference:
        task["data"]["reference"] = data_url(*reference) if reference is not None else NO_REFERENCE
    return task
