"""The service probed a second time as an attacker, a broken camera and a bad network would
(issue 25), as a specification: each reproduction of the issue is a test here, named for what
must hold. Decoding bombs under concurrency are in tests/test_decode_memory.py.
"""

from __future__ import annotations

import json
import re
import struct
import time
from datetime import timedelta

import cv2
import numpy as np
import pytest

from inspection.store.stations_health import Heartbeat, StationHealthStore
from tests.service_harness import REVIEW_ALL, Service, frame, utcnow
from tests.test_hardening_service import guarded_server  # noqa: F401 - the fixture

BEAT = {"agent_version": "0.1.0", "interval_s": 30, "shift": "06:00-22:00", "spool_depth": 0}
PASSWORD = "line-side-pc-42"


# -- 7. one station's heartbeat cannot break the station list --------------------------------


@pytest.mark.parametrize("shift", ["25:00-26:00", "06:00-24:00", "06:61-22:00", "99:99-00:00"])
def test_a_heartbeat_with_an_impossible_shift_is_refused_at_the_door(service, shift):
    station = service.add_station()
    answer = service.client.post(f"/v1/stations/{station}/heartbeat", json={**BEAT, "shift": shift},
                                 headers=service.admin)
    assert answer.status_code == 422 and "shift" in answer.text
    assert service.client.get("/v1/stations", headers=service.admin).status_code == 200


def test_a_bad_shift_stored_before_cannot_break_the_station_list(service):
    station = service.add_station()
    StationHealthStore(service.state.db).record(station, Heartbeat("0.1.0", 30, "25:00-26:00", {}),
                                                at=utcnow() - timedelta(hours=1))  # overdue
    listed = service.client.get("/v1/stations", headers=service.admin)
    assert listed.status_code == 200, listed.text
    assert service.client.get(f"/v1/stations/{station}/health", headers=service.admin).status_code == 200


# -- 8. heartbeat fields are bounded ------------------------------------------------------------


@pytest.mark.parametrize("field", ["last_capture_at", "last_verdict_at", "agent_version"])
def test_an_oversized_heartbeat_field_is_refused_and_not_stored(service, field):
    station = service.add_station()
    answer = service.client.post(f"/v1/stations/{station}/heartbeat", json={**BEAT, field: "x" * (1 << 20)},
                                 headers=service.admin)
    assert answer.status_code in (413, 422), answer.status_code
    assert StationHealthStore(service.state.db).of(station) is None
    assert len(service.client.get("/v1/stations", headers=service.admin).content) < 100_000


def test_heartbeat_times_must_be_times(service):
    station = service.add_station()
    answer = service.client.post(f"/v1/stations/{station}/heartbeat",
                                 json={**BEAT, "last_capture_at": "not a time"}, headers=service.admin)
    assert answer.status_code == 422
    fine = service.client.post(f"/v1/stations/{station}/heartbeat",
                               json={**BEAT, "last_capture_at": "2026-12-07T10:00:00.123456Z"}, headers=service.admin)
    assert fine.status_code == 200, fine.text


# -- 9. integers are bounded to the database's range before they reach SQL ----------------------


@pytest.mark.parametrize("where", ["task", "annotation"])
def test_the_webhook_refuses_ids_beyond_the_databases_range_with_400(service, monkeypatch, where):
    monkeypatch.setenv("QC_LABEL_WEBHOOK_SECRET", "right")
    body = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "result": []}, "task": {"id": 99}}
    body[where]["id"] = 2**63
    answer = service.client.post("/v1/hooks/label-studio", json=body, headers={"X-QC-Webhook-Secret": "right"})
    assert answer.status_code == 400, answer.text
    assert "range" in answer.json()["detail"]


def test_heartbeat_counters_are_bounded_to_the_databases_range(service):
    station = service.add_station()
    answer = service.client.post(f"/v1/stations/{station}/heartbeat", json={**BEAT, "dropped": 2**63},
                                 headers=service.admin)
    assert answer.status_code == 422


