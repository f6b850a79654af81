"""The review API: the queue of flagged frames, decisions on them, and their trail. The review
page uses exactly these routes (cookie + X-CSRF-Token); tools use them with a staff key.

Example::

    curl -H "Authorization: Bearer $REVIEWER_KEY" "$QC/v1/reviews?station=line1-cam2&verdict=REVIEW"
    curl -H "Authorization: Bearer $REVIEWER_KEY" -H "Content-Type: application/json" \\
         -d '{"decision": "false_alarm", "note": "dust"}' "$QC/v1/inspections/$ID/reviews"

Times in filters with an offset (2026-11-30T08:00:00+09:00, ...Z) mean what they say; without
one they are the plant's time (QC_TIMEZONE), as the page's time fields are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from inspection.rules import Verdict
from inspection.store.reviews import FrameDecision, QueueFilter, Review, ReviewState
from serving.deps import MetricsDep, Person, ReviewsDep, SettingsDep, StateDep, StoreDep
from serving.metrics import Metrics
from serving.schemas import (
    BulkIn,
    BulkOut,
    Inspection,
    QueueEntry,
    QueuePage,
    ReviewHistory,
    ReviewIn,
    ReviewOut,
)
from serving.settings import ServeSettings

router = APIRouter(tags=["reviews"])


def _utc(value: datetime | None, settings: ServeSettings) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=settings.zone)
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        return datetime.min if value.year < 5000 else datetime.max


def queue_filter(
    settings: SettingsDep,
    station: str | None = Query(default=None, max_length=64),
    verdict: Verdict | None = Query(default=None, description="FAIL or REVIEW; both when absent"),
    class_name: str | None = Query(default=None, alias="class", max_length=64),
    model_version: str | None = Query(default=None, max_length=32),
    part_id: str | None = Query(default=None, max_length=128),
    since: datetime | None = Query(default=None, description="inclusive; no offset: plant time"),
    until: datetime | None = Query(default=None, description="exclusive; no offset: plant time"),
    state: ReviewState = ReviewState.UNREVIEWED,
    order: str = Query(default="newest", pattern="^(newest|oldest)$"),
) -> QueueFilter:
    return QueueFilter(station=station or None, verdict=verdict, class_name=class_name or None,
                       model_version=model_version or None, part_id=part_id or None,
                       since=_utc(since, settings), until=_utc(until, settings), state=state,
                       oldest_first=order == "oldest")


FilterDep = Annotated[QueueFilter, Depends(queue_filter)]


def _count(metrics: Metrics, review: Review, station: str) -> None:
    metrics.review_decisions.labels(decision=review.decision.value, station=station).inc()
    metrics.review_outcomes.labels(model_verdict=review.model_verdict.value, decision=review.decision.value).inc()
    for box in review.boxes:
        metrics.review_boxes.labels(decision=box.decision.value).inc()
    if review.decision is not FrameDecision.RETRACTED and review.verdict_at is not None:
        metrics.review_delay.observe(max(0.0, (review.created_at - review.verdict_at).total_seconds()))


@router.get("/v1/reviews", response_model=QueuePage)
def review_queue(where: FilterDep, reviews: ReviewsDep, person: Person,
                 limit: int = Query(default=50, ge=1, le=500),
                 cursor: str | None = Query(default=None, max_length=32)) -> QueuePage:
    """The queue: FAIL and REVIEW frames (unreviewed by default), newest first, with the latest
    review of each and the count the filter selects."""
    items, next_cursor = reviews.queue(where, limit=limit, cursor=cursor)
    return QueuePage(items=[QueueEntry(inspection=Inspection.of(i.inspection),
                                       review=ReviewOut.of(i.review) if i.review else None) for i in items],
                     remaining=reviews.count(where), next_cursor=next_cursor)


@router.post("/v1/reviews/bulk", response_model=BulkOut)
def bulk_review(body: BulkIn, where: FilterDep, reviews: ReviewsDep, person: Person,
                metrics: MetricsDep, store: StoreDep) -> BulkOut:
    """One decision for every frame the filter selects; 409 (nothing written) when the
    selection no longer holds `expected` frames."""
    made = reviews.bulk(where, expected=body.expected, reviewer=person.name, decision=body.decision,
                        disposition=body.disposition, note=body.note)
    stations = {}
    for review in made:
        if review.inspection_id not in stations:
            stations[review.inspection_id] = store.inspection(review.inspection_id).station_id
        _count(metrics, review, stations[review.inspection_id])
    return BulkOut(reviewed=len(made), inspection_ids=[r.inspection_id for r in made])


@router.post("/v1/inspections/{inspection_id}/reviews", response_model=ReviewOut, status_code=201,
             responses={200: {"model": ReviewOut, "description": "a retry, or the same decision as the current one: "
                                             "the row stored before (nothing written)"}})
def add_review(inspection_id: str, body: ReviewIn, reviews: ReviewsDep, store: StoreDep, person: Person,
               metrics: MetricsDep, response: Response, state: StateDep) -> ReviewOut:
    """Append a decision on one inspection (it supersedes the earlier ones, which stay)."""
    record = store.inspection(inspection_id)
    review, created = reviews.add(inspection_id, reviewer=person.name, decision=body.decision,
                                  boxes=[b.correction() for b in body.boxes], disposition=body.disposition,
                                  note=body.note, client_id=body.client_id,
                                  classes=state.manager.review_classes(state.settings.part_classes()))
    if created:
        _count(metrics, review, record.station_id)
    else:
        response.status_code = 200
    return ReviewOut.of(review)


@router.get("/v1/inspections/{inspection_id}/reviews", response_model=ReviewHistory)
def review_history(inspection_id: str, reviews: ReviewsDep, store: StoreDep, person: Person) -> ReviewHistory:
    """The inspection with its current judgement and every decision on it, oldest first."""
    record = store.inspection(inspection_id)
    history = [ReviewOut.of(r) for r in reviews.history(inspection_id)]
    return ReviewHistory(inspection=Inspection.of(record), latest=history[-1] if history else None,
                         history=history)
