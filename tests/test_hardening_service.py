"""The service against noisy neighbours, impatient and slow clients, and curious strangers
(issue 9, defects 5-9), as a specification. Each reproduction of the issue is a test here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import uvicorn
from fastapi import FastAPI, Request

from inspection.errors import ConfigError
from inspection.settings import Settings
from inspection.store.database import Database
from serving.settings import ServeSettings
from serving.slow_clients import uvicorn_options
from tests.service_harness import frame

# -- 5. one station cannot starve the rest ---------------------------------------------------


@pytest.fixture
def slow_batches(monkeypatch):
    import serving.state

    real = serving.state.run_batch
    monkeypatch.setattr(serving.state, "run_batch",
                        lambda model, frames, **kw: (time.sleep(0.3), real(model, frames, **kw))[1])


def test_a_flooding_station_gets_429_with_retry_after_and_a_quiet_one_keeps_its_share(start, slow_batches):
    service = start(queue_size=4, max_batch=1, max_wait_ms=0, deadline_ms=30000)
    flooder, quiet = service.add_station(), service.add_station()
    assert service.inspect(quiet, frame(seed=1)).status_code == 200  # the quiet station is known
    with ThreadPoolExecutor(16) as pool:
        flood = [pool.submit(service.inspect, flooder, frame(seed=10 + i)) for i in range(14)]
        time.sleep(0.3)
        answers = [service.inspect(quiet, frame(seed=2 + i)) for i in range(3)]
        flooded = [f.result() for f in flood]
    assert [a.status_code for a in answers] == [200, 200, 200]
    codes = [r.status_code for r in flooded]
    assert 429 in codes and set(codes) <= {200, 429, 503}, codes
    refused = next(r for r in flooded if r.status_code == 429)
    assert refused.headers["retry-after"] == "1" and "fair share" in refused.json()["detail"]
    assert len(service.records(flooder)) == codes.count(200)
    metrics = service.client.get("/metrics", headers=service.admin).text
    assert 'qc_rejected_total{reason="fair_share"}' in metrics


def test_a_station_alone_is_never_refused_by_fair_admission(start, slow_batches):
    """One busy line keeps its throughput: only the queue's own backpressure (503) applies."""
    service = start(queue_size=2, max_batch=1, max_wait_ms=0)
    station = service.add_station()
    with ThreadPoolExecutor(6) as pool:
        codes = [r.status_code for r in pool.map(lambda i: service.inspect(station, frame(seed=40 + i)), range(6))]
    assert 429 not in codes and 200 in codes


# -- 6. a client that disconnects is not a server error --------------------------------------


def test_a_client_that_disconnects_during_upload_is_counted_apart_not_as_a_500(service):
    station = service.add_station()
    app = service.client.app
    key = service.admin["Authorization"].encode()
    sent: list[dict] = []

    async def disconnecting_client() -> None:
        messages = iter([{"type": "http.request", "body": frame()[:500], "more_body": True},
                         {"type": "http.disconnect"}])

        async def receive():
            try:
                return next(messages)
            except StopIteration:
                await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": f"/v1/stations/{station}/inspect", "raw_path": b"",
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 9), "server": ("t", 80),
                 "headers": [(b"authorization", key), (b"content-type", b"image/jpeg"),
                             (b"content-length", b"100000")], "state": {}}
        await app(scope, receive, send)

    service.client.portal.call(disconnecting_client)
    metrics = service.client.get("/metrics", headers=service.admin).text
    assert 'qc_client_aborts_total{route="/v1/stations/{station}/inspect"} 1.0' in metrics
    assert 'route="/v1/stations/{station}/inspect",status="500"' not in metrics
    assert service.records(station) == []


# -- 7. slow clients do not hold connections -------------------------------------------------