# -- 10. no string can end or comment out the page's embedded data ----------------------------


def sign_in(service: Service, name: str, *, display_name: str, password: str = PASSWORD) -> None:
    service.client.cookies.clear()  # signed out: the module shares one client
    from inspection.store.users import UserStore

    UserStore(service.state.db).add(name, password=password, role="reviewer", display_name=display_name)
    form = service.client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    response = service.client.post("/login", data={"name": name, "password": password, "csrf": token},
                                   follow_redirects=False)
    assert response.status_code == 303, response.text


@pytest.mark.parametrize("display_name", ["<!--<script>", "</script><script>alert(1)</script>",
                                          "a & b <b>"])
def test_the_review_page_embeds_any_display_name_as_data(service, display_name):
    sign_in(service, f"u{abs(hash(display_name)) % 10**6}", display_name=display_name)
    page = service.client.get("/review").text
    embedded = re.search(r'<script type="application/json" id="config">(.*?)</script>', page, re.S).group(1)
    assert not set(embedded) & set("<>&"), embedded  # the HTML parser sees no markup inside
    assert json.loads(embedded)["user"]["display_name"] == display_name


# -- 15. a reviewer's class is one the model knows ------------------------------------------------


@pytest.mark.parametrize("class_name", ["<img src=x onerror=alert(1)>", "no-such-class"])
def test_a_missed_box_of_a_class_the_model_does_not_know_is_refused(service, class_name):
    station = service.add_station(REVIEW_ALL)
    inspection = service.inspect(station, frame(seed=7)).json()["id"]
    box = {"decision": "missed", "class": class_name, "xyxy": [1, 1, 20, 20]}
    answer = service.client.post(f"/v1/inspections/{inspection}/reviews",
                                 json={"decision": "defect", "boxes": [box]}, headers=service.admin)
    assert answer.status_code == 422 and "class" in answer.json()["detail"]
    assert service.client.get(f"/v1/inspections/{inspection}/reviews", headers=service.admin).json()["history"] == []
    known = sorted(service.state.manager.current.detector.names.values())[0]
    fine = service.client.post(f"/v1/inspections/{inspection}/reviews",
                               json={"decision": "defect", "boxes": [{**box, "class": known}]}, headers=service.admin)
    assert fine.status_code == 201, fine.text


# -- 13. the database password is never printed, whatever the URL looks like --------------------


@pytest.mark.parametrize("url", [
    "qc:SuperSecret123@127.0.0.1/qc",  # no scheme
    "postgres//qc:SuperSecret123@127.0.0.1/qc",  # malformed schemes
    "postgresql:/qc:SuperSecret123@127.0.0.1/qc",
    "postgresql://qc:Super@Secret123@127.0.0.1:1/qc",  # an @ in the password, not written %40
    "postgresql://qc:SuperSecret123@127.0.0.1:1/qc?connect_timeout=abc",  # a bad option
])
def test_a_bad_database_url_is_one_line_without_the_password(qc_home, monkeypatch, url):
    from typer.testing import CliRunner

    from inspection.errors import ConfigError
    from qc.cli import app

    monkeypatch.setenv("QC_DATABASE_URL", url)
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert isinstance(result.exception, ConfigError), result.exception
    said = str(result.exception) + result.output
    for part in ("SuperSecret123", "Super@", "Secret123"):
        assert part not in said, said
    assert "\n" not in str(result.exception).strip() and "QC_DATABASE_URL" in said


# -- 14. /readyz shows no file path, whatever characters the home has ---------------------------


@pytest.mark.parametrize("folder", ["qc home", "qc:home", "plant: line 3"])
def test_readyz_shows_no_path_when_the_home_has_spaces_or_colons(tmp_path, untrained_model, folder):
    from tests.service_harness import running
    from tests.test_hardening_models import _home_with_broken_production

    home = tmp_path / folder / "home"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07this is not an ONNX model" * 40)
    _home_with_broken_production(home, untrained_model, broken)
    with running(home, None) as service:
        ready = service.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["pointer_problem"]
        assert folder not in ready.text and str(tmp_path) not in ready.text, ready.text


