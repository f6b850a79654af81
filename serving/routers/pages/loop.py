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
Each turn says who started it and where: on this page, through the API, or from the command
line (`qc loop`, as user@host). What the turn and the check say (made in English by other
processes) is shown in the page's language (serving/pages/loop_messages.py).
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from inspection.analytics.plant_time import PlantClock
from inspection.errors import Conflict, NotFound
from inspection.roles import Role
from inspection.store.jobs import JobKind, JobState
from serving.deps import JobsDep, SettingsDep, UsersDep
from serving.pages.forbidden import forbidden_page
from serving.pages.loop_messages import translate
from serving.pages.render import language, render
from serving.schemas import JobOut
from serving.sessions import csrf_matches, session_of
from serving.turns import begin_turn, check_turn

router = APIRouter(tags=["pages"], include_in_schema=False)


def _engineer(request: Request, users, settings):
    """The signed-in engineer (or admin) and None; else None and the response: a redirect to
    sign in, or the 403 page for other people."""
    session = session_of(request, users, settings)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return None, RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    if not session.user.role.covers(Role.ENGINEER):
        return None, forbidden_page(request, session, "The Loop page is for engineers and admins.")
    return session, None


@router.get("/loop", response_class=HTMLResponse)
async def loop_page(request: Request, users: UsersDep, settings: SettingsDep, jobs: JobsDep,
                    job: str | None = None, busy: bool = False):
    session, refused = _engineer(request, users, settings)
    if refused:
        return refused
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
    lang = language(request)
    response = render(request, "loop.html", user=session.user, csrf=session.csrf, error=error,
                      check=_said_check(check, lang) if check else None,
                      jobs=[_said(JobOut.of(j, alive=jobs.alive(j)), lang) for j in recent],
                      job=_said(shown, lang) if shown else None, running=running, origins=ORIGINS,
                      classes=_class_rows(shown.result) if shown and shown.result else [],
                      gate=gate_rows(str(shown.result.get("gate") or "")) if shown and shown.result else None,
                      local=PlantClock(settings.timezone).format, timezone=settings.timezone)  # times in plant time
    if shown and shown.state is JobState.RUNNING:
        response.headers["Refresh"] = "5"  # follow the turn without a script
    return response


# Where a turn was started (`via` in its params), in words; a row without one was made by
# `qc loop` before it said so (the API and the page always did).
ORIGINS = {"page": "on the Loop page", "api": "through the API", "cli": "from the command line"}


def _said(job: JobOut, lang: str) -> JobOut:
    """The turn with what it says (step, message, notes, error, result message) in `lang`."""
    steps = {name: ({**outputs, "note": translate(outputs["note"], lang)} if outputs.get("note") else outputs)
             for name, outputs in job.steps.items()}
    result = dict(job.result) if job.result else None
    if result and result.get("message"):
        result["message"] = translate(result["message"], lang)
    return job.model_copy(update={
        "step": translate(job.step, lang), "message": translate(job.message, lang) if job.message else job.message,
        "error": translate(job.error, lang) if job.error else job.error, "result": result,
        "steps": {translate(name, lang): outputs for name, outputs in steps.items()}})


def _said_check(check: dict, lang: str) -> dict:
    """`qc loop --check --json` with each need's words and fix in `lang` (a command stays a command)."""
    return {**check, "needs": [{**need, "says": translate(need.get("says"), lang),
                                "fix": translate(need.get("fix"), lang)} for need in check.get("needs", [])]}


# One row of the gate's table (inspection/models/gate.py, GateDecision.table).
_GATE_ROW = re.compile(r"(?P<metric>\S.*?)\s+(?P<candidate>-?\d+\.\d+)\s+(?P<production>-?\d+\.\d+)\s+"
                       r"(?P<change>[+-]\d+\.\d+)\s+(?P<allowed>[+-]\d+\.\d+)\s+(?P<result>ok|REFUSED)")


def gate_rows(table: str) -> list[dict[str, str]] | None:
    """The gate's text table as rows, for an HTML table with headers in the page's language;
    None when it is not that table (the page then shows the text as it is)."""
    lines = [line for line in table.splitlines()[1:] if line.strip()]
    rows = [match.groupdict() for line in lines if (match := _GATE_ROW.fullmatch(line.strip()))]
    return rows if rows and len(rows) == len(lines) else None


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
    session, refused = _engineer(request, users, settings)
    if refused:
        return refused
    if not csrf_matches(csrf, session.csrf):
        raise HTTPException(403, "wrong CSRF token; reload the page and try again")
    asked = {} if promote == "default" else {"auto_promote": promote == "auto"}
    try:
        job = await asyncio.to_thread(begin_turn, jobs, settings, asked=asked, created_by=session.user.name,
                                      via="page")
    except Conflict:
        active = await asyncio.to_thread(jobs.active, JobKind.LOOP)
        return RedirectResponse(f"/loop?busy=1{f'&job={active.id}' if active else ''}", status_code=303)
    except HTTPException:  # qc loop could not start: the failed turn's row says why, on the page
        latest = await asyncio.to_thread(jobs.recent, JobKind.LOOP, limit=1)
        return RedirectResponse(f"/loop?job={latest[0].id}" if latest else "/loop", status_code=303)
    return RedirectResponse(f"/loop?job={job.id}", status_code=303)
