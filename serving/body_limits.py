"""Every request body bounded before a route sees it: a size sized to what the route needs, a
deadline (QC_BODY_TIMEOUT_S), and no large body at all from a request without credentials.

Example::

    app.add_middleware(BodyLimits, settings=settings)     # serving/app.py

Why here and not in each route: FastAPI reads and parses a JSON or form body *before* a route's
dependencies run, so a 64 MB JSON sent to a route without a key was parsed (+391 MB of RSS)
before its 401, 200 x 1 MB form fields to /login before their 422, and a body trickled a byte
every 2 s kept /login, the webhook and POST /v1/stations open for as long as the client liked
(issue 25). This plain ASGI middleware (no BaseHTTPMiddleware: serving/request_context.py says
why) reads a bounded body whole, within the deadline, and hands it to the app; it answers 413
to a body over the route's limit (at once when Content-Length says so), 408 to one that does
not arrive in time, and 401 to a body over `ANONYMOUS_BYTES` that carries no credentials.

The routes that take frames (inspect, the reference upload, /v2 infer) read their bodies
themselves, bounded by QC_MAX_BODY_BYTES and the same deadline (serving/bodies.py), after their
key is checked: they are passed through here.
"""

from __future__ import annotations

import asyncio
import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.settings import ServeSettings

KIB, MIB = 1 << 10, 1 << 20
DEFAULT_BYTES = 1 * MIB  # rules, products, reviews (500 boxes are ~50 KB), keys, heartbeats
ANONYMOUS_BYTES = 64 * KIB  # a request with no key, cookie or webhook secret: no more than this
# (method, path) -> the most bytes its body needs; None: the route reads a frame itself.
ROUTE_BYTES: tuple[tuple[str, re.Pattern[str], int | None], ...] = (
    ("POST", re.compile(r"/v1/stations/[^/]+/inspect"), None),
    ("PUT", re.compile(r"/v1/stations/[^/]+/reference"), None),
    ("POST", re.compile(r"/v2/models/[^/]+(/versions/[^/]+)?/infer"), None),
    ("POST", re.compile(r"/login"), 16 * KIB),  # a name, a password, a token and where to go next
    ("POST", re.compile(r"/v1/hooks/label-studio"), 4 * MIB),  # one task's annotation, with its boxes
)
_CREDENTIALS = (b"authorization", b"x-qc-webhook-secret")


def route_limit(method: str, path: str) -> int | None:
    for route_method, pattern, limit in ROUTE_BYTES:
        if method == route_method and pattern.fullmatch(path):
            return limit
    return DEFAULT_BYTES


def _has_credentials(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name in _CREDENTIALS or (name == b"cookie" and b"qc_session=" in value):
            return True
    return False


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimits:
    def __init__(self, app: ASGIApp, *, settings: ServeSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path, limit = scope["path"], route_limit(scope["method"], scope["path"])
        if limit is None:  # a frame route: it reads (and bounds) its body after its key is checked
            await self.app(scope, receive, send)
            return
        anonymous = not _has_credentials(scope) and path != "/login"
        bound = min(limit, ANONYMOUS_BYTES) if anonymous else limit
        declared = _declared_length(scope)
        if declared is not None and declared > bound:
            await _over(send, path, declared, bound, anonymous)
            return
        chunks: list[bytes] = []
        size = 0
        last: Message = {"type": "http.request", "body": b"", "more_body": False}

        async def read() -> bool:
            nonlocal size, last
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    last = message
                    return False
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > bound:
                    return True
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return False

        try:
            over = await asyncio.wait_for(read(), self.settings.body_timeout_s)
        except TimeoutError:
            await _refuse(send, path, 408, f"the body did not arrive within {self.settings.body_timeout_s:g} s "
                                           f"({size:,} bytes came); send it at once (QC_BODY_TIMEOUT_S)",
                          close=True)
            return
        if over:
            await _over(send, path, size, bound, anonymous)
            return
        body = b"".join(chunks)
        delivered = last["type"] == "http.disconnect"  # a client gone mid-body: the route sees it leave

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return last if last["type"] == "http.disconnect" else await receive()

        await self.app(scope, replay, send)


async def _over(send: Send, path: str, size: int, bound: int, anonymous: bool) -> None:
    if anonymous:
        await _refuse(send, path, 401, f"a body over {bound:,} bytes needs credentials first: send "
                                       "Authorization: Bearer <key> (qc keys create)", close=True)
    else:
        await _refuse(send, path, 413, f"body of {size:,}+ bytes is over this route's limit of {bound:,}",
                      close=True)


async def _refuse(send: Send, path: str, status: int, reason: str, *, close: bool = False) -> None:
    """The answer in the route's shape: `error` on the v2 protocol, `detail` elsewhere."""
    body = json.dumps({"error": reason} if path.startswith("/v2/") else {"detail": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body is not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