# -- 11, 12. sign-in failures are counted atomically, for every name alike ----------------------


def _outcome(users, name: str, password: str) -> str:
    from inspection.store.users import LoginRefused

    try:
        users.authenticate(name, password)
    except LoginRefused as refused:
        return "locked" if refused.retry_after else "wrong"
    return "signed in"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def user_store(request, tmp_path):
    from inspection.store.database import Database
    from inspection.store.users import UserStore

    url = f"sqlite:///{tmp_path / 'qc.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    db.upgrade()
    users = UserStore(db)
    users.add("kim", password=PASSWORD, role="reviewer")
    yield users
    db.dispose()


def test_parallel_wrong_passwords_lock_the_name_as_one_at_a_time_would(user_store):
    from tests.service_harness import concurrently

    outcomes = concurrently(30, lambda i: _outcome(user_store, "kim", f"wrong-password-{i}"))
    assert outcomes.count("wrong") <= 4 and outcomes.count("signed in") == 0, outcomes
    assert _outcome(user_store, "kim", PASSWORD) == "locked"  # the right password waits too


def test_the_right_password_among_a_parallel_burst_restarts_the_count_and_the_rest_still_lock(user_store):
    from tests.service_harness import concurrently

    guesses = [f"wrong-password-{i}" for i in range(29)] + [PASSWORD]
    outcomes = concurrently(30, lambda i: _outcome(user_store, "kim", guesses[29 - i]))
    # Which thread counts first depends on the machine's load. The right password is either
    # among the first five attempts (it signs in, and a success restarts the count, so at most
    # four wrong ones before it and four after) or it waits for the lock like the rest.
    if "signed in" in outcomes:
        assert outcomes.count("wrong") <= 2 * 4, outcomes
    else:
        assert outcomes.count("wrong") <= 4, outcomes
    assert outcomes.count("locked") >= 30 - 1 - 2 * 4, outcomes


def test_a_name_that_does_not_exist_is_locked_like_one_that_does(user_store):
    existing = [_outcome(user_store, "kim", "wrong-password") for _ in range(6)]
    missing = [_outcome(user_store, "nobody", "wrong-password") for _ in range(6)]
    assert existing == missing == ["wrong"] * 4 + ["locked"] * 2


def test_a_new_password_lifts_the_lock(user_store):
    for _ in range(6):
        _outcome(user_store, "kim", "wrong-password")
    user_store.set_password("kim", "a-new-password-9")
    assert _outcome(user_store, "kim", "a-new-password-9") == "signed in"


def test_sixty_parallel_sign_ins_over_http_lock_after_the_free_failures(service):
    from inspection.store.users import UserStore
    from tests.service_harness import concurrently

    UserStore(service.state.db).add("lee", password=PASSWORD, role="reviewer")
    service.client.cookies.clear()
    form = service.client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    cookies = {"qc_login_csrf": form.cookies["qc_login_csrf"]}

    def attempt(i: int) -> int:
        from starlette.testclient import TestClient

        client = TestClient(service.client.app, cookies=cookies)  # one per request: no shared cookie jar
        return client.post("/login", data={"name": "lee", "password": f"not-it-{i}", "csrf": token},
                           follow_redirects=False).status_code

    codes = concurrently(20, attempt) + concurrently(20, lambda i: attempt(20 + i))
    assert codes.count(401) <= 4 and set(codes) <= {401, 429}, codes


# -- 1. a frame missing most of its scan data is damaged, whatever marker ends it ---------------