@pytest.fixture
def guarded_server():
    """A uvicorn server with the options `qc serve` uses, header deadline 1 s, body 1 s."""
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        from serving.bodies import read_limited

        return {"bytes": len(await read_limited(request, 1 << 20, timeout_s=1.0))}

    settings = ServeSettings(header_timeout_s=1.0, keep_alive_s=1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_client_sending_headers_a_byte_at_a_time_is_cut_off(guarded_server):
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        started = time.monotonic()
        request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Slow: "
        closed = False
        for byte in request + b"a" * 100:
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > 4:
                break
        assert closed or _closed_within(sock, 1.0)
        assert time.monotonic() - started < 3.5


def test_an_idle_connection_is_closed_and_a_prompt_one_is_served(guarded_server):
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        assert _closed_within(sock, 3.0), "a connection that never sends a byte is closed"
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
        assert b"200 OK" in sock.recv(4096)


def test_headers_over_16_kb_are_431_and_a_keep_alive_request_after_a_body_is_served(guarded_server):
    from serving.slow_clients import MAX_HEADER_BYTES

    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 10))
        sock.settimeout(3)
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")
        assert _closed_within(sock, 1.0)
    # A body larger than the header bound, then a second request on the same connection: only
    # headers count, and the count starts again with each request.
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        body = b"b" * (3 * MAX_HEADER_BYTES)
        for _ in range(2):
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            sock.settimeout(3)
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200") and b'{"bytes":49152}' in answer, answer[:200]


