"""The FastAPI application: wiring of settings, database, registry, model, batcher and routes.

Example::

    import uvicorn
    from serving.app import create_app
    from serving.settings import ServeSettings

    uvicorn.run(create_app(ServeSettings()), host="127.0.0.1", port=8000)

`app.state` holds `settings` and `metrics` from the start and `qc`, the typed `AppState`
(serving/state.py), once the lifespan has built it; routes reach it only through the
dependency aliases of serving/deps.py.

Start-up: migrate the database, load and warm the registry's production model, start the
micro-batcher and the watcher that follows the production pointer. Shutdown (SIGTERM):
uvicorn stops accepting connections, the batcher finishes every queued frame, and each of
those is recorded before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from inspection.store.reviews import ReviewStore
from serving import errors, logs
from serving.metrics import Metrics
from serving.pages.render import STATIC
from serving.routers import (
    health,
    hooks,
    inspect,
    inspections,
    keys,
    loop,
    loop_page,
    models,
    oip,
    pages,
    reviews,
    stations,
    trail,
)
from serving.settings import ServeSettings
from serving.state import AppState

log = logging.getLogger("qc.app")


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        logs.configure(json_lines=settings.log_json)
        settings.ensure_dirs()
        state: AppState = await asyncio.to_thread(AppState.start, settings, metrics=app.state.metrics)
        app.state.qc = state
        app.state.metrics.backlog.source = ReviewStore(state.db).backlog  # counted at each scrape
        await state.batcher.start()
        watcher = asyncio.create_task(state.manager.watch(), name="model-watcher")
        log.info("ready", extra={"database": state.db.url.split("@")[-1], "model_dir": str(settings.models_dir)})
        try:
            yield
        finally:
            watcher.cancel()
            await state.batcher.close()  # every queued frame is inferred and recorded
            await state.inspector.drain_shadow()
            await asyncio.to_thread(state.db.dispose)
            log.info("stopped")

    app = FastAPI(
        title="qc inspection service",
        version="0.1.0",
        description="Station frames in, recorded verdicts out. Every route but /healthz, /readyz and "
        "/v2/health/* needs `Authorization: Bearer <key>` (qc keys create); the review routes also "
        "take the review page's sign-in cookie with its X-CSRF-Token (qc users add).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    errors.install(app)

    @app.middleware("http")
    async def _request_context(request: Request, call_next):
        rid = request.headers.get("x-request-id", "")[:64] or secrets.token_hex(8)
        request.state.request_id = rid
        token = logs.request_id.set(rid)
        started = time.monotonic()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-Id"] = rid
            return response
        finally:
            elapsed = time.monotonic() - started
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            app.state.metrics.latency.labels(method=request.method, route=path, status=str(status)).observe(elapsed)
            if path not in ("/healthz", "/readyz", "/metrics"):
                log.info("request", extra={"method": request.method, "route": path, "status": status,
                                           "ms": round(elapsed * 1000, 2),
                                           "key": getattr(request.state, "key_id", None)})
            logs.request_id.reset(token)

    for module in (health, inspect, inspections, reviews, stations, models, keys, oip, hooks, loop, trail, pages, loop_page):
        app.include_router(module.router)
    # The review pages' script and style, from the package: nothing is fetched from elsewhere.
    app.mount("/static/review", StaticFiles(directory=STATIC), name="review-static")
    return app
