"""People on the review pages: the sign-in cookie, CSRF tokens, and who is acting.

Example::

    token, session = users.open_session(user, idle=idle_of(settings), lifetime=lifetime_of(settings))
    set_session_cookie(response, token, request=request, settings=settings)
    session = session_of(request, users, settings)     # None when signed out or expired
    csrf_matches(request.headers.get(CSRF_HEADER), session.csrf)

The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it)
and Secure when `QC_SECURE_COOKIES` is set or the request came over https. SameSite alone
would stop most cross-site forgeries; the CSRF token (in a <meta> for fetch, a hidden field in
forms) also covers a sibling subdomain and older browsers. Sign-in has no session yet, so its
form uses a double-submit token: a random cookie that the form must repeat.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request, Response

from inspection.roles import Role
from inspection.store.users import Session, UserStore
from serving.settings import ServeSettings

SESSION_COOKIE = "qc_session"
LOGIN_CSRF_COOKIE = "qc_login_csrf"
LANGUAGE_COOKIE = "qc_lang"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Actor:
    """Who is acting on a staff route: a signed-in person, or a staff API key."""

    name: str  # the user's name, or "key:<id>"; what the audit trail records
    display_name: str
    role: Role
    via: str  # "session" or "key"
    csrf: str | None = None  # the session's token (None for a key)


def idle_of(settings: ServeSettings) -> timedelta:
    return timedelta(minutes=settings.session_idle_minutes)


def lifetime_of(settings: ServeSettings) -> timedelta:
    return timedelta(hours=settings.session_hours)


def is_secure(request: Request, settings: ServeSettings) -> bool:
    return settings.secure_cookies or request.url.scheme == "https"


def session_of(request: Request, users: UserStore, settings: ServeSettings) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 128:
        return None
    return users.session(token, idle=idle_of(settings))


def set_session_cookie(response: Response, token: str, *, request: Request, settings: ServeSettings) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=int(lifetime_of(settings).total_seconds()), path="/",
                        httponly=True, samesite="strict", secure=is_secure(request, settings))


def clear_session_cookie(response: Response, *, request: Request, settings: ServeSettings) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=is_secure(request, settings))


def csrf_matches(sent: str | None, expected: str | None) -> bool:
    return bool(sent and expected) and hmac.compare_digest(sent.encode(), expected.encode())


def actor_of(session: Session) -> Actor:
    user = session.user
    return Actor(name=user.name, display_name=user.display_name, role=user.role, via="session", csrf=session.csrf)
