"""`qc serve --workers N`, as a specification: N processes answer on one port and share the
database and the image store; an Idempotency-Key makes one record whichever processes its
retries reach; a promotion made through one process reaches all of them; SIGTERM stops them
all, each recording the frames it took."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from inspection.models.registry import Registry
from inspection.rules import StationRules
from inspection.settings import Settings
from inspection.store.database import Database
from inspection.store.keys import KeyStore
from inspection.store.records import RecordStore
from serving.launch import ServerDidNotStart, free_port, wait_ready
from tests.service_harness import EVALUATED, HOLDOUT
from tests.test_durability import FAIL_ALL, frame

pytestmark = pytest.mark.slow

QC = Path(sys.executable).with_name("qc")
PROCESSES = 2


@pytest.fixture
def served(tmp_path, untrained_model):
    """`qc serve --workers 2` on a QC_HOME with v1 in production and v2 registered (both pass
    the promotion gate), a failing station and an admin key. Yields (url, headers, log path,
    the supervisor process, QC_HOME); everything still running is killed afterwards."""
    settings = Settings(home=tmp_path / "qc-home", database_url="")
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    for _ in range(2):
        registry.add("default", untrained_model, card=EVALUATED)
    registry.set_production("default", "v1")
    registry.set_holdout("default", HOLDOUT)
    db = Database.from_settings(settings)
    RecordStore(db).add_station("failing", rules=StationRules.parse(FAIL_ALL))
    admin = KeyStore(db).create(role="admin", name="workers test")
    db.dispose()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}
    env.update({"QC_HOME": str(settings.home), "QC_PROVIDERS": "cpu", "QC_MODEL_POLL_S": "0.3",
                "QC_THREADS": "1", "QC_LOG_JSON": "true"})
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(QC), "serve", "--port", str(port), "--workers", str(PROCESSES)],
                                   env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, process, timeout=120, log_path=log)
            _wait_all_ready(log, timeout=120)
        except ServerDidNotStart as error:
            pytest.fail(str(error))
        yield url, {"Authorization": f"Bearer {admin}"}, log, process, settings.home
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def log_lines(log: Path) -> list[dict]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def _wait_all_ready(log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len({entry["pid"] for entry in log_lines(log) if entry["message"] == "ready"}) < PROCESSES:
        assert time.monotonic() < deadline, f"not every process started:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def post(url: str, headers: dict, data: bytes, key: str) -> httpx.Response:
    """On a connection of its own: the kernel hands each new connection to one of the processes."""
    return httpx.post(f"{url}/v1/stations/failing/inspect", content=data, timeout=60,
                      headers={**headers, "Content-Type": "image/jpeg", "Idempotency-Key": key})


def pids_that_answered(log: Path, route: str) -> set[int]:
    return {entry["pid"] for entry in log_lines(log)
            if entry["message"] == "request" and entry.get("route") == route and entry.get("status") == 200}


def test_every_process_answers_frames_and_they_share_the_database_and_image_store(served):
    url, headers, log, _, home = served
    answers = [post(url, headers, frame(i), f"frame-{i}") for i in range(30)]
    assert {r.status_code for r in answers} == {200}
    assert len(pids_that_answered(log, "/v1/stations/{station}/inspect")) == PROCESSES
    for i, answer in enumerate(answers):  # any process finds any record and its image
        image = httpx.get(f"{url}/v1/inspections/{answer.json()['id']}/image", headers=headers, timeout=30)
        assert image.status_code == 200 and image.content == frame(i)
    store = RecordStore(Database(f"sqlite:///{home / 'qc.db'}"))
    assert store.count() == 30


def test_one_idempotency_key_makes_one_record_whichever_processes_the_retries_reach(served):
    url, headers, log, _, home = served
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def retry() -> None:
        response = post(url, headers, frame(77), "the-same-frame")
        with lock:
            answers.append(response)

    for _ in range(3):  # rounds of concurrent retries on fresh connections
        threads = [threading.Thread(target=retry) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["id"] for r in answers}) == 1
    assert len(pids_that_answered(log, "/v1/stations/{station}/inspect")) == PROCESSES
    store = RecordStore(Database(f"sqlite:///{home / 'qc.db'}"))
    assert store.find_by_key("failing", "the-same-frame").id == answers[0].json()["id"]
    assert store.count() == 1


def test_a_promotion_through_one_process_reaches_all_of_them(served):
    url, headers, log, _, _ = served
    assert {post(url, headers, frame(i), f"before-{i}").json()["model"]["version"] for i in range(6)} == {"v1"}
    promoted = httpx.post(f"{url}/v1/models/default/promote", json={"version": "v2"}, headers=headers, timeout=60)
    assert promoted.status_code == 200, promoted.text
    deadline = time.monotonic() + 30
    while len({e["pid"] for e in log_lines(log) if e["message"].startswith("swapped model")}) < PROCESSES:
        assert time.monotonic() < deadline, f"not every process swapped:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
    after = [post(url, headers, frame(100 + i), f"after-{i}") for i in range(20)]
    assert {r.json()["model"]["version"] for r in after} == {"v2"}
    assert {httpx.get(f"{url}/readyz", timeout=10).json()["model"] for _ in range(10)} == {"default@v2"}


def test_sigterm_stops_every_process_after_recording_what_they_took(served):
    url, headers, log, process, home = served
    answers: list[httpx.Response | None] = []
    stop = threading.Event()

    def station(worker: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                answers.append(post(url, headers, frame(1000 * worker + i), f"w{worker}-{i}"))
            except httpx.TransportError:
                answers.append(None)
                time.sleep(0.01)
            i += 1

    threads = [threading.Thread(target=station, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=90)
    stop.set()
    for thread in threads:
        thread.join()
    assert code in (0, -signal.SIGTERM), log.read_text()[-3000:]
    answered = [r for r in answers if r is not None]
    assert answered and {r.status_code for r in answered} <= {200, 503}
    store = RecordStore(Database(f"sqlite:///{home / 'qc.db'}"))
    for response in answered:
        if response.status_code == 200:
            assert store.inspection(response.json()["id"]).verdict == response.json()["verdict"]
    assert len([e for e in log_lines(log) if e["message"] == "stopped"]) == PROCESSES
