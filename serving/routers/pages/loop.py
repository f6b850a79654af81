"""The Loop page: an engineer starts a turn of the labeling loop and follows it.

Example::

    qc users add lee --role engineer           # asks for the password
    open http://127.0.0.1:8000/loop             # -> /login, then back here

Server-rendered, no script: the latest turns, the chosen one's step and message (the page
reloads itself every 5 s while it runs), its per-class metrics before and after on the frozen
holdout, the gate's table, and the frames whose verdict changed (each a link to its image).
Above them, while no turn runs, what a turn would lack, each with the command that fixes it:
`qc loop --check` run in the service's environment (serving/turns.py).
"Run a turn" posts a form with the session's CSRF token; the turn is the same job as
`POST /v1/loop/run` and `qc loop` (serving/turns.py), so a second one is refused while one runs.
"""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from inspection.analytics.plant_time import PlantClock
from inspection.errors import Conflict, NotFound
from inspection.roles import Role
from inspection.store.jobs import JobKind, JobState
from serving.deps import JobsDep, SettingsDep, UsersDep
from serving.pages.render import render
from serving.schemas import JobOut
from serving.sessions import csrf_matches, session_of
from serving.turns import begin_turn, check_turn

router = APIRouter(tags=["pages"], include_in_schema=False)


def _engineer(request: Request, users, settings):
    """The signed-in engineer (or admin); a redirect to sign in; 403 for other people."""
    session = session_of(request, users, settings)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return None, RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    if not session.user.role.covers(Role.ENGINEER):
        raise HTTPException(403, "the Loop page is for engineers and admins")
    return session, None


@router.get("/loop", response_class=HTMLResponse)
async def loop_page(request: Request, users: UsersDep, settings: SettingsDep, jobs: JobsDep,
                    job: str | None = None, busy: bool = False):
    session, redirect = _engineer(request, users, settings)
    if redirect:
        return redirect
    recent = await asyncio.to_thread(jobs.recent, JobKind.LOOP, limit=10)
    chosen, error = None, None
    if job:
        try:
            chosen = await asyncio.to_thread(jobs.get, job)
        except NotFound:
            error = "missing"
    elif recent:
        chosen = recent[0]
    shown = JobOut.of(chosen, alive=jobs.alive(chosen)) if chosen else None
    if busy:
        error = "busy"
    running = any(j.state is JobState.RUNNING for j in recent)
    # What a turn would lack, as `qc loop --check` says it (not while one runs: it reloads every 5 s).
    check = None if running else await asyncio.to_thread(check_turn, settings)
    response = render(request, "loop.html", user=session.user, csrf=session.csrf, error=error, check=check,
                      jobs=[JobOut.of(j, alive=jobs.alive(j)) for j in recent], job=shown, running=running,
                      classes=_class_rows(shown.result) if shown and shown.result else [],
                      local=PlantClock(settings.timezone).format, timezone=settings.timezone)  # times in plant time
    if shown and shown.state is JobState.RUNNING:
        response.headers["Refresh"] = "5"  # follow the turn without a script
    return response


def _class_rows(result: dict) -> list[dict]:
    """Per class: AP50, precision and recall before and after, for the table."""
    before = (result.get("before") or {}).get("per_class") or {}
    after = (result.get("after") or {}).get("per_class") or {}
    rows = []
    for name in sorted(set(before) | set(after)):
        row = {"class": name}
        for metric in ("ap50", "precision", "recall"):
            b, a = before.get(name, {}).get(metric), after.get(name, {}).get(metric)
            row[metric] = (b, a, None if a is None or b is None else a - b)
        rows.append(row)
    return rows


@router.post("/loop/run")
async def run_from_page(request: Request, users: UsersDep, settings: SettingsDep, jobs: JobsDep,
                        csrf: Annotated[str, Form(max_length=128)],
                        promote: Annotated[str, Form(pattern="^(auto|wait|default)$")] = "default"):
    session, redirect = _engineer(request, users, settings)
    if redirect:
        return redirect
    if not csrf_matches(csrf, session.csrf):
        raise HTTPException(403, "wrong CSRF token; reload the page and try again")
    asked = {} if promote == "default" else {"auto_promote": promote == "auto"}
    try:
        job = await asyncio.to_thread(begin_turn, jobs, settings, asked=asked, created_by=session.user.name,
                                      via="page")
    except Conflict:
        active = await asyncio.to_thread(jobs.active, JobKind.LOOP)
        return RedirectResponse(f"/loop?busy=1{f'&job={active.id}' if active else ''}", status_code=303)
    return RedirectResponse(f"/loop?job={job.id}", status_code=303)
