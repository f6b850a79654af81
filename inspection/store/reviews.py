"""What QC staff decided about flagged frames: an append-only trail, and the queue of what is left.

Example::

    reviews = ReviewStore(db)
    review, created = reviews.add("0190c3...", reviewer="kim", decision=FrameDecision.DEFECT,
                                  boxes=[BoxCorrection(BoxDecision.MISSED, "short", (10, 20, 40, 60))])
    reviews.history("0190c3...")[-1] == review       # the newest row is the current judgement
    items, cursor = reviews.queue(QueueFilter(station="line1-cam2"))
    reviews.count(QueueFilter(station="line1-cam2"))   # what is left to review there

A review row is never updated or deleted: a new decision on the same frame is a new row that
supersedes the older ones, and undo is a new row too (the state before, or `retracted`). The
labelling loop reads `Review.boxes`: for every model detection its `BoxDecision` (the model's
index in `detection`, the corrected class), and every missed defect a reviewer drew, all as
`xyxy` in the original image's pixels.

A decision identical to the frame's current one by the same reviewer (the same frame decision,
disposition, boxes and note: a key pressed twice, a frame decided again after going back) is not
a new row: `add` returns the stored one, so the audit trail holds what changed, once.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, exists, func, not_, select
from sqlalchemy.exc import IntegrityError

from inspection.errors import ConfigError, Conflict, NotFound
from inspection.rules import Verdict
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, inspection_conditions, utcnow
from inspection.store.schema import inspections, reviews

FLAGGED = (Verdict.FAIL.value, Verdict.REVIEW.value)
BULK_LIMIT = 1000  # frames one bulk decision may cover; a bigger selection is narrowed first


class FrameDecision(StrEnum):
    """The reviewer's judgement of the whole frame."""

    DEFECT = "defect"  # the part has a real defect (the model's FAIL or REVIEW was right)
    FALSE_ALARM = "false_alarm"  # nothing wrong with the part
    RETRACTED = "retracted"  # an undo of the only decision: the frame is back in the queue


class BoxDecision(StrEnum):
    CONFIRMED = "confirmed"  # a real defect of the class the model said
    FALSE_ALARM = "false_alarm"  # not a defect
    WRONG_CLASS = "wrong_class"  # a real defect of another class (`class_name`)
    MISSED = "missed"  # a defect the model did not report, drawn by the reviewer
    # Not decided yet: the reviewer corrected other boxes of the frame and has not judged this
    # one. Only a `defect` frame keeps it (a box correction must not confirm the boxes beside
    # it); the model's box stands for it, as a label too, until the reviewer decides it.
    UNDECIDED = "undecided"


class Disposition(StrEnum):
    """What happens to the physical part."""

    NG_CONFIRMED = "ng_confirmed"  # scrapped or reworked
    OK_RELEASED = "ok_released"  # released to the next step


class ReviewState(StrEnum):
    UNREVIEWED = "unreviewed"
    REVIEWED = "reviewed"
    ALL = "all"


@dataclass(frozen=True)
class BoxCorrection:
    """One box as the reviewer judged it, ready to be a label: class and xyxy in image pixels.
    `detection` is the index of the model's detection in the inspection (None for a missed box);
    `model_class` is what the model called it."""

    decision: BoxDecision
    class_name: str
    xyxy: tuple[float, float, float, float]
    detection: int | None = None
    model_class: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision.value, "class": self.class_name, "xyxy": list(self.xyxy),
                "detection": self.detection, "model_class": self.model_class}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BoxCorrection:
        return cls(decision=BoxDecision(data["decision"]), class_name=data["class"],
                   xyxy=_xyxy(data["xyxy"]), detection=data.get("detection"),
                   model_class=data.get("model_class"))

    @property
    def is_defect(self) -> bool:
        # An undecided box counts as the model said it: a defect, until the reviewer says no.
        return self.decision is not BoxDecision.FALSE_ALARM


@dataclass(frozen=True)
class Review:
    id: int
    inspection_id: str
    reviewer: str
    created_at: datetime
    decision: FrameDecision
    disposition: Disposition | None
    boxes: list[BoxCorrection]
    note: str
    model_verdict: Verdict
    client_id: str | None = None
    verdict_at: datetime | None = field(default=None, compare=False)  # the inspection's time


