"""The pages people use: sign-in, sign-out and the review page (queue and frame view in one).

Example::

    qc users add kim --role reviewer          # asks for the password
    open http://127.0.0.1:8000/review          # -> /login, then back to the queue

Only a session cookie opens these pages (API keys, station keys above all, never do). The page
is a shell: its script (static/review.js) reads and writes through the JSON API of
serving/routers/reviews.py with the session's CSRF token. Every page is sent with a Content
Security Policy that allows nothing but this origin, so a page cannot fetch a font, a script
or an image from elsewhere even by mistake.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from inspection.detect import imaging
from inspection.errors import NotFound
from inspection.store.images import ImageStorage
from inspection.store.users import LoginRefused
from serving.deps import AnomalyMapsDep, ImagesDep, ManagerDep, ReferencesDep, SettingsDep, StateDep, StoreDep, UsersDep
from serving.display import DISPLAY_MAX_SIDE, display_reduction
from serving.pages.language import catalogue, translator
from serving.pages.render import language, render, script_json
from serving.sessions import (
    LOGIN_CSRF_COOKIE,
    clear_session_cookie,
    csrf_matches,
    idle_of,
    is_secure,
    lifetime_of,
    session_of,
    set_session_cookie,
)

router = APIRouter(tags=["pages"], include_in_schema=False)

def _safe_next(target: str | None) -> str:
    """Only a path of this site's pages: never an open redirect to another site."""
    if target and target.startswith(("/review", "/dashboard", "/loop")) and "//" not in target and "\\" not in target:
        return target
    return "/review"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, users: UsersDep, settings: SettingsDep, next: str | None = None):
    if session_of(request, users, settings) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, settings, next=next)


def _login_form(request: Request, settings, *, next: str | None, error: str = "", status: int = 200,
                name: str = "", headers: dict | None = None) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", status=status, csrf=token, next=_safe_next(next), error=error,
                       name=name)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=3600, path="/login", httponly=True,
                        samesite="strict", secure=is_secure(request, settings))
    response.headers.update(headers or {})
    return response


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, users: UsersDep, settings: SettingsDep,
          name: Annotated[str, Form(max_length=64)], password: Annotated[str, Form(max_length=1024)],
          csrf: Annotated[str, Form(max_length=128)], next: Annotated[str | None, Form(max_length=512)] = None):
    t = translator(language(request))
    if not csrf_matches(csrf, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_form(request, settings, next=next, status=403, name=name,
                           error=t("The sign-in form expired; please try again."))
    try:
        user = users.authenticate(name, password)
    except LoginRefused as refused:
        if refused.retry_after:
            return _login_form(request, settings, next=next, status=429, name=name,
                               error=t("Too many failed sign-ins; try again in {seconds} s.").format(
                                   seconds=refused.retry_after),
                               headers={"Retry-After": str(refused.retry_after)})
        disabled = "disabled" in str(refused)
        return _login_form(request, settings, next=next, status=401, name=name,
                           error=t("This account is disabled.") if disabled else t("Wrong user name or password."))
    token, _ = users.open_session(user, idle=idle_of(settings), lifetime=lifetime_of(settings))
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_session_cookie(response, token, request=request, settings=settings)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, users: UsersDep, settings: SettingsDep,
           csrf: Annotated[str, Form(max_length=128)]):
    session = session_of(request, users, settings)
    if session is not None:
        if not csrf_matches(csrf, session.csrf):
            raise HTTPException(403, "wrong CSRF token; reload the page and sign out again")
        users.close_session(request.cookies.get("qc_session", ""))
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, request=request, settings=settings)
    return response


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, users: UsersDep, settings: SettingsDep, store: StoreDep, manager: ManagerDep):
    session = session_of(request, users, settings)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    lang = language(request)
    config = {
        "csrf": session.csrf, "lang": lang, "timezone": settings.timezone,
        "user": {"name": session.user.name, "display_name": session.user.display_name,
                 "role": session.user.role.value},
        "stations": [s.id for s in store.stations()],
        "classes": sorted(manager.review_classes(settings.part_classes()) or []),
        "messages": catalogue(lang),
    }
    return render(request, "review.html", user=session.user, csrf=session.csrf, timezone=settings.timezone,
                   config=script_json(config))


@router.get("/review/image/{inspection_id}")
def review_image(inspection_id: str, request: Request, users: UsersDep, settings: SettingsDep,
                 store: StoreDep, images: ImagesDep) -> Response:
    """The stored frame, for the signed-in page (the API's image route takes keys)."""
    if session_of(request, users, settings) is None:
        raise HTTPException(401, "sign in at /login")
    record = store.inspection(inspection_id)
    if record.image_sha256 is None:
        raise NotFound(f"inspection {inspection_id} has no stored image")
    return _stored_image(images, record.image_sha256, record.image_format)


def _stored_image(images: ImageStorage, sha: str, image_format: str | None) -> Response:
    data = images.read(sha, image_format)  # any store: folder or S3
    media = imaging.CONTENT_TYPES.get(image_format or "", "image/jpeg")
    # Content-addressed: the bytes of a hash never change, so the browser may keep them.
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=86400",
                                                     "X-Content-Type-Options": "nosniff"})


@router.get("/review/anomaly/{inspection_id}")
def review_anomaly(inspection_id: str, request: Request, users: UsersDep, settings: SettingsDep,
                   store: StoreDep, images: ImagesDep, maps: AnomalyMapsDep, state: StateDep) -> Response:
    """The frame's anomaly map (a frame judged by a good-only model), for the signed-in page to
    lay over the frame (static/anomaly.js); 404 for any other frame."""
    if session_of(request, users, settings) is None:
        raise HTTPException(401, "sign in at /login")
    record = store.inspection(inspection_id)
    png = maps.for_record(record, images, budget=state.decode_budget, max_side=DISPLAY_MAX_SIDE,
                          max_pixels=settings.max_pixels, reduction=display_reduction)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600",
                                                          "X-Content-Type-Options": "nosniff"})


@router.get("/review/reference/{inspection_id}")
def review_reference(inspection_id: str, request: Request, users: UsersDep, settings: SettingsDep,
                     store: StoreDep, references: ReferencesDep, images: ImagesDep) -> Response:
    """The station's reference image the frame was judged against, for the signed-in page."""
    if session_of(request, users, settings) is None:
        raise HTTPException(401, "sign in at /login")
    record = store.inspection(inspection_id)
    if record.reference_version is None:
        raise NotFound(f"inspection {inspection_id} was not judged against a reference image")
    reference = references.get(record.station_id, record.reference_version)
    return _stored_image(images, reference.image_sha256, reference.image_format)
