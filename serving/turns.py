"""Starting a loop turn from the service: `qc loop --job ID` as a child process of its own.

Example::

    job = begin_turn(JobStore(db), settings, asked={"auto_promote": True}, created_by="kim")  # Conflict if one runs
    turn_log(settings, job.id)                       # $QC_HOME/logs/loop-<job id>.log
    check_turn(settings)["needs"]                    # what a turn lacks, as qc loop --check says

Why a child and not a thread: a turn trains with torch for minutes to hours, and the service
imports neither torch nor `training/` (docs/architecture.md); in a thread it would also hold
the service's GIL and memory. The child runs in a session of its own, so it goes on when the
service restarts or is stopped (the job row, not the service, holds its progress), and at a
lower CPU priority (`--nice 10`), so the line's inspections come first. It inherits the
service's environment (QC_LOOP_*, QC_LABEL_*), with the service's own QC_HOME and database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from inspection.store.jobs import Job, JobKind, JobState, JobStore
from serving.settings import ServeSettings

NICE = 10  # below the service; the line comes first
CHECK_TIMEOUT_S = 30.0  # the check tries Label Studio for 3 s at most; the rest reads files


def turn_log(settings: ServeSettings, job_id: str) -> Path:
    return settings.home / "logs" / f"loop-{job_id}.log"


def begin_turn(jobs: JobStore, settings: ServeSettings, *, asked: dict[str, Any], created_by: str, via: str) -> Job:
    """The job row (Conflict while a turn runs), then its worker; 503 when qc loop cannot start.
    Blocking: call it from a thread."""
    job = jobs.start(JobKind.LOOP, params={"asked": asked, "via": via}, created_by=created_by)
    try:
        start_turn(settings, job.id, **asked)
    except OSError as error:
        jobs.finish(job.id, JobState.FAILED, error=f"qc loop could not start: {error}")
        raise HTTPException(503, f"qc loop could not be started ({error}); check the service's "
                                 "Python environment (the train extra)") from error
    return job


def start_turn(settings: ServeSettings, job_id: str, *, min_new: int | None = None, epochs: int | None = None,
               auto_promote: bool | None = None) -> subprocess.Popen:
    """Start `qc loop --job job_id`; OSError when it cannot be started."""
    command = [sys.executable, "-m", "qc", "loop", "--job", job_id, "--nice", str(NICE)]
    if min_new is not None:
        command += ["--min-new", str(min_new)]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    if auto_promote is not None:
        command.append("--auto-promote" if auto_promote else "--wait-for-approval")
    env = _child_env(settings)
    log = turn_log(settings, job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    # Reap it when it ends (no zombie while the service runs); the job row has its outcome.
    threading.Thread(target=process.wait, name=f"loop-{job_id}", daemon=True).start()
    return process


def check_turn(settings: ServeSettings) -> dict[str, Any]:
    """`qc loop --check --json` in the environment a turn started here would run in: every
    prerequisite, met or missing, with its fix (training/loop_check.py). Blocking: a thread."""
    command = [sys.executable, "-m", "qc", "loop", "--check", "--json"]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              env=_child_env(settings), timeout=CHECK_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return _unanswered(str(error))
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return _unanswered((done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1])


def _unanswered(reason: str) -> dict[str, Any]:
    return {"ready": False, "needs": [{"item": "training", "state": "missing",
                                       "says": f"qc loop --check did not answer here: {reason}",
                                       "fix": 'pip install "qc[train]" in the service\'s Python environment'}]}


def _child_env(settings: ServeSettings) -> dict[str, str]:
    """The service's environment with its own QC_HOME and database: what a child sees."""
    env = {**os.environ, "QC_HOME": str(settings.home)}
    if settings.database_url:
        env["QC_DATABASE_URL"] = settings.database_url
    else:
        env.pop("QC_DATABASE_URL", None)
    return env
