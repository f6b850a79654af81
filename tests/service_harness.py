"""The inspection service under test: a `Service` around FastAPI's TestClient, frames of
every kind, and helpers the service tests share (fixtures `service` and `start` are in
conftest.py).

The model is an untrained YOLO26n exported at 160 px (seconds, offline, cached in .cache/).
It finds nothing with real confidence, so verdicts are steered by station rules: the untrained
head scores every anchor around 1e-5, so `fail_conf` 1e-6 fails every frame, a review band
from 1e-6 to 1.0 sends every frame to review, and the default rules pass every frame.
(tests/test_rules.py specifies the rules themselves on hand-made detections.)"""


from __future__ import annotations

import contextlib
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from fastapi.testclient import TestClient

from inspection.models.registry import Registry
from inspection.store.records import InspectionFilter, InspectionRecord
from serving.app import create_app
from serving.settings import ServeSettings

POSTGRES_URL = os.environ.get("QC_TEST_POSTGRES_URL", "")

FAIL_ALL = {"default": {"fail_conf": 1e-6, "review_conf": 1e-6}}
REVIEW_ALL = {"default": {"fail_conf": 1.0, "review_conf": 1e-6}}
HOLDOUT = "holdout@v1"
EVALUATED = {"evaluations": {HOLDOUT: {"map50_95": 0.5, "per_class": {}}}}  # passes the gate
TIMINGS = {"decode_ms", "queue_ms", "inference_ms", "postprocess_ms", "total_ms", "batch_size"}


# -- frames --------------------------------------------------------------------------------


def frame(kind: str = "jpeg", *, seed: int = 0, size: tuple[int, int] = (320, 240)) -> bytes:
    """A noise image (distinct per seed, so content-addressed files are distinct)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    ok, encoded = cv2.imencode({"jpeg": ".jpg", "png": ".png", "bmp": ".bmp"}[kind], pixels)
    assert ok
    return encoded.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG of 3 KB whose IHDR says width x height 8-bit grey (900 MP for the default): the
    first 100 rows of zero pixels, then IEND. A decoder would allocate for all the pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress((b"\x00" + bytes(width)) * 100, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp"}


# -- the service under test ----------------------------------------------------------------


@dataclass
class Service:
    client: TestClient
    settings: ServeSettings

    @property
    def state(self):
        return self.client.app.state.qc  # the typed AppState (serving/state.py)

    def key(self, role: str = "admin", stations: tuple[str, ...] = ()) -> dict[str, str]:
        token = self.state.keys.create(role=role, stations=list(stations), name=f"test {role}")
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        if not hasattr(self, "_admin"):
            self._admin = self.key("admin")
        return self._admin

    def add_station(self, rules: dict | None = None, *, station: str | None = None) -> str:
        station = station or f"st-{secrets.token_hex(4)}"
        response = self.client.post("/v1/stations", json={"id": station, "rules": rules or {}}, headers=self.admin)
        assert response.status_code == 201, response.text
        return station

    def inspect(self, station: str, body: bytes | None = None, *, kind: str = "jpeg",
                content_type: str | None = None, headers: dict | None = None, key: dict | None = None):
        body = frame(kind) if body is None else body
        sent = {**(key or self.admin), "Content-Type": content_type or CONTENT_TYPES[kind], **(headers or {})}
        return self.client.post(f"/v1/stations/{station}/inspect", content=body, headers=sent)

    def records(self, station: str) -> list[InspectionRecord]:
        found, _ = self.state.store.list_inspections(InspectionFilter(station=station), limit=500)
        return found

    def image_files(self) -> set[Path]:
        return {p for p in self.settings.images_dir.rglob("*") if p.is_file()}

    def register(self, model: Path, card: dict | None = None) -> str:
        return Registry(self.settings.models_dir).add("default", model, card=card or EVALUATED).version


@contextlib.contextmanager
def running(home: Path, model: Path | None, **overrides) -> Iterator[Service]:
    values = {"providers": "cpu", "log_json": False, "model_poll_s": 3600.0, "database_url": "", **overrides}
    settings = ServeSettings(home=home, **values)
    settings.ensure_dirs()
    if model is not None:
        registry = Registry(settings.models_dir)
        registry.add("default", model, card=EVALUATED)
        registry.set_production("default", "v1")
        registry.set_holdout("default", HOLDOUT)
    with TestClient(create_app(settings)) as client:
        yield Service(client, settings)


def utcnow() -> datetime:
    """Naive UTC, as the store keeps times."""
    return datetime.now(UTC).replace(tzinfo=None)


def concurrently(n: int, job: Callable[[int], object]) -> list:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(job, range(n)))


@contextlib.contextmanager
def served_in_thread(settings: ServeSettings) -> Iterator[str]:
    """The real service (uvicorn, HTTP on 127.0.0.1:settings.port) in a thread, for a browser:
    yields its URL once /readyz answers, and stops it afterwards."""
    import httpx
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        server.should_exit = True
        raise AssertionError("the service did not become ready")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
