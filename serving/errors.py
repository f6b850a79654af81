"""Project errors to HTTP: every refusal is JSON `{"detail": reason}` with a 4xx status, and
nothing half-done is left behind (refusals happen before anything is stored)."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError

from inspection.errors import (
    ConfigError,
    Conflict,
    DatasetError,
    ImageError,
    ImageTooLarge,
    ModelError,
    NotFound,
    PromotionRefused,
    QCError,
    RegistryError,
)
from inspection.store.images import ImageStoreUnavailable
from serving.batcher import DeadlineExceeded, QueueFull, ShuttingDown
from serving.deps import metrics_of

log = logging.getLogger("qc.errors")

_STATUS = [
    (NotFound, 404),
    (Conflict, 409),
    (PromotionRefused, 409),
    (ImageTooLarge, 413),
    (ImageError, 400),
    (ConfigError, 422),
    (DatasetError, 422),
    (ModelError, 422),
    (RegistryError, 422),
]


def status_for(error: QCError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 400


def _finite(value: Any) -> Any:
    """JSON-safe: infinities and NaN (1e999 in a request parses to inf) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, error: RequestValidationError):
        # FastAPI's own handler echoes the input back and fails (500) on an infinite number.
        return JSONResponse({"detail": _finite(jsonable_encoder(error.errors()))}, status_code=422)

    @app.exception_handler(QCError)
    async def _qc_error(request: Request, error: QCError):
        return JSONResponse({"detail": str(error)}, status_code=status_for(error))

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, error: QueueFull):
        metrics_of(request).rejected.labels(reason="queue_full").inc()
        return JSONResponse({"detail": f"busy: {error}; retry with the same Idempotency-Key"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(DeadlineExceeded)
    async def _deadline(request: Request, error: DeadlineExceeded):
        metrics_of(request).rejected.labels(reason="deadline").inc()
        return JSONResponse({"detail": f"{error}; retry with the same Idempotency-Key"},
                            status_code=504, headers={"Retry-After": "1"})

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, error: DataError):
        # PostgreSQL refuses what SQLite takes: NUL characters, strings over a column's length.
        # That is the client's value, not the server's fault, and nothing was stored.
        reason = str(getattr(error, "orig", error)).splitlines()[0][:200]
        return JSONResponse({"detail": f"a value in the request cannot be stored: {reason}"}, status_code=422)

    @app.exception_handler(OperationalError)
    async def _database_unavailable(request: Request, error: OperationalError):
        # Unreachable, restarting or locked past busy_timeout: retrying later can succeed.
        log.error("database unavailable: %s", str(getattr(error, "orig", error)).splitlines()[0][:200])
        metrics_of(request).rejected.labels(reason="database").inc()
        return JSONResponse({"detail": "database unavailable; retry with the same Idempotency-Key"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(ImageStoreUnavailable)
    async def _image_store_unavailable(request: Request, error: ImageStoreUnavailable):
        # The frame's image could not be made durable, so no record was written either.
        log.error("%s", error)
        metrics_of(request).rejected.labels(reason="image_store").inc()
        return JSONResponse({"detail": f"{error}; retry with the same Idempotency-Key"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(ShuttingDown)
    async def _shutting_down(request: Request, error: ShuttingDown):
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "5"})
