"""Starting a loop turn from the service: `qc loop --job ID` as a child process of its own.

Example::

    process = start_turn(settings, job.id, min_new=20, epochs=None, auto_promote=True)
    process.pid, turn_log(settings, job.id)          # $QC_HOME/logs/loop-<job id>.log

Why a child and not a thread: a turn trains with torch for minutes to hours, and the service
imports neither torch nor `training/` (docs/architecture.md); in a thread it would also hold
the service's GIL and memory. The child runs in a session of its own, so it goes on when the
service restarts or is stopped (the job row, not the service, holds its progress), and at a
lower CPU priority (`--nice 10`), so the line's inspections come first. It inherits the
service's environment (QC_LOOP_*, QC_LABEL_*), with the service's own QC_HOME and database.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from serving.settings import ServeSettings

NICE = 10  # below the service; the line comes first


def turn_log(settings: ServeSettings, job_id: str) -> Path:
    return settings.home / "logs" / f"loop-{job_id}.log"


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
    env = {**os.environ, "QC_HOME": str(settings.home)}
    if settings.database_url:
        env["QC_DATABASE_URL"] = settings.database_url
    else:
        env.pop("QC_DATABASE_URL", None)
    log = turn_log(settings, job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True, cwd=settings.home)
    # Reap it when it ends (no zombie while the service runs); the job row has its outcome.
    threading.Thread(target=process.wait, name=f"loop-{job_id}", daemon=True).start()
    return process
