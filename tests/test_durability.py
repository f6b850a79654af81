"""Durability of a real server process (`qc serve`), as a specification: an acknowledged verdict
(HTTP 200) is on disk, whatever happens to the process afterwards; SIGTERM lets the frames in
flight finish and be recorded; a station that retries its unacknowledged frames with their
Idempotency-Keys ends with exactly one record per frame."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from inspection.models.registry import Registry
from inspection.rules import StationRules
from inspection.settings import Settings
from inspection.store.database import Database
from inspection.store.keys import KeyStore
from inspection.store.records import RecordStore
from serving.launch import ServerDidNotStart, free_port, wait_ready

pytestmark = pytest.mark.slow

QC = Path(sys.executable).with_name("qc")
# Uvicorn shuts down gracefully, then re-raises the SIGTERM it caught: exit status -15 (or 0).
STOPPED_BY_SIGTERM = (0, -signal.SIGTERM)
FAIL_ALL = {"default": {"fail_conf": 1e-6, "review_conf": 1e-6}}  # the untrained model fails every frame


# -- a real server -------------------------------------------------------------------------


@dataclass
class Home:
    path: Path
    admin: str  # the admin's key

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}


@pytest.fixture
def home(tmp_path, untrained_model) -> Home:
    """A QC_HOME with a model in production, a failing and a passing station, an admin key."""
    settings = Settings(home=tmp_path / "qc-home", database_url="")
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    registry.add("default", untrained_model)
    registry.set_production("default", "v1")
    db = Database.from_settings(settings)
    store = RecordStore(db)
    store.add_station("failing", rules=StationRules.parse(FAIL_ALL))
    store.add_station("passing", rules=StationRules())
    admin = KeyStore(db).create(role="admin", name="durability test")
    db.dispose()
    return Home(settings.home, admin)


class Server:
    """`qc serve` on 127.0.0.1 and a free port, its output in a log file beside QC_HOME."""

    def __init__(self, home: Home, **env: str) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}
        environment.update({
            "QC_HOME": str(home.path), "QC_HOST": "127.0.0.1", "QC_PORT": str(self.port),
            "QC_PROVIDERS": "cpu", "QC_MODEL_POLL_S": "3600", "QC_PASS_SAMPLE_RATE": "0", **env,
        })
        self.log = home.path.parent / f"server-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([str(QC), "serve"], env=environment, cwd=home.path.parent,
                                            stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        try:
            wait_ready(self.url, self.process, timeout=timeout, log_path=self.log)
        except ServerDidNotStart as error:  # exit code and log tail; killed on timeout
            pytest.fail(str(error))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def servers():
    """start(home, **env) -> a running Server; every one still running is killed afterwards."""
    started: list[Server] = []

    def start(home: Home, **env: str) -> Server:
        started.append(Server(home, **env))
        return started[-1]

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def frame(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


@dataclass
class Posted:
    key: str
    station: str
    data: bytes
    sent: float
    answered: float | None = None
    status: int | None = None  # None: no answer (connection refused, reset, timed out)
    body: dict = field(default_factory=dict)


class Load:
    """Threads posting distinct frames, each with its own Idempotency-Key, until stopped."""

    def __init__(self, server: Server, threads: int = 4) -> None:
        self.server = server
        self.posted: list[Posted] = []
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self, worker: int) -> None:
        with httpx.Client(base_url=self.server.url, headers=self.server.home.headers, timeout=30) as client:
            i = 0
            while not self.stopped.is_set():
                key = f"w{worker}-{i}"
                station = ("failing", "passing")[i % 2]
                post = Posted(key, station, frame(1000 * worker + i), time.monotonic())
                i += 1
                try:
                    response = client.post(f"/v1/stations/{station}/inspect", content=post.data,
                                           headers={"Content-Type": "image/jpeg", "Idempotency-Key": key})
                    post.status, post.answered = response.status_code, time.monotonic()
                    if response.status_code == 200:
                        post.body = response.json()
                except httpx.TransportError:
                    post.answered = time.monotonic()
                    time.sleep(0.01)
                with self._lock:
                    self.posted.append(post)

    @property
    def acknowledged(self) -> list[Posted]:
        with self._lock:
            return [p for p in self.posted if p.status == 200]

    def wait_for(self, acknowledged: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < acknowledged:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} frames acknowledged"
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopped.set()
        for thread in self._threads:
            thread.join(timeout=60)


# -- the specification ---------------------------------------------------------------------


def test_every_acknowledged_verdict_survives_kill_9_and_retries_leave_one_record_per_frame(home, servers):
    server = servers(home)
    load = Load(server)
    load.wait_for(40)
    server.stop(signal.SIGKILL)  # mid-load: frames in flight, a commit possibly half-way
    load.stop()
    acknowledged = load.acknowledged
    assert len(acknowledged) >= 40
    unanswered = [p for p in load.posted if p.status is None]
    print(f"{len(acknowledged)} acknowledged, {len(unanswered)} unanswered at kill -9")
    assert {p.status for p in load.posted} <= {200, None}

    with sqlite3.connect(home.path / "qc.db") as conn:  # the database file is sound after the kill
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    restarted = servers(home)
    with httpx.Client(base_url=restarted.url, headers=home.headers, timeout=30) as client:
        for post in acknowledged:
            found = client.get(f"/v1/inspections/{post.body['id']}")
            assert found.status_code == 200, f"acknowledged {post.key} lost after kill -9"
            assert found.json()["verdict"] == post.body["verdict"]
            assert found.json()["station"] == post.station
            if post.body["verdict"] != "PASS":
                image = client.get(f"/v1/inspections/{post.body['id']}/image")
                assert image.status_code == 200 and image.content == post.data, f"image of {post.key}"
        assert {p.body["verdict"] for p in acknowledged} == {"FAIL", "PASS"}

        # The stations retry what was never answered, and (needlessly) one acknowledged frame.
        for post in [*unanswered, acknowledged[0]]:
            retry = client.post(f"/v1/stations/{post.station}/inspect", content=post.data,
                                headers={"Content-Type": "image/jpeg", "Idempotency-Key": post.key})
            assert retry.status_code == 200
            if post.status == 200:
                assert retry.json()["id"] == post.body["id"]
                assert retry.headers["idempotent-replayed"] == "true"
        keys_posted = {(p.station, p.key) for p in load.posted}
        recorded = []
        for station in ("failing", "passing"):
            page = client.get("/v1/inspections", params={"station": station, "limit": 500}).json()
            assert page["next_cursor"] is None
            recorded += [(station, item["id"]) for item in page["items"]]
    assert len(recorded) == len(keys_posted), "one record per frame, no duplicates, none missing"
    assert restarted.stop() in STOPPED_BY_SIGTERM


def test_sigterm_lets_frames_in_flight_finish_and_records_them(home, servers):
    # Frames wait up to 150 ms in the micro-batcher, so several are in flight at any moment.
    server = servers(home, QC_MAX_WAIT_MS="150", QC_MAX_BATCH="64")
    load = Load(server, threads=6)
    load.wait_for(12)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    exit_code = server.process.wait(timeout=60)
    load.stop()

    assert exit_code in STOPPED_BY_SIGTERM, server.log.read_text()[-3000:]
    answered = [p for p in load.posted if p.status is not None]
    assert {p.status for p in answered} == {200}, "a frame in flight at SIGTERM was refused or failed"
    in_flight = [p for p in answered if p.sent < signalled < p.answered]
    print(f"{len(answered)} answered, {len(in_flight)} of them in flight at SIGTERM, "
          f"{len(load.posted) - len(answered)} refused connections after it")
    assert in_flight, "no frame was in flight at SIGTERM; the test proved nothing"
    store = RecordStore(Database(f"sqlite:///{home.path / 'qc.db'}"))
    for post in answered:
        record = store.inspection(post.body["id"])
        assert (record.verdict, record.idempotency_key) == (post.body["verdict"], post.key)
    assert '"message": "stopped"' in server.log.read_text()  # the lifespan ran to its end