def test_a_body_trickled_past_its_deadline_is_408(guarded_server):
    with socket.create_connection(("127.0.0.1", guarded_server)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        sock.settimeout(3)
        answer = b""
        for _ in range(30):  # a byte every 0.1 s: the body would take 100 s
            try:
                sock.send(b"x")
                time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(4096)
            sock.setblocking(True)
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


# -- 8. secrets and paths ----------------------------------------------------------------------


def test_a_bad_database_driver_never_prints_the_password():
    with pytest.raises(ConfigError) as error:
        Database("postgresql+nosuchdriver://qc:Secret@h/qc")
    assert "Secret" not in str(error.value) and "***" in str(error.value)
    assert error.value.__cause__ is None or "Secret" not in str(error.value.__cause__)


def test_qc_db_upgrade_with_a_bad_driver_prints_no_password(qc_home, monkeypatch):
    from typer.testing import CliRunner

    from qc.cli import app

    monkeypatch.setenv("QC_DATABASE_URL", "postgresql+nosuchdriver://qc:Secret@h/qc")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert isinstance(result.exception, ConfigError)
    assert "Secret" not in str(result.exception) and "Secret" not in result.output


def test_the_sqlite_database_and_its_wal_and_shm_are_private(qc_home):
    db = Database.from_settings(Settings(home=qc_home))
    with db.engine.connect() as conn:  # an open connection keeps -wal and -shm in place
        conn.exec_driver_sql("SELECT 1")
        for name in ("qc.db", "qc.db-wal", "qc.db-shm"):
            mode = stat.S_IMODE((qc_home / name).stat().st_mode)
            assert mode == 0o600, f"{name} is {oct(mode)}"
    db.dispose()


def test_an_existing_world_readable_database_is_narrowed_to_0600(qc_home):
    path = qc_home / "qc.db"
    Database.from_settings(Settings(home=qc_home)).dispose()
    path.chmod(0o644)
    Database.from_settings(Settings(home=qc_home)).dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_settings_are_read_from_qc_name_file(qc_home, tmp_path, monkeypatch):
    secret = tmp_path / "db-url"
    secret.write_text(f"sqlite:///{tmp_path}/from-secret.db\n")
    monkeypatch.setenv("QC_DATABASE_URL_FILE", str(secret))
    assert Settings().database_url == f"sqlite:///{tmp_path}/from-secret.db"
    monkeypatch.setenv("QC_DATABASE_URL", "sqlite:///other.db")
    with pytest.raises(ConfigError, match="both QC_DATABASE_URL and QC_DATABASE_URL_FILE"):
        Settings()
    monkeypatch.delenv("QC_DATABASE_URL")
    monkeypatch.setenv("QC_DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"QC_DATABASE_URL_FILE=.*cannot read it"):
        Settings()


def test_readyz_without_a_key_shows_no_absolute_paths(service):
    service.state.manager.last_error = f"{service.settings.models_dir}/default/v9/model.onnx: corrupt"
    try:
        body = service.client.get("/readyz").text
    finally:
        service.state.manager.last_error = None
    assert str(service.settings.home) not in body and "…/model.onnx: corrupt" in body


def test_a_station_key_sees_only_its_own_stations_metrics(service):
    mine, other = service.add_station(), service.add_station()
    for station in (mine, other):
        assert service.inspect(station).status_code == 200
    key = service.key("station", stations=(mine,))
    scoped = service.client.get("/metrics", headers=key).text
    assert f'station="{mine}"' in scoped and f'station="{other}"' not in scoped
    assert "qc_http_request_duration_seconds" in scoped  # service-wide series stay
    everything = service.client.get("/metrics", headers=service.key("reviewer")).text
    assert f'station="{other}"' in everything


def test_docs_load_nothing_from_a_cdn(service):
    page = service.client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    script = service.client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert service.client.get("/docs/assets/swagger-ui.css").status_code == 200
    assert service.client.get("/redoc").status_code == 404  # ReDoc has no offline bundle here


def test_docs_can_be_turned_off(start):
    quiet = start(docs=False)
    assert quiet.client.get("/docs").status_code == 404
    assert quiet.client.get("/openapi.json").status_code == 200  # clients still get the schema


# -- 9. unbounded inputs -----------------------------------------------------------------------


def test_a_megabyte_description_is_422(service):
    response = service.client.post("/v1/stations", json={"id": "st-long-desc", "description": "x" * 1_000_000},
                                   headers=service.admin)
    assert response.status_code == 422 and "1000" in response.text


def test_a_200000_point_roi_is_422(service):
    square = [[0, 0], [10, 0], [10, 10], [0, 10]] * 500  # 2,000 points
    response = service.client.post("/v1/stations", json={"id": "st-big-roi", "rules": {"roi": [square]}},
                                   headers=service.admin)
    assert response.status_code == 422 and "1000" in response.text
    huge = [[0, 0], [10, 0], [10, 10], [0, 10]] * 50_000  # 200,000: over the route's body limit (issue 25)
    response = service.client.post("/v1/stations", json={"id": "st-big-roi", "rules": {"roi": [huge]}},
                                   headers=service.admin)
    assert response.status_code == 413
    many = [[[0, 0], [1, 0], [1, 1]]] * 65
    response = service.client.post("/v1/stations", json={"id": "st-many-roi", "rules": {"ignore": many}},
                                   headers=service.admin)
    assert response.status_code == 422


def test_a_key_scoped_to_ten_thousand_stations_is_422(service):
    stations = [f"s{i}" for i in range(10_000)]
    response = service.client.post("/v1/keys", json={"role": "station", "stations": stations},
                                   headers=service.admin)
    assert response.status_code == 422 and "256" in response.text


@pytest.mark.parametrize("sent", [
    "Lot-Ä7-東京".encode(),                                          # raw UTF-8 bytes
    ("UTF-8''" + quote("Lot-Ä7-東京")).encode(),                     # RFC 8187
])
def test_a_utf8_part_id_is_stored_as_sent(service, sent):
    station = service.add_station()
    response = service.client.post(f"/v1/stations/{station}/inspect", content=frame(),
                                   headers=[("Authorization", service.admin["Authorization"]),
                                            ("Content-Type", "image/jpeg"), ("X-Part-Id", sent)])
    assert response.status_code == 200, response.text
    assert response.json()["part_id"] == "Lot-Ä7-東京"
    assert service.records(station)[0].part_id == "Lot-Ä7-東京"


def raw_post(service, path: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    """POST straight to the ASGI app with header bytes exactly as given (the test client
    re-encodes header values as UTF-8, which would hide what this checks)."""
    sent: list[dict] = []

    async def call() -> None:
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive():
            try:
                return next(messages)
            except StopIteration:
                await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "client": ("127.0.0.1", 9), "server": ("t", 80), "state": {},
                 "headers": [(b"content-length", str(len(body)).encode()), *headers]}
        await service.client.app(scope, receive, send)

    service.client.portal.call(call)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_part_id_that_is_not_utf8_is_refused_with_the_fix(service):
    station = service.add_station()
    status, body = raw_post(service, f"/v1/stations/{station}/inspect",
                            [(b"authorization", service.admin["Authorization"].encode()),
                             (b"content-type", b"image/jpeg"), (b"x-part-id", "Lot-Ä7".encode("latin-1"))],
                            frame())
    assert status == 400 and b"RFC 8187" in body, body
    assert service.records(station) == []


def test_time_filters_take_iso_8601_not_bare_numbers(service):
    response = service.client.get("/v1/inspections", params={"until": "0.5"}, headers=service.admin)
    assert response.status_code == 422
    fine = service.client.get("/v1/inspections", params={"until": "2026-01-01T00:00:00Z"}, headers=service.admin)
    assert fine.status_code == 200