def progressive_jpeg(seed: int = 0, size: tuple[int, int] = (640, 480)) -> bytes:
    from tests.test_hardening_images import camera_jpeg

    pixels = cv2.imdecode(np.frombuffer(camera_jpeg(seed, size), np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def cut_after_scans(data: bytes, scans: int) -> bytes:
    """The bytes up to the start of scan number `scans` + 1, then FFD9 (the issue's probe)."""
    starts = [m.start() for m in re.finditer(rb"\xff\xda", data)]
    return data[: starts[scans]] + b"\xff\xd9"


def rle8_rows(rows: list[bytes], width: int, *, end: bytes = b"\x00\x01") -> bytes:
    """An 8-bit BMP, run-length encoded as Windows writes it (runs, 00 00 after each row),
    grey palette; `end` closes the bitmap (end-of-bitmap by default)."""
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    encoded = bytearray()
    for row in rows:
        x = 0
        while x < len(row):
            run = 1
            while x + run < len(row) and run < 255 and row[x + run] == row[x]:
                run += 1
            encoded += bytes((run, row[x]))
            x += run
        encoded += b"\x00\x00"
    encoded = encoded[:-2] + end  # the last row ends with the bitmap
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, len(rows), 1, 8, 1, len(encoded), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(encoded), 0, 0, offset) + info + palette + bytes(encoded)


def striped_rows(width: int = 320, height: int = 240) -> list[bytes]:
    return [bytes(((x // 16 + y // 8) % 4) * 60 for x in range(width)) for y in range(height)]


@pytest.mark.parametrize("scans", [1, 2, 5, 9])
def test_a_progressive_jpeg_cut_after_a_scan_is_damaged(scans):
    from inspection.detect import imaging
    from inspection.errors import DamagedImage

    whole = progressive_jpeg(1)
    assert len(re.findall(rb"\xff\xda", whole)) == 10
    assert imaging.decode(whole).shape == (480, 640, 3)
    with pytest.raises(DamagedImage, match="scan"):
        imaging.decode(cut_after_scans(whole, scans))


def test_an_rle8_bmp_cut_with_an_end_of_bitmap_is_damaged():
    from inspection.detect import imaging
    from inspection.errors import DamagedImage

    rows = striped_rows()
    whole = rle8_rows(rows, 320)
    decoded = imaging.decode(whole)
    assert decoded.shape == (240, 320, 3) and decoded[:, :, 0].any()
    with pytest.raises(DamagedImage, match="rows"):
        imaging.decode(_cut_rle(whole, 120))
    with pytest.raises(DamagedImage):
        imaging.decode(whole[: len(whole) // 2])  # cut with no end at all


def _cut_rle(whole: bytes, rows: int) -> bytes:
    """`whole` with its pixel data cut after `rows` rows and an end-of-bitmap appended; the
    header still claims every row."""
    offset = struct.unpack("<I", whole[10:14])[0]
    data, pos = whole[offset:], 0
    for _ in range(rows):
        while data[pos:pos + 2] != b"\x00\x00":
            pos += 2
        pos += 2
    return whole[:offset] + data[:pos] + b"\x00\x01"


def test_cut_frames_are_400_on_inspect_never_pass(service):
    station = service.add_station()  # the default rules pass every frame judged
    for damaged, kind in ((cut_after_scans(progressive_jpeg(2), 1), "jpeg"),
                          (_cut_rle(rle8_rows(striped_rows(), 320), 120), "bmp")):
        answer = service.inspect(station, damaged, kind=kind)
        assert answer.status_code == 400, answer.text
        assert "incomplete" in answer.json()["detail"]
    assert service.records(station) == []


# -- 3, 5, 6. bodies: bounded per route, read after credentials, in time, and let go ------------


def asgi_post(service: Service, path: str, chunks, *, headers: dict[str, str], delay_s: float = 0.0,
              method: str = "POST", disconnect: bool = False) -> tuple[int | None, int]:
    """Send `chunks` as the body straight to the app (no HTTP client in between, so nothing is
    buffered for it): (the status it answered, None if none, and the body bytes it read)."""
    import asyncio

    app, sent, read = service.client.app, [], [0]
    chunks = list(chunks)

    async def receive():
        if not chunks:
            if disconnect:
                return {"type": "http.disconnect"}
            await asyncio.sleep(3600)
        await asyncio.sleep(delay_s)
        chunk = chunks.pop(0)
        read[0] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks) or disconnect}

    async def send(message):
        sent.append(message)

    async def call():
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "client": ("127.0.0.1", 9), "server": ("t", 80), "state": {},
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
        await asyncio.wait_for(app(scope, receive, send), 20)

    service.client.portal.call(call)
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    return status, read[0]


BIG_JSON = [b'{"action": "' + b"x" * (64 << 10)] + [b"x" * (64 << 10)] * 127 + [b'"}']  # 8 MB


def test_the_webhook_checks_its_secret_before_reading_a_large_body(service, monkeypatch):
    monkeypatch.setenv("QC_LABEL_WEBHOOK_SECRET", "right")
    status, read = asgi_post(service, "/v1/hooks/label-studio", BIG_JSON,
                             headers={"content-type": "application/json"})
    assert status == 401 and read <= 128 << 10, (status, read)  # a chunk past 64 KiB, not 8 MB
    status, read = asgi_post(service, "/v1/hooks/label-studio", BIG_JSON,
                             headers={"content-type": "application/json", "x-qc-webhook-secret": "right"})
    assert status == 413 and read < 8 << 20, (status, read)  # over the hook's limit, not read whole


def test_a_body_without_a_key_is_refused_before_it_is_read(service):
    status, read = asgi_post(service, "/v1/stations", BIG_JSON, headers={"content-type": "application/json"})
    assert status in (401, 413) and read <= 128 << 10, (status, read)


def test_every_route_has_a_body_limit_sized_to_what_it_needs(service):
    status, read = asgi_post(service, "/v1/stations", BIG_JSON,
                             headers={"content-type": "application/json", **service.admin})
    assert status == 413 and read <= 2 << 20, (status, read)
    declared = {"content-type": "application/json", "content-length": str(64 << 20), **service.admin}
    status, read = asgi_post(service, "/v1/stations", BIG_JSON, headers=declared)
    assert status == 413 and read == 0
    form = [b"name=" + b"a" * (1 << 20) + b"&"] * 200
    status, read = asgi_post(service, "/login", form,
                             headers={"content-type": "application/x-www-form-urlencoded"})
    assert status == 413 and read <= 2 << 20, (status, read)


@pytest.mark.parametrize("path", ["/login", "/v1/hooks/label-studio", "/v1/stations"])
def test_a_body_trickled_past_the_body_timeout_is_408_on_every_route(start, monkeypatch, path):
    monkeypatch.setenv("QC_LABEL_WEBHOOK_SECRET", "right")
    service = start(body_timeout_s=1.0)
    headers = {"content-type": "application/json", "content-length": "1000", "x-qc-webhook-secret": "right",
               **service.admin}
    started = time.monotonic()
    status, _ = asgi_post(service, path, [b" "] * 40, headers=headers, delay_s=0.1)
    assert status == 408 and time.monotonic() - started < 3.5, status


def test_a_client_that_disconnects_mid_body_on_v2_infer_is_an_abort_not_a_500(service):
    status, _ = asgi_post(service, "/v2/models/default/infer", [b'{"inputs": ['], disconnect=True,
                          headers={"content-type": "application/json", "content-length": "100000",
                                   **service.admin})
    metrics = service.client.get("/metrics", headers=service.admin).text
    assert 'qc_client_aborts_total{route="/v2/models/{name}/infer"} 1.0' in metrics
    assert 'route="/v2/models/{name}/infer",status="500"' not in metrics and status != 500


# -- 4. headers over 16 KB are 431 however they arrive ---------------------------------------


@pytest.mark.parametrize("size_kb", [17, 50, 100])
def test_headers_over_16_kb_in_one_read_are_431(guarded_server, size_kb):  # noqa: F811 - the fixture
    import socket

    request = (b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (size_kb << 10)
               + b"\r\nContent-Length: 2\r\n\r\nab")
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        sock.sendall(request)
        sock.settimeout(3)
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")
