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

Each request's id, latency and access-log line, and the counting of clients that leave before
their answer, are serving/request_context.py's.

/docs is Swagger UI with its JavaScript and CSS served from this process (the
swagger-ui-bundle package), since plants are often offline; QC_DOCS=false turns it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import cv2
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from serving import errors, logs
from serving.alarms import AlarmEvaluator
from serving.body_limits import BodyLimits
from serving.metrics import Metrics
from serving.pages.render import STATIC
from serving.request_context import RequestContext
from serving.routers import (
    analytics,
    health,
    heartbeats,
    hooks,
    inspect,
    inspections,
    keys,
    loop,
    models,
    oip,
    pages,
    products,
    references,
    reviews,
    stations,
    trail,
)
from serving.schemas import REFUSALS, OIPProblem, problems
from serving.settings import ServeSettings
from serving.state import AppState

log = logging.getLogger("qc.app")


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    settings = settings or ServeSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        logs.configure(json_lines=settings.log_json)
        # One OpenCV thread per call: frames already run side by side (decode threads, the
        # commit thread, ONNX Runtime's pool), and OpenCV's own pool only added wake-ups:
        # image_stats cost 1.56 CPU-ms on a 640 frame with it and 0.95 without (AMD EPYC,
        # 2 cores; BENCHMARKS.md, issue 16).
        cv2.setNumThreads(1)
        settings.ensure_dirs()
        state: AppState = await asyncio.to_thread(AppState.start, settings, metrics=app.state.metrics)
        app.state.qc = state
        app.state.metrics.backlog.source = state.reviews.backlog  # counted at each scrape
        await state.inspector.start()  # the micro-batcher and the group committer
        watcher = asyncio.create_task(state.manager.watch(), name="model-watcher")
        alarm_loop = asyncio.create_task(_evaluate_every(state.alarms, settings.alarm_interval_s),
                                         name="alarm-evaluator")
        log.info("ready", extra={"database": state.db.url.split("@")[-1], "model_dir": str(settings.models_dir)})
        try:
            yield
        finally:
            watcher.cancel()
            alarm_loop.cancel()
            await state.inspector.close()  # every queued frame is inferred and recorded
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
        docs_url=None,  # FastAPI's own /docs and /redoc load their JavaScript from a CDN
        redoc_url=None,
    )
    if settings.docs:
        _offline_docs(app)
    app.state.settings = settings
    app.state.metrics = Metrics()
    errors.install(app)

    app.add_middleware(BodyLimits, settings=settings)  # inside RequestContext: its refusals are counted
    app.add_middleware(RequestContext, metrics=app.state.metrics)

    for module in (health, inspect, inspections, reviews, stations, references, products, heartbeats, models,
                   keys, analytics, hooks, loop, trail):
        app.include_router(module.router, responses=problems(*REFUSALS))
    app.include_router(oip.router, responses=problems(*REFUSALS, 405, model=OIPProblem))
    app.include_router(pages.router)  # the HTML pages: review, loop, dashboard
    # The review pages' script and style, from the package: nothing is fetched from elsewhere.
    app.mount("/static/review", StaticFiles(directory=STATIC), name="review-static")
    return app


async def _evaluate_every(evaluator: AlarmEvaluator, interval_s: float) -> None:
    """Rollups and alarms every `interval_s` (0: never on its own), in a thread: the queries
    must not hold the event loop. An evaluation that fails is logged and the next one runs."""
    if interval_s <= 0:
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(evaluator.evaluate)
        except Exception:
            log.exception("alarm evaluation failed")


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, its assets at /docs/assets from the swagger-ui-bundle package."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="swagger-ui-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png")
