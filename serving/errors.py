"""Project errors to HTTP: every refusal is JSON `{"detail": reason}` with a 4xx status, and
nothing half-done is left behind (refusals happen before anything is stored)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from inspection.errors import (
    ConfigError,
    Conflict,
    DatasetError,
    ImageError,
    ModelError,
    NotFound,
    PromotionRefused,
    QCError,
    RegistryError,
)
from serving.batcher import DeadlineExceeded, QueueFull, ShuttingDown

log = logging.getLogger("qc.errors")

_STATUS = [
    (NotFound, 404),
    (Conflict, 409),
    (PromotionRefused, 409),
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


def install(app: FastAPI) -> None:
    @app.exception_handler(QCError)
    async def _qc_error(request: Request, error: QCError):
        status = status_for(error)
        if isinstance(error, ImageError) and "too large" in str(error):
            status = 413
        return JSONResponse({"detail": str(error)}, status_code=status)

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, error: QueueFull):
        request.app.state.metrics.rejected.labels(reason="queue_full").inc()
        return JSONResponse({"detail": f"busy: {error}; retry with the same Idempotency-Key"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(DeadlineExceeded)
    async def _deadline(request: Request, error: DeadlineExceeded):
        request.app.state.metrics.rejected.labels(reason="deadline").inc()
        return JSONResponse({"detail": f"{error}; retry with the same Idempotency-Key"},
                            status_code=504, headers={"Retry-After": "1"})

    @app.exception_handler(ShuttingDown)
    async def _shutting_down(request: Request, error: ShuttingDown):
        return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "5"})
