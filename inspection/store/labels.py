"""The labeling status of inspections: a durable push queue to Label Studio and what came back.

Example::

    labels = LabelStore(db)
    labels.enqueue("pcb-line1", ["0190c1...", "0190c2..."], reasons={"0190c1...": [{"reason": "review"}]})
    due = labels.claim("pcb-line1", limit=20)        # queued rows now marked sending
    labels.pushed("pcb-line1", {"0190c1...": 41})    # Label Studio's task ids
    labels.failed("pcb-line1", ["0190c2..."], "connection refused")   # retried after a backoff
    labels.counts("pcb-line1")                       # {"queued": 1, "pushed": 1, ...}

One row per (project, inspection): pushing an inspection twice finds its row and sends
nothing; a row is `sending` only while a push is in flight, so a row found `sending` by the
next push means the last one died mid-request and Label Studio may or may not hold the task:
the bridge asks Label Studio before sending it again (`labeling.bridge.push`).

Backoff after the n-th failed attempt: `min(BACKOFF_BASE_S * 2**(n-1), BACKOFF_MAX_S)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError

from inspection.store.database import Database
from inspection.store.records import utcnow
from inspection.store.schema import label_tasks

BACKOFF_BASE_S = 5.0
BACKOFF_MAX_S = 600.0


class LabelState(StrEnum):
    QUEUED = "queued"  # waiting to be pushed (again, after a failure: see next_attempt_at)
    SENDING = "sending"  # a push is in flight
    PUSHED = "pushed"  # a task in Label Studio, not yet annotated
    LABELLED = "labelled"  # annotated in Label Studio; not yet in a dataset version
    PULLED = "pulled"  # its annotation is in dataset version `dataset_ref`


@dataclass(frozen=True)
class LabelTask:
    project: str
    inspection_id: str
    state: LabelState
    reasons: list[dict[str, Any]]
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    task_id: int | None
    annotation_id: int | None
    annotation: list[dict[str, Any]] | None
    annotated_at: str | None
    dataset_ref: str | None


def backoff_s(attempts: int) -> float:
    return min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S)


class LabelStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(self, project: str, inspection_ids: Iterable[str], *,
                reasons: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> list[str]:
        """Queue inspections for `project`; returns those newly queued (the others were queued
        or sent before and are left as they are)."""
        added = []
        now = utcnow()
        for inspection_id in dict.fromkeys(inspection_ids):
            values = {"project": project, "inspection_id": inspection_id, "state": LabelState.QUEUED.value,
                      "reasons": [dict(r) for r in (reasons or {}).get(inspection_id, [])],
                      "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}
            try:
                with self.db.engine.begin() as conn:
                    conn.execute(label_tasks.insert().values(**values))
            except IntegrityError:
                continue  # already there: unique (project, inspection_id)
            added.append(inspection_id)
        return added

    def claim(self, project: str, *, limit: int, now: datetime | None = None) -> list[LabelTask]:
        """Up to `limit` queued rows whose backoff has passed, marked `sending`, oldest first."""
        now = now or utcnow()
        with self.db.engine.begin() as conn:
            ids = conn.execute(
                select(label_tasks.c.id)
                .where(label_tasks.c.project == project, label_tasks.c.state == LabelState.QUEUED.value,
                       label_tasks.c.next_attempt_at <= now)
                .order_by(label_tasks.c.id).limit(limit)
            ).scalars().all()
            if not ids:
                return []
            # Only rows still queued: a second pusher racing us claims none of ours.
            conn.execute(update(label_tasks).where(label_tasks.c.id.in_(ids),
                                                   label_tasks.c.state == LabelState.QUEUED.value)
                         .values(state=LabelState.SENDING.value, updated_at=now))
            rows = conn.execute(select(label_tasks).where(label_tasks.c.id.in_(ids)).order_by(label_tasks.c.id)
                                ).mappings().all()
        return [_task(row) for row in rows if row["state"] == LabelState.SENDING.value]

    def in_flight(self, project: str) -> list[LabelTask]:
        """Rows left `sending` by a push that did not finish."""
        return self.tasks(project, states=[LabelState.SENDING])

    def pushed(self, project: str, task_ids: Mapping[str, int]) -> None:
        now = utcnow()
        with self.db.engine.begin() as conn:
            for inspection_id, task_id in task_ids.items():
                conn.execute(update(label_tasks).where(label_tasks.c.project == project,
                                                       label_tasks.c.inspection_id == inspection_id)
                             .values(state=LabelState.PUSHED.value, task_id=int(task_id),
                                     attempts=label_tasks.c.attempts + 1, last_error=None, updated_at=now))

    def failed(self, project: str, inspection_ids: Iterable[str], error: str) -> None:
        """Back to the queue, to be tried again after the backoff for its attempt count."""
        now = utcnow()
        with self.db.engine.begin() as conn:
            for inspection_id in inspection_ids:
                where = and_(label_tasks.c.project == project, label_tasks.c.inspection_id == inspection_id)
                attempts = (conn.execute(select(label_tasks.c.attempts).where(where)).scalar() or 0) + 1
                conn.execute(update(label_tasks).where(where).values(
                    state=LabelState.QUEUED.value, attempts=attempts, last_error=error[:2000],
                    next_attempt_at=now + timedelta(seconds=backoff_s(attempts)), updated_at=now))

    def requeue(self, project: str, inspection_ids: Iterable[str]) -> None:
        """`sending` rows that Label Studio turned out not to hold: queued again, due now."""
        now = utcnow()
        with self.db.engine.begin() as conn:
            conn.execute(update(label_tasks).where(label_tasks.c.project == project,
                                                   label_tasks.c.inspection_id.in_(list(inspection_ids)))
                         .values(state=LabelState.QUEUED.value, next_attempt_at=now, updated_at=now))

    def annotated(self, project: str, task_id: int, *, annotation_id: int, result: list[dict[str, Any]],
                  annotated_at: str) -> bool:
        """Record a task's chosen annotation; False when the task is not one of ours or this
        very annotation (same id and time) is recorded already. A newer annotation of a pulled
        task makes it labelled again, for the next version."""
        annotated_at = _iso(annotated_at)
        with self.db.engine.begin() as conn:
            row = conn.execute(select(label_tasks).where(label_tasks.c.project == project,
                                                         label_tasks.c.task_id == int(task_id))).mappings().first()
            if row is None:
                return False
            if row["annotation_id"] == annotation_id and row["annotated_at"] == annotated_at:
                return False
            conn.execute(update(label_tasks).where(label_tasks.c.id == row["id"]).values(
                state=LabelState.LABELLED.value, annotation_id=int(annotation_id), annotation=result,
                annotated_at=annotated_at, updated_at=utcnow()))
        return True

    def mark_pulled(self, project: str, inspection_ids: Iterable[str], dataset_ref: str) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(update(label_tasks).where(label_tasks.c.project == project,
                                                   label_tasks.c.inspection_id.in_(list(inspection_ids)))
                         .values(state=LabelState.PULLED.value, dataset_ref=dataset_ref, updated_at=utcnow()))

    def tasks(self, project: str, *, states: Sequence[LabelState] | None = None) -> list[LabelTask]:
        query = select(label_tasks).where(label_tasks.c.project == project)
        if states:
            query = query.where(label_tasks.c.state.in_([LabelState(s).value for s in states]))
        with self.db.engine.connect() as conn:
            return [_task(row) for row in conn.execute(query.order_by(label_tasks.c.id)).mappings()]

    def of_inspection(self, inspection_id: str) -> list[LabelTask]:
        """Its rows in every project (usually one)."""
        query = select(label_tasks).where(label_tasks.c.inspection_id == inspection_id).order_by(label_tasks.c.id)
        with self.db.engine.connect() as conn:
            return [_task(row) for row in conn.execute(query).mappings()]

    def task(self, project: str, inspection_id: str) -> LabelTask | None:
        query = select(label_tasks).where(label_tasks.c.project == project,
                                          label_tasks.c.inspection_id == inspection_id)
        with self.db.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return _task(row) if row else None

    def known(self, inspection_ids: Iterable[str] | None = None) -> set[str]:
        """Inspections sent to labeling in any project (the sampler never picks them again)."""
        query = select(label_tasks.c.inspection_id).distinct()
        with self.db.engine.connect() as conn:
            found = set(conn.execute(query).scalars())
        return found if inspection_ids is None else found & set(inspection_ids)

    def counts(self, project: str) -> dict[str, int]:
        query = (select(label_tasks.c.state, func.count()).where(label_tasks.c.project == project)
                 .group_by(label_tasks.c.state))
        counts = {state.value: 0 for state in LabelState}
        with self.db.engine.connect() as conn:
            for state, n in conn.execute(query):
                counts[state] = int(n)
        return counts


def _iso(stamp: str) -> str:
    """One spelling of a time ("...Z" from a webhook, "+00:00" from the API), so the same
    annotation is recognised whichever way it arrived."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return stamp


def _task(row) -> LabelTask:
    return LabelTask(
        project=row["project"], inspection_id=row["inspection_id"], state=LabelState(row["state"]),
        reasons=list(row["reasons"] or []), attempts=int(row["attempts"] or 0),
        next_attempt_at=row["next_attempt_at"], last_error=row["last_error"], task_id=row["task_id"],
        annotation_id=row["annotation_id"], annotation=row["annotation"], annotated_at=row["annotated_at"],
        dataset_ref=row["dataset_ref"],
    )
