"""Each request's id, latency metric and access-log line, as plain ASGI middleware.

    app.add_middleware(RequestContext, metrics=app.state.metrics)

The id is the client's `X-Request-Id` (at most 64 characters) or a new one; it is returned in
the response header, kept in `request.state.request_id` (the inspection record stores it) and
put on every log line written while the request is served (serving/logs.py).

A client that disconnects before its answer (a camera rebooting mid-upload) is not a server
error: it is logged as a client abort, without a traceback, and counted in
qc_client_aborts_total and as status 499 in the latency histogram, never as a 500.

Why not `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs every request in an
extra task and streams the answer through memory streams; py-spy put it at about half of the
HTTP layer's ~1 CPU-ms a frame in bench/serving (BENCHMARKS.md, issue 16). This class only
wraps `send` to read the status and add one header.
"""

from __future__ import annotations

import logging
import secrets
import time

from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import logs
from serving.metrics import Metrics

CLIENT_CLOSED = 499  # nginx's "client closed request": counted apart from the service's errors
QUIET = ("/healthz", "/readyz", "/metrics")  # probes and scrapes: no access-log line

log = logging.getLogger("qc.app")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


class RequestContext:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _header(scope, b"x-request-id")[:64] or secrets.token_hex(8)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        token = logs.request_id.set(rid)
        started = time.monotonic()
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                MutableHeaders(scope=message).append("X-Request-Id", rid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client left mid-request: nothing to answer, nothing the service did wrong.
            status = CLIENT_CLOSED
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.client_aborts.labels(route=route).inc()
            log.info("client closed the connection before the answer",
                     extra={"method": scope["method"], "route": route})
            if not answered:
                await send({"type": "http.response.start", "status": CLIENT_CLOSED, "headers": []})
                await send({"type": "http.response.body", "body": b""})
        finally:
            elapsed = time.monotonic() - started
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.latency.labels(method=scope["method"], route=path, status=str(status)).observe(elapsed)
            if path not in QUIET:
                log.info("request", extra={"method": scope["method"], "route": path, "status": status,
                                           "ms": round(elapsed * 1000, 2), "key": state.get("key_id")})
            logs.request_id.reset(token)
