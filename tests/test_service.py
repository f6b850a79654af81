"""The inspection service over HTTP, as a specification: frames in, recorded verdicts out;
bad input refused with a reason and nothing stored; keys and roles enforced; models swapped
while the line runs.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

import cv2
import numpy as np
import pytest
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


@pytest.fixture(scope="module")
def service(untrained_model, tmp_path_factory) -> Iterator[Service]:
    """One service for the tests that only need defaults (each uses stations of its own)."""
    with running(tmp_path_factory.mktemp("service"), untrained_model, pass_sample_rate=0.0) as started:
        yield started


@pytest.fixture
def start(untrained_model, tmp_path) -> Iterator[Callable[..., Service]]:
    """start(**settings) -> a service of its own, stopped after the test."""
    with contextlib.ExitStack() as stack:
        count = iter(range(100))

        def starter(model: Path | None = untrained_model, **overrides) -> Service:
            return stack.enter_context(running(tmp_path / f"home{next(count)}", model, **overrides))

        yield starter


def utcnow() -> datetime:
    """Naive UTC, as the store keeps times."""
    return datetime.now(UTC).replace(tzinfo=None)


def concurrently(n: int, job: Callable[[int], object]) -> list:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(job, range(n)))


# -- inspecting ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jpeg", "png", "bmp"])
def test_a_frame_posted_as_its_image_type_gets_a_recorded_verdict(service, kind):
    station = service.add_station()
    response = service.inspect(station, frame(kind, seed=3), kind=kind)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "PASS"
    assert (body["station"], body["width"], body["height"]) == (station, 320, 240)
    assert [r.id for r in service.records(station)] == [body["id"]]


def test_a_frame_posted_as_multipart_form_data_gets_a_recorded_verdict(service):
    station = service.add_station()
    response = service.client.post(f"/v1/stations/{station}/inspect", headers=service.admin,
                                   files={"file": ("frame.png", frame("png"), "image/png")})
    assert response.status_code == 200, response.text
    assert response.json()["width"] == 320
    assert len(service.records(station)) == 1


def test_the_response_carries_id_verdict_detections_rule_versions_and_timings(service):
    station = service.add_station(FAIL_ALL)
    response = service.inspect(station, headers={"X-Part-Id": "SN-42"})
    body = response.json()
    assert response.status_code == 200
    assert len(body["id"]) == 32
    assert body["verdict"] == "FAIL"
    assert body["rule"] and "fail_conf" in body["rule"]
    assert body["detections"], "a FAIL names the boxes that made it"
    first = body["detections"][0]
    assert {"class", "class_id", "confidence", "box", "area"} <= set(first) and len(first["box"]) == 4
    assert body["model"] == {"name": "default", "version": "v1"}
    assert body["rules_version"] == 1
    assert body["part_id"] == "SN-42"
    assert TIMINGS <= set(body["timings"])
    assert all(value >= 0 for value in body["timings"].values())
    assert body["timings"]["total_ms"] >= body["timings"]["inference_ms"]
    assert body["created_at"].endswith("Z")
    assert response.headers["x-request-id"]


def test_review_band_frames_get_review(service):
    station = service.add_station(REVIEW_ALL)
    response = service.inspect(station)
    assert response.json()["verdict"] == "REVIEW"
    assert "review band" in response.json()["rule"]


def test_a_frame_can_be_read_back_by_id_as_it_was_answered(service):
    station = service.add_station(FAIL_ALL)
    answered = service.inspect(station, headers={"X-Request-Id": "req-123"}).json()
    read = service.client.get(f"/v1/inspections/{answered['id']}", headers=service.admin)
    assert read.status_code == 200
    again = read.json()
    for field in ("id", "station", "verdict", "rule", "detections", "model", "rules_version", "width",
                  "height", "image_stored", "created_at", "part_id"):
        assert again[field] == answered[field], field
    assert set(again["timings"]) <= set(answered["timings"])
    assert service.state.store.inspection(answered["id"]).request_id == "req-123"


def test_an_unknown_inspection_is_404(service):
    response = service.client.get(f"/v1/inspections/{'0' * 32}", headers=service.admin)
    assert response.status_code == 404 and "does not exist" in response.json()["detail"]


def test_an_unknown_station_is_404_with_the_reason_and_nothing_is_stored(service):
    before = service.state.store.count()
    response = service.inspect("no-such-station")
    assert response.status_code == 404
    assert "no-such-station does not exist" in response.json()["detail"]
    assert service.state.store.count() == before


def test_a_disabled_station_is_409_and_nothing_is_stored(service):
    station = service.add_station({"enabled": False})
    response = service.inspect(station)
    assert response.status_code == 409 and "disabled" in response.json()["detail"]
    assert service.records(station) == []


# -- idempotency ---------------------------------------------------------------------------


def test_a_retry_with_the_same_idempotency_key_returns_the_original_record(service):
    station = service.add_station(FAIL_ALL)
    first = service.inspect(station, frame(seed=1), headers={"Idempotency-Key": "frame-0001"})
    retry = service.inspect(station, frame(seed=2), headers={"Idempotency-Key": "frame-0001"})
    assert first.status_code == retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["verdict"] == first.json()["verdict"]
    assert retry.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(service.records(station)) == 1


def test_a_retry_of_an_acknowledged_frame_gets_its_record_even_after_the_station_is_disabled(service):
    station = service.add_station(FAIL_ALL)
    first = service.inspect(station, frame(seed=3), headers={"Idempotency-Key": "before-off"})
    response = service.client.put(f"/v1/stations/{station}/rules", json={**FAIL_ALL, "enabled": False},
                                  headers=service.admin)
    assert response.status_code == 200
    retry = service.inspect(station, frame(seed=3), headers={"Idempotency-Key": "before-off"})
    assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
    assert service.inspect(station, frame(seed=4)).status_code == 409


def test_concurrent_retries_with_one_idempotency_key_leave_one_record(service):
    station = service.add_station()
    responses = concurrently(4, lambda i: service.inspect(station, frame(seed=i), headers={"Idempotency-Key": "same"}))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(service.records(station)) == 1


def test_frames_with_a_blank_idempotency_key_are_each_recorded(service):
    station = service.add_station(FAIL_ALL)
    answers = [service.inspect(station, frame(seed=i), headers={"Idempotency-Key": ""}) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.json()["id"] for a in answers}) == 3
    assert not any("Idempotent-Replayed" in a.headers for a in answers)
    assert len(service.records(station)) == 3


def test_distinct_idempotency_keys_make_distinct_records(service):
    station = service.add_station()
    for i in range(3):
        assert service.inspect(station, headers={"Idempotency-Key": f"frame-{i}"}).status_code == 200
    assert len(service.records(station)) == 3


# -- stored images -------------------------------------------------------------------------


@pytest.mark.parametrize("rules", [FAIL_ALL, REVIEW_ALL], ids=["FAIL", "REVIEW"])
def test_fail_and_review_images_are_always_stored(service, rules):
    station = service.add_station(rules)  # this service stores no PASS image (rate 0)
    data = frame(seed=11 if rules is FAIL_ALL else 12)
    body = service.inspect(station, data).json()
    assert body["image_stored"] is True
    stored = service.client.get(f"/v1/inspections/{body['id']}/image", headers=service.admin)
    assert stored.status_code == 200
    assert stored.content == data
    assert stored.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(("rate", "stored"), [(0.0, False), (1.0, True)])
def test_pass_images_are_stored_at_the_sample_rate(start, rate, stored):
    service = start(pass_sample_rate=rate)
    station = service.add_station()
    bodies = [service.inspect(station, frame(seed=i)).json() for i in range(3)]
    assert {b["verdict"] for b in bodies} == {"PASS"}
    assert {b["image_stored"] for b in bodies} == {stored}
    assert len(service.image_files()) == (3 if stored else 0)
    image = service.client.get(f"/v1/inspections/{bodies[0]['id']}/image", headers=service.admin)
    assert image.status_code == (200 if stored else 404)
    if not stored:
        assert "sampled" in image.json()["detail"]


def test_the_image_with_boxes_is_a_jpeg_of_the_frame_with_the_detections_drawn(service):
    station = service.add_station(FAIL_ALL)
    data = frame("png", seed=21)
    body = service.inspect(station, data, kind="png").json()
    plain = service.client.get(f"/v1/inspections/{body['id']}/image", headers=service.admin)
    assert plain.headers["content-type"] == "image/png" and plain.content == data
    boxed = service.client.get(f"/v1/inspections/{body['id']}/image?boxes=true", headers=service.admin)
    assert boxed.status_code == 200 and boxed.headers["content-type"] == "image/jpeg"
    drawn = cv2.imdecode(np.frombuffer(boxed.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == original.shape
    assert np.abs(drawn.astype(int) - original.astype(int)).mean() > 1  # boxes were drawn


# -- listing -------------------------------------------------------------------------------


def test_inspections_are_listed_newest_first_with_filters(service):
    failing = service.add_station(FAIL_ALL)
    passing = service.add_station()
    before = utcnow() - timedelta(seconds=1)
    fails = [service.inspect(failing, frame(seed=30 + i), headers={"X-Part-Id": f"P{i}"}).json() for i in range(3)]
    passes = [service.inspect(passing, frame(seed=40 + i), headers={"X-Part-Id": "P0"}).json() for i in range(2)]
    after = utcnow() + timedelta(seconds=1)

    def listed(**params) -> list[str]:
        response = service.client.get("/v1/inspections", params={"limit": 500, **params}, headers=service.admin)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    ours = {b["id"] for b in fails + passes}
    assert listed(station=failing) == [b["id"] for b in reversed(fails)]
    assert set(listed(verdict="FAIL")) >= {b["id"] for b in fails}
    assert not set(listed(verdict="FAIL")) & {b["id"] for b in passes}
    a_class = fails[0]["detections"][0]["class"]
    assert set(listed(station=failing, **{"class": a_class})) >= {fails[0]["id"]}
    assert listed(station=passing, **{"class": a_class}) == []
    assert set(listed(part_id="P0")) & ours == {fails[0]["id"], *(b["id"] for b in passes)}
    window = {"since": before.isoformat() + "Z", "until": after.isoformat() + "Z"}
    assert set(listed(**window)) >= ours
    assert set(listed(since=after.isoformat() + "Z")) & ours == set()
    assert set(listed(until=before.isoformat() + "Z")) & ours == set()
    with_offset = (after + timedelta(hours=2)).isoformat() + "+02:00"  # the same instant, elsewhere
    assert set(listed(until=with_offset)) >= ours


def test_pages_follow_next_cursor_until_it_is_null(service):
    station = service.add_station()
    made = [service.inspect(station, frame(seed=50 + i)).json()["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"station": station, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = service.client.get("/v1/inspections", params=params, headers=service.admin).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


@pytest.mark.parametrize("params", [
    {"since": "0001-01-01T00:00:00+01:00"},
    {"until": "9999-12-31T23:59:59-01:00"},
    {"since": "not a time"},
    {"limit": 0},
    {"limit": 501},
    {"verdict": "MAYBE"},
])
def test_odd_listing_parameters_never_give_a_server_error(service, params):
    response = service.client.get("/v1/inspections", params=params, headers=service.admin)
    assert response.status_code in (200, 422), response.text


# -- bad input: refused with a reason, never 5xx, nothing stored ---------------------------


def truncated_jpeg() -> bytes:
    data = frame(seed=60)
    return data[: len(data) // 2]


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(frame(seed=61))
    sof = data.find(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(frame("bmp", seed=62))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


BAD_FRAMES = {
    "truncated JPEG": (truncated_jpeg, "image/jpeg", 400, "truncated JPEG"),
    "empty body": (lambda: b"", "image/jpeg", 400, "empty"),
    "wrong magic bytes": (lambda: b"GIF89a" + bytes(200), "image/jpeg", 400, "not a JPEG, PNG or BMP"),
    "text posing as PNG": (lambda: b"hello, world" * 20, "image/png", 400, "not a JPEG, PNG or BMP"),
    "PNG cut after its header": (lambda: frame("png", seed=63)[:40], "image/png", 400, "truncated PNG"),
    "PNG without IHDR": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(30), "image/png", 400, "no IHDR"),
    "PNG of 0 x 0": (lambda: decompression_bomb(0, 0), "image/png", 400, "0x0"),
    "BMP cut short": (lambda: frame("bmp", seed=64)[:20], "image/bmp", 400, "truncated BMP"),
    "BMP of garbage pixels": (lambda: frame("bmp", seed=65)[:2000], "image/bmp", 400, "corrupt bmp"),
    "JPEG claiming 60000 x 60000": (lambda: jpeg_claiming(60000, 60000), "image/jpeg", 413, "pixels"),
    "BMP claiming 2^31 pixels wide": (lambda: bmp_claiming(-(2**31), 2), "image/bmp", 413, "pixels"),
    "text/plain": (lambda: frame(seed=66), "text/plain", 415, "content type"),
    "no content type": (lambda: frame(seed=67), "", 415, "content type"),
    "image/gif": (lambda: frame(seed=68), "image/gif", 415, "image/gif"),
    "multipart without boundary": (lambda: b"--x\r\n\r\n", "multipart/form-data", 400, "multipart"),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES), ids=list(BAD_FRAMES))
def test_bad_frames_are_refused_with_a_reason_and_nothing_is_stored(service, case):
    make, content_type, status, reason = BAD_FRAMES[case]
    station = service.add_station(FAIL_ALL)  # would store the image of any frame it judged
    images = service.image_files()
    headers = {**service.admin, "Idempotency-Key": f"bad-{case}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = service.client.post(f"/v1/stations/{station}/inspect", content=make(), headers=headers)
    assert response.status_code == status, response.text
    assert reason.lower() in response.json()["detail"].lower()
    assert service.records(station) == []
    assert service.image_files() == images


@pytest.mark.parametrize("files", [
    {"other": ("frame.jpg", b"\xff\xd8", "image/jpeg")},
    {"file": (None, "just text")},
], ids=["no file part", "file part is a text field"])
def test_multipart_without_an_image_file_part_is_400(service, files):
    station = service.add_station()
    response = service.client.post(f"/v1/stations/{station}/inspect", headers=service.admin, files=files)
    assert response.status_code == 400 and "'file'" in response.json()["detail"]
    assert service.records(station) == []


def test_a_decompression_bomb_is_refused_413_before_any_decoding(service, monkeypatch):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("the frame was decoded")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    station = service.add_station(FAIL_ALL)
    bomb = decompression_bomb()
    assert len(bomb) < 10_000
    response = service.inspect(station, bomb, kind="png")
    assert response.status_code == 413
    assert "30000x30000" in response.json()["detail"]
    assert service.records(station) == []


def test_a_body_over_max_body_bytes_is_413_whether_declared_or_streamed(service, monkeypatch):
    monkeypatch.setattr(service.settings, "max_body_bytes", 4096)
    station = service.add_station()
    big = frame(seed=70, size=(640, 480))
    assert len(big) > 4096
    declared = service.inspect(station, big)
    assert declared.status_code == 413 and "over the limit" in declared.json()["detail"]

    def chunks():
        for start in range(0, len(big), 1000):
            yield big[start: start + 1000]

    streamed = service.client.post(f"/v1/stations/{station}/inspect", content=chunks(),
                                   headers={**service.admin, "Content-Type": "image/jpeg"})
    assert streamed.status_code == 413
    assert service.records(station) == []


def test_a_frame_over_max_pixels_is_413(service, monkeypatch):
    monkeypatch.setattr(service.settings, "max_pixels", 100 * 100)
    station = service.add_station()
    response = service.inspect(station, frame(seed=71))
    assert response.status_code == 413 and "320x240" in response.json()["detail"]
    assert service.records(station) == []


@pytest.mark.parametrize("header", ["X-Part-Id", "Idempotency-Key"])
def test_an_overlong_part_id_or_idempotency_key_is_422_and_nothing_is_stored(service, header):
    station = service.add_station()
    response = service.inspect(station, headers={header: "x" * 129})
    assert response.status_code == 422
    assert service.records(station) == []


# -- keys and roles ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/v1/stations/any/inspect"), ("get", "/v1/inspections"), ("get", "/v1/stations"),
    ("get", "/metrics"), ("get", "/v1/models"), ("get", "/v1/keys"),
])
def test_every_route_but_health_needs_a_key(service, method, path):
    response = getattr(service.client, method)(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "qc keys create" in response.json()["detail"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer ", "Bearer qc_nope_nope", "qc_abc_def"])
def test_a_malformed_or_unknown_key_is_401(service, header):
    response = service.client.get("/v1/stations", headers={"Authorization": header})
    assert response.status_code == 401


def test_each_role_is_refused_what_it_may_not_do_with_403_naming_the_role_needed(service):
    station = service.add_station()
    reviewer, engineer = service.key("reviewer"), service.key("engineer")
    station_key = service.key("station", (station,))
    refused = [
        service.inspect(station, key=reviewer),
        service.client.post("/v1/stations", json={"id": "by-station-key"}, headers=station_key),
        service.client.put(f"/v1/stations/{station}/rules", json={}, headers=reviewer),
        service.client.post("/v1/keys", json={"role": "admin"}, headers=engineer),
        service.client.get("/v1/keys", headers=engineer),
        service.client.post("/v1/models/default/promote", json={"version": "v1"}, headers=reviewer),
        service.client.get("/v1/models", headers=station_key),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert "a reviewer key cannot do this" in refused[0].json()["detail"]
    assert "admin" in refused[3].json()["detail"]
    assert service.records(station) == []
    allowed = [
        service.inspect(station, key=engineer),
        service.inspect(station, key=station_key),
        service.client.get("/v1/inspections", params={"station": station}, headers=reviewer),
        service.client.put(f"/v1/stations/{station}/rules", json={}, headers=engineer),
    ]
    assert [r.status_code for r in allowed] == [200] * len(allowed)


def test_a_station_key_is_limited_to_its_own_stations(service):
    mine, theirs = service.add_station(FAIL_ALL), service.add_station(FAIL_ALL)
    key = service.key("station", (mine,))
    assert service.inspect(mine, key=key).status_code == 200
    other = service.inspect(theirs, key=key)
    assert other.status_code == 403 and theirs in other.json()["detail"]
    their_record = service.inspect(theirs).json()["id"]
    assert service.client.get(f"/v1/inspections/{their_record}", headers=key).status_code == 404
    assert service.client.get(f"/v1/inspections/{their_record}/image", headers=key).status_code == 404
    assert service.client.get("/v1/inspections", params={"station": theirs}, headers=key).status_code == 403
    assert service.client.get("/v1/inspections", headers=key).status_code == 403
    assert service.client.get(f"/v1/stations/{theirs}", headers=key).status_code == 403
    assert service.client.get(f"/v1/stations/{theirs}/rules", headers=key).status_code == 403
    assert [s["id"] for s in service.client.get("/v1/stations", headers=key).json()] == [mine]
    listed = service.client.get("/v1/inspections", params={"station": mine}, headers=key).json()["items"]
    assert len(listed) == 1
    assert len(service.records(theirs)) == 1  # only the admin's


def test_a_revoked_key_is_refused_at_once(service):
    created = service.client.post("/v1/keys", json={"role": "engineer", "name": "temp"}, headers=service.admin)
    assert created.status_code == 201
    token, key_id = created.json()["key"], created.json()["id"]
    headers = {"Authorization": f"Bearer {token}"}
    assert service.client.get("/v1/stations", headers=headers).status_code == 200  # now cached
    assert service.client.delete(f"/v1/keys/{key_id}", headers=service.admin).status_code == 204
    assert service.client.get("/v1/stations", headers=headers).status_code == 401
    listed = {k["id"]: k for k in service.client.get("/v1/keys", headers=service.admin).json()}
    assert listed[key_id]["revoked"] is True
    assert token not in str(listed)


def test_keys_made_through_the_api_are_shown_once_and_validated(service):
    station = service.add_station()
    made = service.client.post("/v1/keys", json={"role": "station", "stations": [station]}, headers=service.admin)
    assert made.status_code == 201 and made.json()["key"].startswith("qc_")
    misspelt = service.client.post("/v1/keys", json={"role": "station", "stations": ["nosuch"]}, headers=service.admin)
    assert misspelt.status_code == 404 and "qc stations add nosuch" in misspelt.json()["detail"]
    no_station = service.client.post("/v1/keys", json={"role": "station"}, headers=service.admin)
    assert no_station.status_code == 422 and "--station" in no_station.json()["detail"]
    long_name = service.client.post("/v1/keys", json={"role": "admin", "name": "x" * 200}, headers=service.admin)
    assert long_name.status_code == 422
    assert service.client.delete("/v1/keys/nosuchkey", headers=service.admin).status_code == 404


# -- stations and rules through the API ----------------------------------------------------


def test_stations_are_added_read_and_their_rules_versioned(service):
    station = f"st-{secrets.token_hex(4)}"
    created = service.client.post("/v1/stations", json={"id": station, "description": "cam 2", "rules": FAIL_ALL},
                                  headers=service.admin)
    assert created.status_code == 201
    assert created.json()["rules_version"] == 1 and created.json()["rules"]["default"]["fail_conf"] == 1e-6
    again = service.client.post("/v1/stations", json={"id": station}, headers=service.admin)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    judged_by_v1 = service.inspect(station).json()
    assert judged_by_v1["verdict"] == "FAIL" and judged_by_v1["rules_version"] == 1

    changed = service.client.put(f"/v1/stations/{station}/rules", json={}, headers=service.admin)
    assert changed.status_code == 200 and changed.json()["rules_version"] == 2
    judged_by_v2 = service.inspect(station, frame(seed=80)).json()
    assert judged_by_v2["verdict"] == "PASS" and judged_by_v2["rules_version"] == 2
    old = service.client.get(f"/v1/inspections/{judged_by_v1['id']}", headers=service.admin).json()
    assert old["rules_version"] == 1 and old["verdict"] == "FAIL"

    history = service.client.get(f"/v1/stations/{station}/rules", headers=service.admin).json()
    assert [h["version"] for h in history] == [1, 2]
    assert history[0]["rules"]["default"]["fail_conf"] == 1e-6
    shown = service.client.get(f"/v1/stations/{station}", headers=service.admin).json()
    assert shown["rules_version"] == 2 and shown["description"] == "cam 2"


def test_rules_naming_a_class_the_model_does_not_detect_are_refused(service):
    station = service.add_station()
    misspelt = {"classes": {"scratches": {"fail_conf": 0.3}}}  # the untrained model's classes are "0", "1", ...
    refused = service.client.put(f"/v1/stations/{station}/rules", json=misspelt, headers=service.admin)
    assert refused.status_code == 422 and "scratches" in refused.json()["detail"]
    added = service.client.post("/v1/stations", json={"id": "st-misspelt", "rules": misspelt}, headers=service.admin)
    assert added.status_code == 422
    known = service.client.put(f"/v1/stations/{station}/rules", json={"classes": {"1": {"fail_conf": 0.3}}},
                               headers=service.admin)
    assert known.status_code == 200 and known.json()["rules_version"] == 2


@pytest.mark.parametrize(("rules", "named"), [
    ({"default": {"fail_conf": 0.2, "review_conf": 0.5}}, "review_conf 0.5 is above fail_conf 0.2"),
    ({"area_unit": "mm2"}, "px_per_mm"),
    ({"defaults": {}}, "defaults"),
    ({"roi": [[[0, 0], [1, 1]]]}, "at least 3 points"),
])
def test_invalid_rules_are_refused_422_naming_the_problem_and_the_version_stays(service, rules, named):
    station = service.add_station()
    response = service.client.put(f"/v1/stations/{station}/rules", json=rules, headers=service.admin)
    assert response.status_code == 422
    assert named in str(response.json()["detail"])
    assert service.client.get(f"/v1/stations/{station}", headers=service.admin).json()["rules_version"] == 1


def test_rules_with_a_number_json_cannot_carry_are_refused(service):
    station = service.add_station()
    response = service.client.put(f"/v1/stations/{station}/rules", content=b'{"default": {"min_area": 1e999}}',
                                  headers={**service.admin, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert service.client.get(f"/v1/stations/{station}", headers=service.admin).status_code == 200


def test_station_ids_are_checked(service):
    for bad in ("", "-starts-with-dash", "has space", "x" * 65, "../etc"):
        assert service.client.post("/v1/stations", json={"id": bad}, headers=service.admin).status_code == 422
    assert service.client.put("/v1/stations/nowhere/rules", json={}, headers=service.admin).status_code == 404


def test_concurrent_rules_changes_through_the_api_all_succeed(service):
    station = service.add_station()
    codes = concurrently(6, lambda i: service.client.put(f"/v1/stations/{station}/rules",
                                                         json={"default": {"min_area": i}},
                                                         headers=service.admin).status_code)
    assert codes == [200] * 6
    history = service.client.get(f"/v1/stations/{station}/rules", headers=service.admin).json()
    assert [h["version"] for h in history] == list(range(1, 8))


# -- health and metrics --------------------------------------------------------------------


def test_healthz_and_readyz_need_no_key_and_say_what_serves(service):
    assert service.client.get("/healthz").json() == {"status": "ok"}
    ready = service.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["model"] == "default@v1"
    assert ready.json()["database"] == "ok" and ready.json()["providers"] == ["CPUExecutionProvider"]


def test_metrics_count_verdicts_and_batch_sizes(service):
    station = service.add_station(FAIL_ALL)
    service.inspect(station)
    metrics = service.client.get("/metrics", headers=service.key("reviewer"))
    assert metrics.status_code == 200
    text_body = metrics.text
    assert f'qc_verdicts_total{{station="{station}",verdict="FAIL"}} 1.0' in text_body
    assert "qc_batch_size_count" in text_body and "qc_batch_size_bucket" in text_body
    assert 'qc_model_info{name="default",providers="CPUExecutionProvider",version="v1"} 1.0' in text_body


def test_without_a_model_the_service_starts_unready_refuses_frames_503_and_takes_a_first_model(start, untrained_model):
    service = start(model=None, require_model=False)
    ready = service.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["ready"] is False and ready.json()["model"] is None
    station = service.add_station()
    refused = service.inspect(station)
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert "no model loaded" in refused.json()["detail"]
    assert service.records(station) == []

    assert service.register(untrained_model) == "v1"
    promoted = service.client.post("/v1/models/default/promote", json={"version": "v1"}, headers=service.admin)
    assert promoted.status_code == 200, promoted.text
    assert service.client.get("/readyz").status_code == 200
    assert service.inspect(station).status_code == 200


def test_a_database_outage_answers_503_with_retry_after_and_readyz_says_so(service, monkeypatch):
    from sqlalchemy.exc import OperationalError

    station = service.add_station()

    def unreachable(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(service.state.store, "station", unreachable)
    monkeypatch.setattr(service.state.db, "ping", lambda: False)
    response = service.inspect(station)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert "database unavailable" in response.json()["detail"]
    ready = service.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["database"] == "unreachable"


def test_a_shadow_model_judges_live_frames_without_changing_the_answers(start):
    service = start(shadow_rate=1.0)
    station = service.add_station(FAIL_ALL)
    on = service.client.put("/v1/shadow", json={"ref": "default@v1"}, headers=service.admin)
    assert on.status_code == 200 and on.json()["shadow"] == "default@v1"
    answers = [service.inspect(station, frame(seed=110 + i)).json() for i in range(3)]
    assert {a["verdict"] for a in answers} == {"FAIL"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        report = service.client.get("/v1/shadow", headers=service.admin).json()
        if report["frames"] >= 3:
            break
        time.sleep(0.05)
    assert report["shadow"] == "default@v1" and report["frames"] == 3
    assert report["verdict_agreement"] == 1.0  # the same model agrees with itself
    off = service.client.put("/v1/shadow", json={"ref": None}, headers=service.admin)
    assert off.json()["shadow"] is None
    missing = service.client.put("/v1/shadow", json={"ref": "default@v9"}, headers=service.admin)
    assert missing.status_code == 404


def test_a_shadow_model_that_cannot_load_does_not_stop_production(start):
    service = start(shadow_model="default@v9")
    station = service.add_station()
    assert service.inspect(station).status_code == 200
    report = service.client.get("/v1/shadow", headers=service.admin).json()
    assert report["shadow"] is None


# -- load: backpressure, deadlines, micro-batching -----------------------------------------


@pytest.fixture
def slow_inference(monkeypatch) -> Callable[[float], None]:
    """slow_inference(seconds): every batch of services started afterwards takes that long."""
    import serving.state

    def slow(seconds: float) -> None:
        real = serving.state.run_batch

        def run(model, frames):
            time.sleep(seconds)
            return real(model, frames)

        monkeypatch.setattr(serving.state, "run_batch", run)

    return slow


def test_a_full_queue_answers_503_with_retry_after_and_stores_nothing_for_it(start, slow_inference):
    slow_inference(0.5)
    service = start(queue_size=1, max_batch=1, max_wait_ms=0)
    station = service.add_station()
    responses = concurrently(6, lambda i: service.inspect(station, frame(seed=90 + i)))
    codes = [r.status_code for r in responses]
    assert 503 in codes and 200 in codes and set(codes) <= {200, 503}
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert "Idempotency-Key" in busy.json()["detail"]
    assert len(service.records(station)) == codes.count(200)
    metrics = service.client.get("/metrics", headers=service.admin).text
    assert 'qc_rejected_total{reason="queue_full"}' in metrics


def test_a_frame_still_queued_at_its_deadline_gets_504_and_is_not_stored(start, slow_inference):
    slow_inference(0.5)
    service = start(queue_size=8, max_batch=1, max_wait_ms=0, deadline_ms=200)
    station = service.add_station()
    responses = concurrently(4, lambda i: service.inspect(station, frame(seed=95 + i)))
    codes = [r.status_code for r in responses]
    assert 504 in codes and set(codes) <= {200, 504}
    late = next(r for r in responses if r.status_code == 504)
    assert late.headers["retry-after"] and "deadline" in late.json()["detail"]
    assert len(service.records(station)) == codes.count(200)


def test_concurrent_frames_share_a_batch(start):
    service = start(max_wait_ms=250, max_batch=8)
    station = service.add_station()
    responses = concurrently(8, lambda i: service.inspect(station, frame(seed=100 + i)))
    assert {r.status_code for r in responses} == {200}
    sizes = [r.json()["timings"]["batch_size"] for r in responses]
    assert max(sizes) > 1
    assert len(service.records(station)) == 8


def test_a_slow_database_read_does_not_stall_other_requests(service, monkeypatch):
    station = service.add_station()
    real = service.state.store.station

    def slow_station(station_id):
        time.sleep(1.0)
        return real(station_id)

    monkeypatch.setattr(service.state.store, "station", slow_station)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(service.inspect, station)
        time.sleep(0.1)
        started = time.monotonic()
        assert service.client.get("/healthz").status_code == 200
        waited = time.monotonic() - started
        assert pending.result().status_code == 200
    assert waited < 0.5, f"/healthz waited {waited:.2f} s behind a database read"


# -- models: hot swap, refusal, rollback ---------------------------------------------------


class Traffic:
    """Threads posting frames until stopped; every answer with the time its request left."""

    def __init__(self, service: Service, station: str, threads: int = 3) -> None:
        self.service, self.station = service, station
        self.answers: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(i,)) for i in range(threads)]

    def _post(self, worker: int) -> None:
        i = 0
        while not self._stop.is_set():
            sent = time.monotonic()
            response = self.service.inspect(self.station, frame(seed=1000 * worker + i))
            version = response.json()["model"]["version"] if response.status_code == 200 else response.text
            self.answers.append((sent, response.status_code, version))
            i += 1

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_promoting_a_model_while_frames_flow_drops_no_frame_and_later_frames_use_it(start, untrained_model):
    service = start()
    station = service.add_station()
    assert service.register(untrained_model) == "v2"
    engineer = service.key("engineer")
    with Traffic(service, station) as traffic:
        time.sleep(0.4)
        promoted = service.client.post("/v1/models/default/promote", json={"version": "v2"}, headers=engineer)
        done = time.monotonic()
        time.sleep(0.6)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["version"] == "v2" and promoted.json()["previous"] == "v1"
    failed = [(code, detail) for _, code, detail in traffic.answers if code != 200]
    assert failed == []
    assert "v1" in {v for sent, _, v in traffic.answers if sent < done}
    later = {v for sent, _, v in traffic.answers if sent > done}
    assert later == {"v2"}
    models = service.client.get("/v1/models", headers=engineer).json()
    assert models == [{"name": "default", "versions": ["v1", "v2"], "production": "v2", "serving": "v2"}]


def test_a_candidate_the_gate_refuses_is_never_loaded(start, untrained_model, monkeypatch):
    service = start()
    worse = {"evaluations": {HOLDOUT: {"map50_95": 0.3, "per_class": {}}}}
    assert service.register(untrained_model, card=worse) == "v2"
    loads = []
    monkeypatch.setattr(service.state.manager, "prepare", lambda version: loads.append(version))
    refused = service.client.post("/v1/models/default/promote", json={"version": "v2"}, headers=service.admin)
    assert refused.status_code == 409 and "refused by the promotion gate" in refused.json()["detail"]
    assert loads == []
    assert service.client.get("/v1/models", headers=service.admin).json()[0]["production"] == "v1"


def test_a_model_that_cannot_load_is_refused_by_promote_and_the_current_one_keeps_serving(
        start, untrained_model, tmp_path):
    service = start()
    station = service.add_station()
    service.register(untrained_model)
    promoted = service.client.post("/v1/models/default/promote", json={"version": "v2"}, headers=service.admin)
    assert promoted.status_code == 200
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model\n" * 100)
    assert service.register(broken) == "v3"
    with Traffic(service, station, threads=2) as traffic:
        refused = service.client.post("/v1/models/default/promote", json={"version": "v3"}, headers=service.admin)
        time.sleep(0.2)
    assert refused.status_code == 422
    assert "v3" in refused.json()["detail"] and "ONNX" in refused.json()["detail"]
    assert {code for _, code, _ in traffic.answers} == {200}
    assert {version for _, _, version in traffic.answers} == {"v2"}
    assert Registry(service.settings.models_dir).production_version("default") == "v2"
    assert service.inspect(station).json()["model"]["version"] == "v2"
    ready = service.client.get("/readyz").json()
    assert ready["model"] == "default@v2" and "v3" in ready["last_model_error"]


def test_rollback_returns_to_the_previous_production_version(start, untrained_model):
    service = start()
    station = service.add_station()
    service.register(untrained_model)
    service.client.post("/v1/models/default/promote", json={"version": "v2"}, headers=service.admin)
    assert service.inspect(station).json()["model"]["version"] == "v2"
    rolled = service.client.post("/v1/models/default/rollback", headers=service.admin)
    assert rolled.status_code == 200 and rolled.json()["version"] == "v1"
    assert service.inspect(station, frame(seed=7)).json()["model"]["version"] == "v1"
    again = service.client.post("/v1/models/default/rollback", headers=service.admin)
    assert again.status_code == 409 and "no earlier production version" in again.json()["detail"]


def test_a_promotion_made_outside_the_service_is_picked_up_by_the_watcher(start, untrained_model, tmp_path):
    service = start(model_poll_s=0.1)
    station = service.add_station()
    registry = Registry(service.settings.models_dir)
    service.register(untrained_model)
    registry.set_production("default", "v2")  # as `qc models promote` in another process does
    deadline = time.monotonic() + 10
    while service.state.manager.current.version != "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.inspect(station).json()["model"]["version"] == "v2"

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    service.register(broken)
    registry.set_production("default", "v3")
    deadline = time.monotonic() + 10
    while not service.state.manager.last_error and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "v3" in (service.state.manager.last_error or "")
    assert service.inspect(station, frame(seed=8)).json()["model"]["version"] == "v2"


@pytest.mark.parametrize("path", [
    "/v1/models/%2E%2E/v1", "/v1/models/default/%2E%2E", "/v1/models/.hidden/v1",
])
def test_model_names_and_versions_are_never_paths(service, path):
    assert service.client.get(path, headers=service.admin).status_code in (404, 422)
    assert service.client.post("/v1/models/%2E%2E/rollback", headers=service.admin).status_code == 422
    shadow = service.client.put("/v1/shadow", json={"ref": "../../etc@v1"}, headers=service.admin)
    assert shadow.status_code == 422


# -- PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_on_postgresql_frames_are_recorded_and_unstorable_values_are_refused_not_500(start, postgres_url):
    service = start(database_url=postgres_url)
    station = service.add_station(FAIL_ALL)
    answered = service.inspect(station, headers={"Idempotency-Key": "pg-1"}).json()
    assert answered["verdict"] == "FAIL"
    assert service.client.get(f"/v1/inspections/{answered['id']}", headers=service.admin).status_code == 200
    assert service.inspect(station, frame(seed=5), headers={"Idempotency-Key": "pg-1"}).json()["id"] == answered["id"]
    refused = [
        service.client.post("/v1/stations", json={"id": "nul", "description": "a\x00b"}, headers=service.admin),
        service.client.get("/v1/inspections", params={"part_id": "a\x00"}, headers=service.admin),
        service.client.get("/v1/inspections/a%00b", headers=service.admin),
        service.client.post("/v1/keys", json={"role": "station", "stations": [station], "name": "n\x00"},
                            headers=service.admin),
    ]
    assert [r.status_code for r in refused] == [422] * len(refused)
    assert "cannot be stored" in refused[0].json()["detail"]
    assert [s["id"] for s in service.client.get("/v1/stations", headers=service.admin).json()] == [station]
