"""Decompression bombs several at once, on every route that decodes (issue 25, defect 2), as a
specification: decoding never holds more memory than the budget the settings promise,
QC_MAX_PIXELS_IN_FLIGHT x 3 bytes (docs/serving.md), because each decode reserves what its
decoder really allocates (`ImageHeader.decode_cost`), not only the pixels it returns.

Peak RSS is sampled from /proc every half millisecond while the bombs are sent. The bombs are
small (3500 x 3500, ~74 MB of decoder memory each) so the tests take seconds.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest

from inspection.detect import imaging
from tests.service_harness import Service, concurrently
from tests.test_hardening_images import v2_images

SIDE = 3500
BUDGET = 30_000_000  # 3-byte pixels: the promise is 90 MB of decoding at once
SLACK = 15 << 20  # what serving eight requests costs besides decoding (bodies, threads, answers)


def rle8_bomb(width: int = SIDE, height: int = SIDE) -> bytes:
    """A ~1 KB run-length BMP whose codes reach every row with deltas (so it is whole, not
    cut): OpenCV allocates all width x height pixels for it, twice."""
    codes, row = bytearray(), 0
    while row < height - 1:
        step = min(255, height - 1 - row)
        codes += bytes((0, 2, 0, step))
        row += step
    codes += b"\x00\x01"
    palette = bytes(256 * 4)
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(codes), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(codes), 0, 0, offset) + info + palette + bytes(codes)


def png_bomb(width: int = SIDE, height: int = SIDE) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress((b"\x00" + bytes(width)) * height, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.fixture
def peak_rss() -> Iterator[Callable[[Callable[[], object]], int]]:
    """measure(job) -> how far RSS rose above where it was when `job` began, at its peak."""

    def measure(job: Callable[[], object]) -> int:
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss())
                time.sleep(0.0005)

        base = _rss()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            job()
        finally:
            done.set()
            sampler.join()
        return peak[0] - base

    return measure


def test_the_cost_of_a_decode_is_what_its_decoder_allocates():
    bmp, png = imaging.probe(rle8_bomb()), imaging.probe(png_bomb())
    assert bmp.decode_cost() == png.decode_cost() == 2 * SIDE * SIDE  # OpenCV holds two copies
    frame = np.zeros((480, 640, 3), np.uint8)
    baseline = imaging.probe(cv2.imencode(".jpg", frame)[1].tobytes())
    assert baseline.decode_cost(4) == 160 * 120  # libjpeg-turbo: the pixels it returns
    progressive = imaging.probe(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes())
    assert progressive.decode_cost(4) == 160 * 120 + 640 * 480  # + 1.5 coefficients a pixel (4:2:0), 2 bytes each


def _warm(service: Service, station: str) -> None:
    """One small frame of each kind first, so that what the first request allocates for good
    (thread pools, caches) is not counted as decoding."""
    small = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    assert service.inspect(station, small, kind="png").status_code == 200
    assert v2_images(service, [small]).status_code == 200


@pytest.fixture
def bombed(start) -> tuple[Service, str]:
    service = start(max_pixels_in_flight=BUDGET, max_batch=1, max_wait_ms=0)
    station = service.add_station()
    _warm(service, station)
    return service, station


ROUTES = {
    "inspect": lambda service, station, bomb: service.inspect(station, bomb, kind="bmp"),
    "v2 infer": lambda service, station, bomb: v2_images(service, [bomb]),
    "reference upload": lambda service, station, bomb: service.client.put(
        f"/v1/stations/{station}/reference", content=bomb, headers={**service.admin, "Content-Type": "image/bmp"}),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_eight_bombs_at_once_stay_within_the_promised_budget(bombed, peak_rss, route):
    service, station = bombed
    bomb = rle8_bomb()
    codes: list[int] = []
    rose = peak_rss(lambda: codes.extend(r.status_code for r in concurrently(
        8, lambda i: ROUTES[route](service, station, bomb))))
    assert set(codes) <= {200, 429, 503} and 200 in codes, codes  # each admitted one is decoded; the rest wait
    assert rose < BUDGET * 3 + SLACK, f"peak RSS rose {rose / 1e6:.0f} MB over a {BUDGET * 3 / 1e6:.0f} MB budget"
    assert service.state.decode_budget.used == 0


def test_bombs_on_every_route_at_once_share_one_budget(bombed, peak_rss):
    service, station = bombed
    bomb = rle8_bomb()
    routes = list(ROUTES.values()) * 3
    codes: list[int] = []
    rose = peak_rss(lambda: codes.extend(r.status_code for r in concurrently(
        len(routes), lambda i: routes[i](service, station, bomb))))
    assert set(codes) <= {200, 429, 503}, codes
    assert rose < BUDGET * 3 + SLACK, f"peak RSS rose {rose / 1e6:.0f} MB over a {BUDGET * 3 / 1e6:.0f} MB budget"
