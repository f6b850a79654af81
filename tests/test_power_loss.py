"""Power-loss durability, measured on a real `qc serve` process, not assumed: before the first
byte of a frame's answer is written to the socket, the frame's image file, the folder entry
that names it and the record are on stable storage.

kill -9 (tests/test_durability.py) proves a crash loses nothing; a power cut also loses what
the kernel had not written out. So the server runs under `strace -f`, which logs every
fsync/fdatasync, rename and socket write of every thread in order, and the test reads the
order back:

- SQLite (WAL, synchronous=FULL): fsync of the image's temporary file, its rename to the
  content-addressed name, fsync of the image's folder, then an fsync/fdatasync of qc.db-wal
  (the commit), and only after all of them the first write of "HTTP/1.1 200".
- PostgreSQL: the server fsyncs its own WAL before it answers COMMIT (`synchronous_commit=on`,
  `fsync=on`, the defaults, checked here on the server the test uses). What this process must
  show is that it waited for that answer: the COMMIT is sent and its CommandComplete received
  before the first byte of the HTTP answer is written. That is what we rely on, and it holds
  only while the server keeps those two settings (docs/serving.md).

Needs strace (Debian package `strace`, installed by .ci/run); skipped without it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from inspection.models.registry import Registry
from inspection.rules import StationRules
from inspection.settings import Settings
from inspection.store.database import Database
from inspection.store.keys import KeyStore
from inspection.store.records import RecordStore
from serving.launch import free_port, wait_ready
from tests.service_harness import FAIL_ALL, frame

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt-get install strace)")]

QC = Path(sys.executable).with_name("qc")
SYSCALLS = "fsync,fdatasync,rename,renameat,renameat2,write,writev,sendto,sendmsg,recvfrom,read"


@dataclass
class Call:
    index: int  # position in the trace: strace -f writes one line per completed call, in order
    name: str
    line: str


def parse(trace: Path) -> list[Call]:
    """The completed syscalls of a `strace -f -yy` log, in the order they completed (an
    interrupted call's line is replaced by its "resumed" line, where it completed)."""
    pending: dict[str, str] = {}
    calls: list[Call] = []
    for raw in trace.read_text(errors="replace").splitlines():
        match = re.match(r"^(\d+)\s+(.*)$", raw)
        if not match:
            continue
        pid, rest = match.groups()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest.removesuffix("<unfinished ...>")
            continue
        resumed = re.match(r"^<\.\.\. (\w+) resumed>(.*)$", rest)
        if resumed:
            rest = pending.pop(pid, resumed.group(1) + "(") + resumed.group(2)
        name = re.match(r"^(\w+)\(", rest)
        if name:
            calls.append(Call(len(calls), name.group(1), rest))
    return calls


def first(calls: list[Call], name: str | tuple[str, ...], *needles: str, after: int = -1) -> Call:
    names = (name,) if isinstance(name, str) else name
    for call in calls:
        if call.index > after and call.name in names and all(n in call.line for n in needles):
            return call
    raise AssertionError(f"no {names} with {needles} after call {after} in the trace")


@dataclass
class Traced:
    url: str
    headers: dict[str, str]
    trace: Path
    home: Path
    process: subprocess.Popen


def serve_traced(tmp_path: Path, model: Path, database_url: str = "") -> Traced:
    home = tmp_path / "qc-home"
    settings = Settings(home=home, database_url=database_url)
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    registry.add("default", model)
    registry.set_production("default", "v1")
    db = Database.from_settings(settings)
    admin = KeyStore(db).create(role="admin", name="power-loss test")
    RecordStore(db).add_station("line1", rules=StationRules.parse(FAIL_ALL))
    db.dispose()
    port, trace, log = free_port(), tmp_path / "strace.log", tmp_path / "serve.log"
    env = {**os.environ, "QC_HOME": str(home), "QC_DATABASE_URL": database_url, "QC_PROVIDERS": "cpu",
           "QC_LOG_JSON": "false", "QC_MODEL_POLL_S": "3600"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["strace", "-f", "-yy", "-s", "48", "-e", f"trace={SYSCALLS}", "-o", str(trace),
             str(QC), "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: stop() ends strace and the server alike
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, process, timeout=180, log_path=log)
    return Traced(url, {"Authorization": f"Bearer {admin}"}, trace, home, process)


def stop(traced: Traced) -> None:
    """SIGTERM to strace and the server together: strace alone would detach on SIGTERM and leave
    the server running after the test. The server drains and exits; past 30 s it is killed."""
    group = traced.process.pid  # start_new_session: strace leads its own process group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            os.killpg(group, 0)  # ProcessLookupError once every process of the group is gone
            time.sleep(0.2)
        os.killpg(group, signal.SIGKILL)
    traced.process.wait()


def post_and_trace(traced: Traced) -> tuple[dict, list[Call], Call, Call]:
    """POST one FAIL frame (its image is stored); the parsed trace, the request's read and the
    first write of its answer."""
    marker = "power-loss-frame-1"
    response = httpx.post(f"{traced.url}/v1/stations/line1/inspect", content=frame(seed=1234),
                          headers={**traced.headers, "Content-Type": "image/jpeg", "X-Part-Id": marker},
                          timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "FAIL" and body["image_stored"]
    stop(traced)  # strace's log is complete once the server has exited
    calls = parse(traced.trace)
    request = first(calls, ("read", "recvfrom"), "POST /v1/stations/line1/inspect")
    answer = first(calls, ("write", "writev", "sendto", "sendmsg"), "TCP:", "HTTP/1.1 200", after=request.index)
    return body, calls, request, answer


def assert_image_durable_before(calls: list[Call], request: Call, answer: Call) -> Call:
    """The image's temp file fsynced, renamed to its content address, its folder fsynced: all
    after the request arrived and before the answer's first byte. Returns the folder fsync."""
    data = first(calls, ("fsync", "fdatasync"), "/images/", ".incoming-", after=request.index)
    renamed = first(calls, ("rename", "renameat", "renameat2"), ".incoming-", after=data.index)
    target = re.findall(r'"([^"]+/images/[^"]+)"', renamed.line)[-1]
    folder = first(calls, ("fsync", "fdatasync"), f"<{os.path.dirname(target)}>", after=renamed.index)
    assert folder.index < answer.index, "the image's folder entry was synced only after the answer"
    return folder


def test_sqlite_the_image_its_folder_and_the_record_are_synced_before_the_answer(tmp_path, untrained_model):
    traced = serve_traced(tmp_path, untrained_model)
    try:
        body, calls, request, answer = post_and_trace(traced)
    finally:
        stop(traced)
    image_synced = assert_image_durable_before(calls, request, answer)
    wal = first(calls, ("fsync", "fdatasync"), "qc.db-wal>", after=image_synced.index)
    assert wal.index < answer.index, "the record's WAL frame was synced only after the answer"
    assert body["timings"]["store_ms"] > 0


@pytest.fixture
def postgres_server_syncs(postgres_url):
    """The PostgreSQL under test fsyncs its WAL before answering COMMIT (what we rely on)."""
    from sqlalchemy import text

    db = Database(postgres_url)
    with db.engine.connect() as conn:
        settings = {name: conn.execute(text(f"SHOW {name}")).scalar() for name in ("fsync", "synchronous_commit")}
    db.dispose()
    assert settings == {"fsync": "on", "synchronous_commit": "on"}, settings
    return postgres_url


@pytest.mark.postgres
def test_postgres_the_image_is_synced_and_the_commit_acknowledged_before_the_answer(
        tmp_path, untrained_model, postgres_server_syncs):
    traced = serve_traced(tmp_path, untrained_model, database_url=postgres_server_syncs)
    try:
        _, calls, request, answer = post_and_trace(traced)
    finally:
        stop(traced)
    image_synced = assert_image_durable_before(calls, request, answer)
    # libpq sends the INSERT and then COMMIT as simple queries on the server's socket, and the
    # server's CommandComplete for COMMIT ("C" ... "COMMIT") comes back only after its WAL flush.
    commit = first(calls, ("sendto", "write"), "COMMIT", after=image_synced.index)
    acknowledged = first(calls, ("recvfrom", "read"), "COMMIT", after=commit.index)
    assert acknowledged.index < answer.index, "the answer was written before COMMIT was acknowledged"
