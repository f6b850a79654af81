"""Labels from review: a frame a reviewer decided box by box on the review page is labelled.

Example::

    from labeling.reviewed import reviewed_images

    items = reviewed_images(db, names={0: "dent", 1: "crack"}, decisions=[FrameDecision.DEFECT],
                            image_file=lambda record: images.path(record.image_sha256),
                            skip=labels.known(), already={})
    # LabelledImage per frame (lineage: labelled_by "review", reviewer, reviewed_at), or a
    # Problem naming a class the dataset does not have

A review row (inspection/store/reviews.py) holds a decision for every box the model reported
(confirmed, false alarm, or the right class) and every missed defect the reviewer drew, in the
original image's pixels: that is a complete label. The boxes that are defects (confirmed, the
corrected class, drawn) become the frame's labels; a false-alarm frame has none and enters as
a background image. Only the frame's current review counts (a later decision replaces it, a
retraction withdraws it).

Left out: frames sent to Label Studio (`skip`: its annotation is the label there, a second
pass the policy asked for), frames without a stored image (never kept, or removed since), and
frames whose current review is already in the previous version (`already`: inspection id ->
review id in its lineage); a frame whose review changed since enters again with the new one.
A frame with a box still undecided (one box corrected, the others not looked at yet) is not
labelled either: its undecided boxes are only the model's word, so it stays for Label Studio
until the reviewer decides the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inspection.data.formats import LabelledImage, Problem
from inspection.detections import Detections
from inspection.errors import NotFound
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, RecordStore
from inspection.store.reviews import BoxDecision, FrameDecision, Review, ReviewStore

LABELLED_BY = "review"


def labelled_reviews(db: Database, decisions: Collection[FrameDecision], *, skip: Collection[str] = (),
                     already: Mapping[str, int] | None = None) -> list[Review]:
    """The current reviews that label their frame and are not in the dataset yet."""
    already = already or {}
    return [r for r in ReviewStore(db).decided()
            if r.decision in decisions and r.inspection_id not in skip and already.get(r.inspection_id) != r.id
            and not any(b.decision is BoxDecision.UNDECIDED for b in r.boxes)]


def reviewed_images(db: Database, *, names: Mapping[int, str], decisions: Collection[FrameDecision],
                    image_file: Callable[[InspectionRecord], Path], skip: Collection[str] = (),
                    already: Mapping[str, int] | None = None,
                    reviews: list[Review] | None = None) -> list[LabelledImage | Problem]:
    """Each reviewed frame as a LabelledImage with its lineage, or a Problem (see the module
    docstring); `reviews`: the `labelled_reviews` already read, if the caller has them."""
    records = RecordStore(db)
    ids = {name: i for i, name in names.items()}
    found: list[LabelledImage | Problem] = []
    for review in reviews if reviews is not None else labelled_reviews(db, decisions, skip=skip, already=already):
        try:
            record = records.inspection(review.inspection_id)
        except NotFound:
            continue
        if record.image_sha256 is None:
            continue
        try:
            path = image_file(record)
        except (NotFound, OSError):
            continue
        if not path.is_file():  # removed by retention since the review: nothing to train on
            continue
        defects = [b for b in review.boxes if b.is_defect] if review.decision is FrameDecision.DEFECT else []
        unknown = sorted({b.class_name for b in defects if b.class_name not in ids})
        if unknown:
            found.append(Problem(file=str(path), kind="unknown_class", message=(
                f"review {review.id} of inspection {record.id} by {review.reviewer} names class "
                f"{', '.join(unknown)}, which the dataset does not have ({', '.join(names.values())}); "
                "correct the review, or label the frame in Label Studio")))
            continue
        detections = Detections(xyxy=np.asarray([b.xyxy for b in defects], np.float32).reshape(-1, 4),
                                confidence=np.ones(len(defects), np.float32),
                                class_id=np.asarray([ids[b.class_name] for b in defects], np.int64),
                                names=dict(names), image_wh=(record.width, record.height))
        found.append(LabelledImage(path=path, detections=detections, lineage=lineage(review, record)))
    return found


def lineage(review: Review, record: InspectionRecord) -> dict[str, Any]:
    """Where a reviewed frame's labels came from, as its dataset entry records it."""
    return {"inspection_id": record.id, "station": record.station_id, "labelled_by": LABELLED_BY,
            "reviewer": review.reviewer, "reviewed_at": review.created_at.isoformat(), "review_id": review.id,
            "review_decision": review.decision.value,
            "boxes": {d: sum(1 for b in review.boxes if b.decision.value == d)
                      for d in sorted({b.decision.value for b in review.boxes})},
            "model": f"{record.model_name}@{record.model_version}"}
