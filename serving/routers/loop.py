"""The labeling loop as an engineer's action: start a turn, follow it.

Example::

    curl -X POST -H "Authorization: Bearer $ENGINEER_KEY" -H "Content-Type: application/json" \\
         -d '{"auto_promote": false}' "$QC/v1/loop/run"              # 202 {"id": ..., "state": "running"}
    curl -H "Authorization: Bearer $ENGINEER_KEY" "$QC/v1/loop/jobs/$ID"  # step, message, result

`POST /v1/loop/run` makes the job row first (a second request while it runs gets 409 naming
it, whoever started the first: the API, the page or `qc loop`), then starts `qc loop --job ID`
as a child of its own (serving/turns.py): the turn goes on when the service restarts, and
`GET /v1/loop/jobs/{id}` shows it from any instance sharing the database. A turn whose worker
died (no heartbeat for two minutes) is taken over by the next run, from its last finished step.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Body, Query

from inspection.store.jobs import JobKind
from serving.deps import EngineerPerson, JobsDep, SettingsDep
from serving.schemas import JobOut, LoopRunIn
from serving.turns import begin_turn

router = APIRouter(prefix="/v1/loop", tags=["loop"])


@router.post("/run", status_code=202)
async def run(jobs: JobsDep, settings: SettingsDep, person: EngineerPerson,
              body: Annotated[LoopRunIn | None, Body()] = None) -> JobOut:
    """Start one turn (or resume an abandoned one); 409 while a turn runs."""
    asked = (body or LoopRunIn()).model_dump(exclude_none=True)
    job = await asyncio.to_thread(begin_turn, jobs, settings, asked=asked, created_by=person.name, via="api")
    return JobOut.of(job, alive=True)


@router.get("/jobs")
async def recent(jobs: JobsDep, person: EngineerPerson,
                 limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[JobOut]:
    """The latest turns, newest first."""
    found = await asyncio.to_thread(jobs.recent, JobKind.LOOP, limit=limit)
    return [JobOut.of(job, alive=jobs.alive(job)) for job in found]


@router.get("/jobs/{job_id}")
async def one(job_id: str, jobs: JobsDep, person: EngineerPerson) -> JobOut:
    """One turn: its step and message while it runs, its result when it ended."""
    job = await asyncio.to_thread(jobs.get, job_id)
    return JobOut.of(job, alive=jobs.alive(job))