@dataclass(frozen=True)
class QueueFilter:
    """Which flagged frames a queue shows. Times are naive UTC, as stored."""

    station: str | None = None
    verdict: Verdict | None = None  # FAIL or REVIEW; None: both
    class_name: str | None = None
    model_version: str | None = None
    part_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    state: ReviewState = ReviewState.UNREVIEWED
    oldest_first: bool = False


@dataclass(frozen=True)
class QueueItem:
    inspection: InspectionRecord
    review: Review | None  # the latest, if any


class ReviewStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing ---------------------------------------------------------------------------

    def add(self, inspection_id: str, *, reviewer: str, decision: FrameDecision | str,
            boxes: list[BoxCorrection] | None = None, disposition: Disposition | str | None = None,
            note: str = "", client_id: str | None = None,
            classes: Collection[str] | None = None) -> tuple[Review, bool]:
        """Append a decision; returns (review, True), or (the stored one, False) when this
        reviewer already sent `client_id` (a retry from a page that lost the answer). With
        `classes` (the served model's), a drawn or corrected box must name one of them."""
        if client_id:
            existing = self._by_client(reviewer, client_id)
            if existing is not None:
                return existing, False
        with self.db.engine.connect() as conn:
            row = conn.execute(select(inspections.c.verdict, inspections.c.detections, inspections.c.width,
                                      inspections.c.height, inspections.c.created_at)
                               .where(inspections.c.id == inspection_id)).mappings().first()
        if row is None:
            raise NotFound(f"inspection {inspection_id} does not exist")
        _check_classes(boxes or [], classes)
        values = _values(inspection_id, row, reviewer=reviewer, decision=FrameDecision(decision), boxes=boxes,
                         disposition=disposition, note=note, client_id=client_id)
        current = self._current(inspection_id)
        if current is not None and _same_decision(current, values):
            return current, False
        try:
            with self.db.engine.begin() as conn:
                new_id = conn.execute(reviews.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        except IntegrityError:  # the same client_id raced in from a second request
            existing = self._by_client(reviewer, client_id) if client_id else None
            if existing is None:
                raise
            return existing, False
        return _review({**values, "id": new_id}, verdict_at=row["created_at"]), True

    def bulk(self, where: QueueFilter, *, expected: int, reviewer: str, decision: FrameDecision | str,
             disposition: Disposition | str | None = None, note: str = "") -> list[Review]:
        """One decision for every frame the filter selects now, in one transaction. `expected`
        is the count the reviewer saw: if frames arrived or were reviewed since, nothing is
        written (Conflict), so a bulk decision never covers a frame nobody looked at the list of."""
        decision = FrameDecision(decision)
        if decision is FrameDecision.RETRACTED:
            raise ConfigError("a bulk decision is defect or false_alarm")
        with self.db.engine.begin() as conn:
            rows = conn.execute(self._select(where).limit(BULK_LIMIT + 1)).mappings().all()
            if len(rows) > BULK_LIMIT:
                raise ConfigError(f"a bulk decision covers at most {BULK_LIMIT} frames; narrow the filter")
            if len(rows) != expected:
                raise Conflict(f"the selection now holds {len(rows)} frames, not {expected}; "
                               "look at the list again and repeat")
            made = []
            for row in rows:
                values = _values(row["id"], row, reviewer=reviewer, decision=decision, boxes=None,
                                 disposition=disposition, note=note, client_id=None)
                new_id = conn.execute(reviews.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
                made.append(_review({**values, "id": new_id}, verdict_at=row["created_at"]))
        return made

    def _current(self, inspection_id: str) -> Review | None:
        """The inspection's newest review (its current judgement), if any."""
        query = (select(reviews).where(reviews.c.inspection_id == inspection_id)
                 .order_by(reviews.c.id.desc()).limit(1))
        with self.db.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _review(row) if row else None

    def _by_client(self, reviewer: str, client_id: str) -> Review | None:
        query = select(reviews).where(reviews.c.reviewer == reviewer, reviews.c.client_id == client_id)
        with self.db.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _review(row) if row else None

    # -- reading ---------------------------------------------------------------------------

    def history(self, inspection_id: str) -> list[Review]:
        """Every decision on the inspection, oldest first (the last one is current)."""
        query = select(reviews).where(reviews.c.inspection_id == inspection_id).order_by(reviews.c.id)
        with self.db.engine.connect() as conn:
            return [_review(r) for r in conn.execute(query).mappings()]

    def latest(self, inspection_ids: list[str]) -> dict[str, Review]:
        if not inspection_ids:
            return {}
        newest = (select(func.max(reviews.c.id)).where(reviews.c.inspection_id.in_(inspection_ids))
                  .group_by(reviews.c.inspection_id))
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(reviews).where(reviews.c.id.in_(newest))).mappings().all()
        return {r["inspection_id"]: _review(r) for r in rows}

    def decided(self) -> list[Review]:
        """Every frame's current review where it is a decision (not a retraction), oldest first:
        the frames a reviewer has labelled (labeling/reviewed.py)."""
        newest = select(func.max(reviews.c.id)).group_by(reviews.c.inspection_id)
        query = (select(reviews).where(reviews.c.id.in_(newest), reviews.c.decision != FrameDecision.RETRACTED.value)
                 .order_by(reviews.c.id))
        with self.db.engine.connect() as conn:
            return [_review(r) for r in conn.execute(query).mappings()]

    def queue(self, where: QueueFilter, *, limit: int = 50,
              cursor: str | None = None) -> tuple[list[QueueItem], str | None]:
        """Flagged frames, newest (or oldest) first, with their latest review; pass the
        returned cursor for the next page (None: no more)."""
        query = self._select(where)
        if cursor:
            query = query.where(inspections.c.id > cursor if where.oldest_first else inspections.c.id < cursor)
        with self.db.engine.connect() as conn:
            rows = conn.execute(query.limit(limit + 1)).mappings().all()
        records = [_record(r) for r in rows[:limit]]
        latest = self.latest([r.id for r in records])
        items = [QueueItem(inspection=r, review=latest.get(r.id)) for r in records]
        return items, (records[-1].id if len(rows) > limit else None)

    def count(self, where: QueueFilter) -> int:
        query = select(func.count()).select_from(self._select(where).order_by(None).subquery())
        with self.db.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def backlog(self) -> dict[str, int]:
        """Unreviewed FAIL and REVIEW frames per station."""
        query = (select(inspections.c.station_id, func.count())
                 .where(inspections.c.verdict.in_(FLAGGED), not_(_reviewed()))
                 .group_by(inspections.c.station_id))
        with self.db.engine.connect() as conn:
            return {station: int(n) for station, n in conn.execute(query)}

    def _select(self, where: QueueFilter):
        conditions = inspection_conditions(
            station=where.station, verdicts=[Verdict(where.verdict).value] if where.verdict else list(FLAGGED),
            model_version=where.model_version, part_id=where.part_id, since=where.since, until=where.until,
            class_name=where.class_name)
        if where.state is ReviewState.UNREVIEWED:
            conditions.append(not_(_reviewed()))
        elif where.state is ReviewState.REVIEWED:
            conditions.append(_reviewed())
        order = inspections.c.id.asc() if where.oldest_first else inspections.c.id.desc()
        return select(inspections).where(and_(*conditions)).order_by(order)


def _xyxy(values: Any) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def _reviewed():
    """The inspection's newest review is a decision (not a retraction)."""
    newer = reviews.alias("newer")
    return exists().where(
        reviews.c.inspection_id == inspections.c.id,
        reviews.c.decision != FrameDecision.RETRACTED.value,
        not_(exists().where(newer.c.inspection_id == reviews.c.inspection_id, newer.c.id > reviews.c.id)),
    )


def _values(inspection_id: str, row, *, reviewer: str, decision: FrameDecision,
            boxes: list[BoxCorrection] | None, disposition: Disposition | str | None, note: str,
            client_id: str | None) -> dict[str, Any]:
    """The row to insert: boxes checked against the inspection and completed, so the stored
    corrections cover every model detection (those not mentioned follow the frame decision)."""
    detections = row["detections"] or []
    width, height = row["width"], row["height"]
    given: dict[int, BoxCorrection] = {}
    drawn: list[BoxCorrection] = []
    for box in boxes or []:
        if box.decision is BoxDecision.MISSED:
            drawn.append(_checked_drawn(box, width, height))
            continue
        if box.detection is None or not 0 <= box.detection < len(detections):
            raise ConfigError(f"box decision {box.decision.value} names detection {box.detection}; "
                              f"inspection {inspection_id} has detections 0 to {len(detections) - 1}")
        if box.decision is BoxDecision.WRONG_CLASS and not box.class_name.strip():
            raise ConfigError("wrong_class needs the right class in `class`")
        given[box.detection] = box
    completed = []
    default = BoxDecision.FALSE_ALARM if decision is FrameDecision.FALSE_ALARM else BoxDecision.CONFIRMED
    for index, detection in enumerate(detections):
        chosen = given.get(index)
        choice = chosen.decision if chosen is not None else default
        if choice is BoxDecision.UNDECIDED and decision is not FrameDecision.DEFECT:
            choice = default  # a false alarm decides every box; a retraction drops them all
        name = chosen.class_name if chosen is not None and choice is BoxDecision.WRONG_CLASS else detection["class"]
        completed.append(BoxCorrection(decision=choice, class_name=name,
                                       xyxy=_xyxy(detection["box"]),
                                       detection=index, model_class=detection["class"]))
    if decision is FrameDecision.RETRACTED:
        completed, drawn, disposition = [], [], None
    elif decision is FrameDecision.FALSE_ALARM and (drawn or any(b.is_defect for b in completed)):
        raise ConfigError("a false alarm cannot keep a confirmed or drawn defect; decide the frame as a defect")
    if disposition is None and decision is not FrameDecision.RETRACTED:
        disposition = Disposition.NG_CONFIRMED if decision is FrameDecision.DEFECT else Disposition.OK_RELEASED
    if len(note) > 2000:
        raise ConfigError("a note holds at most 2000 characters")
    return {
        "inspection_id": inspection_id, "reviewer": reviewer, "created_at": utcnow(),
        "decision": decision.value, "disposition": Disposition(disposition).value if disposition else None,
        "boxes": [b.to_json() for b in completed + drawn], "note": note,
        "model_verdict": Verdict(row["verdict"]).value, "client_id": client_id or None,
    }


def _same_decision(current: Review, values: dict[str, Any]) -> bool:
    """Whether the row about to be written says nothing `current` does not: same reviewer,
    frame decision, disposition, boxes and note."""
    return (current.reviewer == values["reviewer"] and current.decision.value == values["decision"]
            and (current.disposition.value if current.disposition else None) == values["disposition"]
            and current.note == values["note"]
            and [b.to_json() for b in current.boxes] == values["boxes"])


def _check_classes(boxes: list[BoxCorrection], classes: Collection[str] | None) -> None:
    """A class a reviewer names becomes a training label: one the model cannot learn (or an
    HTML string, issue 25) is refused, not stored."""
    if classes is None:
        return
    for box in boxes:
        name = box.class_name.strip()  # an empty one is refused below, with its own reason
        if box.decision in (BoxDecision.MISSED, BoxDecision.WRONG_CLASS) and name and name not in classes:
            known = ", ".join(sorted(classes)[:20])
            raise ConfigError(f"class {box.class_name[:64]!r} of a {box.decision.value} box is not one the model "
                              f"detects; choose one of: {known}")


def _checked_drawn(box: BoxCorrection, width: int, height: int) -> BoxCorrection:
    x1, y1, x2, y2 = box.xyxy
    x1, x2 = sorted((max(0.0, min(float(width), x1)), max(0.0, min(float(width), x2))))
    y1, y2 = sorted((max(0.0, min(float(height), y1)), max(0.0, min(float(height), y2))))
    if x2 - x1 < 1 or y2 - y1 < 1:
        raise ConfigError(f"a missed-defect box must lie on the {width}x{height} image and be at least 1 px wide")
    if not box.class_name.strip():
        raise ConfigError("a missed-defect box needs its class in `class`")
    return BoxCorrection(decision=BoxDecision.MISSED, class_name=box.class_name.strip(),
                         xyxy=(round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)))


def _review(row, *, verdict_at: datetime | None = None) -> Review:
    return Review(
        id=int(row["id"]), inspection_id=row["inspection_id"], reviewer=row["reviewer"],
        created_at=row["created_at"], decision=FrameDecision(row["decision"]),
        disposition=Disposition(row["disposition"]) if row["disposition"] else None,
        boxes=[BoxCorrection.from_json(b) for b in row["boxes"] or []], note=row["note"] or "",
        model_verdict=Verdict(row["model_verdict"]), client_id=row["client_id"], verdict_at=verdict_at,
    )


def _record(row) -> InspectionRecord:
    record = InspectionRecord(**{k: row[k] for k in InspectionRecord.__dataclass_fields__})
    record.verdict = Verdict(record.verdict)
    return record
