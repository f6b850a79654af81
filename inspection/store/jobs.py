"""Long work as rows: one `qc loop` turn at a time, its progress visible, its steps resumable.

Example::

    jobs = JobStore(db)
    job = jobs.start(JobKind.LOOP, params={"model": "pcb"}, created_by="kim")  # Conflict if one runs
    jobs.progress(job.id, step="train", message="epoch 3/10", outputs=None)
    jobs.finish(job.id, JobState.PROMOTED, result={...})
    jobs.recent(JobKind.LOOP)[0].state

At most one active job per kind: the unique (kind, active) pair holds `active = "1"` while a
job runs and NULL once it ended, on SQLite and PostgreSQL alike. A job whose owner stopped
sending heartbeats for `STALE_S` (the process died, the machine restarted) is taken over by
the next `start`, which returns it with its finished steps, so the work goes on from there.

A job may be created by one process and worked by another: the service's `POST /v1/loop/run`
starts the row (so a second request is refused at once) and a `qc loop --job ID` child
`adopt`s it, taking over the heartbeat; the child runs in a session of its own, so the job
goes on when the service restarts.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from inspection.errors import Conflict, NotFound
from inspection.store.database import Database
from inspection.store.records import new_id, utcnow
from inspection.store.schema import jobs

STALE_S = 120.0  # heartbeats come at least every 30 s while a job runs (training callbacks)


class JobKind(StrEnum):
    LOOP = "loop"  # one turn of the labeling loop (training/loop.py)


class JobState(StrEnum):
    RUNNING = "running"
    SKIPPED = "skipped"  # nothing to do (too few new frames)
    PROMOTED = "promoted"
    WAITING = "waiting_approval"  # the gate passed; an engineer promotes it
    REFUSED = "refused"  # the gate refused the candidate
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: JobState
    step: str
    progress: dict[str, Any]
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    owner: str | None
    heartbeat_at: datetime | None
    created_by: str | None
    created_at: datetime
    finished_at: datetime | None

    def done(self, step: str) -> dict[str, Any] | None:
        """The outputs of `step` if it finished (a resumed job skips it)."""
        return self.progress.get("steps", {}).get(step)


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def start(self, kind: str, *, params: dict[str, Any], created_by: str | None = None) -> Job:
        """A new running job, or the abandoned one of this kind taken over; Conflict while
        another process's job of the kind is alive."""
        now = utcnow()
        active = self.active(kind)
        if active is not None:
            if self.alive(active, now=now):
                raise Conflict(f"a {kind} job is already running ({active.id}, step {active.step}, owner "
                               f"{active.owner}); follow it with qc loop status")
            with self.db.engine.begin() as conn:
                conn.execute(update(jobs).where(jobs.c.id == active.id).values(owner=owner(), heartbeat_at=now))
            return self.get(active.id)
        job_id = new_id()
        try:
            with self.db.engine.begin() as conn:
                conn.execute(jobs.insert().values(
                    id=job_id, kind=kind, state=JobState.RUNNING.value, active="1", step="start",
                    progress={"message": "starting", "steps": {}}, params=params, owner=owner(),
                    heartbeat_at=now, created_by=created_by, created_at=now))
        except IntegrityError as error:
            raise Conflict(f"a {kind} job started at the same moment; follow it with qc loop status") from error
        return self.get(job_id)

    def adopt(self, job_id: str, *, params: dict[str, Any] | None = None) -> Job:
        """Work the running job `job_id` from this process (its owner and heartbeat become
        ours; `params` are added to what it was started with); Conflict when it has ended,
        NotFound when there is none."""
        job = self.get(job_id)
        if job.state is not JobState.RUNNING:
            raise Conflict(f"job {job_id} has ended ({job.state.value}); start a new turn")
        values: dict[str, Any] = {"owner": owner(), "heartbeat_at": utcnow()}
        if params:
            values["params"] = {**job.params, **params}
        with self.db.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
        return self.get(job_id)

    def alive(self, job: Job, *, now: datetime | None = None) -> bool:
        """A running job whose owner sent a heartbeat within `STALE_S`."""
        now = now or utcnow()
        return (job.state is JobState.RUNNING and job.heartbeat_at is not None
                and now - job.heartbeat_at < timedelta(seconds=STALE_S))

    def progress(self, job_id: str, *, step: str, message: str, outputs: dict[str, Any] | None = None) -> Job:
        """Where the job is; `outputs` marks `step` finished with what it made."""
        job = self.get(job_id)
        steps = dict(job.progress.get("steps", {}))
        if outputs is not None:
            steps[step] = outputs
        with self.db.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                step=step, progress={"message": message, "steps": steps}, heartbeat_at=utcnow()))
        return self.get(job_id)

    def heartbeat(self, job_id: str) -> None:
        """The job's worker is alive (a job without a heartbeat for `STALE_S` is taken over)."""
        with self.db.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(heartbeat_at=utcnow()))

    def finish(self, job_id: str, state: JobState, *, result: dict[str, Any] | None = None,
               error: str | None = None) -> Job:
        with self.db.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(
                state=JobState(state).value, active=None, result=result, error=error, finished_at=utcnow()))
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).mappings().first()
        if row is None:
            raise NotFound(f"job {job_id} does not exist; see qc loop status")
        return _job(row)

    def active(self, kind: str) -> Job | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.kind == kind, jobs.c.active == "1")).mappings().first()
        return _job(row) if row else None

    def recent(self, kind: str, *, limit: int = 10) -> list[Job]:
        query = (select(jobs).where(jobs.c.kind == kind)
                 .order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit))
        with self.db.engine.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]


def _job(row) -> Job:
    return Job(id=row["id"], kind=row["kind"], state=JobState(row["state"]), step=row["step"],
               progress=dict(row["progress"] or {}), params=dict(row["params"] or {}), result=row["result"],
               error=row["error"], owner=row["owner"], heartbeat_at=row["heartbeat_at"],
               created_by=row["created_by"], created_at=row["created_at"], finished_at=row["finished_at"])
