"""The station agent's parts, as a specification: its config refuses what would be unsafe, the
spool keeps frames whole and in capture order across restarts and counts every drop, a
broken source is one message and a slow retry (never a crash loop or a busy loop), a folder
file is taken once written completely, a trigger fires when it should.

The agent against a real `qc serve` (spool under outages and kill -9, the line deadline, MQTT
and OPC UA) is in tests/test_agent_spool.py and tests/test_agent_line.py."""

from __future__ import annotations

import io
import logging
import os
import queue
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.backoff import Backoff
from agent.client import ServiceClient
from agent.config import (
    AgentConfig,
    DropPolicy,
    SourceConfig,
    SourceKind,
    TriggerConfig,
    infer_source_kind,
)
from agent.runner import Agent
from agent.sources import FileSource, SourceError, SourceExhausted
from agent.spool import MAX_KEY, Spool, SpooledFrame, idempotency_key
from agent.triggers import FrameGate, HttpListener, StdinListener
from inspection.errors import ConfigError
from serving.launch import free_port
from tests.agent_fixtures import write_frames
from tests.conftest import REPO


def frame(i: int, part: str | None = None) -> SpooledFrame:
    return SpooledFrame.new(f"jpeg-{i}".encode() * 10, capture_ns=1_700_000_000_000_000_000 + i, part_id=part)


# -- config ----------------------------------------------------------------------------------


def test_a_safe_default_of_ok_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match=r"line.safe_default: .*never OK"):
        AgentConfig.load(overrides={"station": "s1", "source": {"uri": "0"}, "line": {"safe_default": "OK"}})


def test_the_config_file_and_flags_merge_and_a_missing_field_is_named(tmp_path):
    path = tmp_path / "station.yaml"
    path.write_text("station: press-3\nsource: {uri: 'rtsp://10.0.0.1/s'}\nline: {deadline_ms: 500}\n")
    config = AgentConfig.load(path, overrides={"jpeg_quality": 70, "line": {"safe_default": "REVIEW"}})
    assert (config.station, config.source.kind, config.jpeg_quality) == ("press-3", SourceKind.STREAM, 70)
    assert (config.line.deadline_ms, config.line.safe_default.value) == (500, "REVIEW")
    path.write_text("source: {uri: '0'}\n")
    with pytest.raises(ConfigError, match=rf"{path}.*station: Field required"):
        AgentConfig.load(path)


@pytest.mark.parametrize(("uri", "kind"), [("0", SourceKind.CAMERA), ("rtsp://cam/1", SourceKind.STREAM),
                                           ("shots/*.png", SourceKind.GLOB), ("line.mp4", SourceKind.VIDEO)])
def test_the_source_kind_is_read_from_the_uri(uri, kind):
    assert infer_source_kind(uri) is kind


def test_an_opcua_output_without_an_answer_node_is_refused():
    with pytest.raises(ConfigError, match=r"nodes\.answer"):
        AgentConfig.load(overrides={"station": "s", "source": {"uri": "0"},
                                    "line": {"outputs": [{"kind": "opcua", "endpoint": "opc.tcp://plc:4840"}]}})


# -- idempotency keys and backoff ------------------------------------------------------------


def test_the_idempotency_key_is_the_part_and_the_capture_time_and_fits_the_service():
    assert idempotency_key("A123", 1_700_000_000_123_456_789) == "A123@20231114T221320.123456789Z"
    assert idempotency_key(None, 5) != idempotency_key(None, 6)
    long = idempotency_key("x" * 128, 5)
    assert len(long) <= MAX_KEY and long == idempotency_key("x" * 128, 5)


def test_backoff_grows_to_its_cap_with_jitter_and_never_spins():
    backoff = Backoff(initial_s=0.5, max_s=8, seed=3)
    waits = [backoff.next() for _ in range(40)]
    assert all(0.05 <= w <= 8 for w in waits)
    assert max(waits[10:]) > 4  # reached near the cap
    assert len({round(w, 3) for w in waits}) > 30  # jittered, not a fixed schedule
    assert backoff.next(at_least_s=7.5) >= 7.5  # a Retry-After is honoured
    backoff.reset()
    assert backoff.next() <= 0.5


# -- the spool -------------------------------------------------------------------------------


def test_the_spool_gives_frames_back_whole_and_in_capture_order_after_a_restart(tmp_path):
    spool = Spool(tmp_path)
    for i in range(5):
        assert spool.put(frame(i, part=f"p{i}"))
    first = spool.oldest()
    spool.remove(first)
    (spool.frames_dir / ".incoming-0000000000000099").write_bytes(b"half a fra")  # a write cut by a crash
    reopened = Spool(tmp_path)
    assert reopened.depth == 4
    assert not list(reopened.frames_dir.glob(".incoming-*"))
    got = []
    while (f := reopened.oldest()) is not None:
        got.append((f.part_id, f.jpeg, f.key))
        reopened.remove(f)
    assert got == [(f"p{i}", frame(i).jpeg, idempotency_key(f"p{i}", frame(i).capture_ns)) for i in range(1, 5)]
    assert reopened.put(frame(9)) and reopened.oldest().seq > first.seq  # numbering goes on


@pytest.mark.parametrize(("policy", "kept"), [(DropPolicy.OLDEST, [2, 3, 4]), (DropPolicy.NEWEST, [0, 1, 2])])
def test_a_full_spool_drops_by_its_policy_and_counts_every_drop_across_restarts(tmp_path, policy, kept, caplog):
    spool = Spool(tmp_path, max_frames=3, drop_policy=policy)
    results = [spool.put(frame(i)) for i in range(5)]
    assert results == ([True] * 5 if policy is DropPolicy.OLDEST else [True, True, True, False, False])
    remaining = []
    while (f := spool.oldest()) is not None:
        remaining.append(f.capture_ns - frame(0).capture_ns)
        spool.remove(f)
    assert remaining == kept
    assert Spool(tmp_path).counters["dropped"] == 2
    assert any("spool full" in r.message and r.levelno == logging.ERROR for r in caplog.records)


def test_a_frame_survives_kill_9_of_the_writer_once_put_returned(tmp_path):
    """A child process puts frames and prints each seq after put() returns; we kill -9 it
    mid-stream: every printed frame is whole in the spool."""
    code = ("import sys; from pathlib import Path; from agent.spool import Spool, SpooledFrame\n"
            "s = Spool(Path(sys.argv[1]))\n"
            "for i in range(100000):\n"
            "    f = SpooledFrame.new(bytes([i % 251]) * 20000, capture_ns=i)\n"
            "    s.put(f); print(f.seq, flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    acknowledged = [int(child.stdout.readline()) for _ in range(30)]
    child.kill()
    child.wait()
    spool = Spool(tmp_path)
    seen = {}
    while (f := spool.oldest()) is not None:
        seen[f.seq] = f
        spool.remove(f)
    assert set(acknowledged) <= set(seen)
    assert all(f.jpeg == bytes([f.capture_ns % 251]) * 20000 for f in seen.values())


# -- sources ---------------------------------------------------------------------------------


def test_a_folder_file_is_taken_once_it_is_written_completely_and_only_once(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    ledger = tmp_path / "captured.txt"
    source = FileSource(SourceConfig(uri=str(folder), settle_s=0.3, poll_s=0.05), ledger=ledger)
    source.open()
    data = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    path = folder / "part-1.png"
    with open(path, "wb") as file:  # a camera writing slowly
        file.write(data[: len(data) // 2])
        file.flush()
        for _ in range(4):
            time.sleep(0.1)
            assert source.read() is None
        file.write(data[len(data) // 2:])
    got = None
    for _ in range(40):
        got = source.read()
        if got is not None:
            break
        time.sleep(0.05)
    assert got is not None and got.name == "part-1" and got.image.shape == (64, 64, 3)
    source.taken(got)
    time.sleep(0.5)
    assert source.read() is None
    again = FileSource(SourceConfig(uri=str(folder), settle_s=0.0, poll_s=0.01), ledger=ledger)
    again.open()
    time.sleep(0.05)
    assert again.read() is None and again.read() is None  # the ledger remembers


def test_a_glob_gives_every_file_in_name_order_then_says_it_is_done(tmp_path):
    write_frames(tmp_path, 3)
    (tmp_path / "part-00001x.png").write_bytes(b"not an image")
    source = FileSource(SourceConfig(uri=str(tmp_path / "*.png"), poll_s=0.01))
    source.open()
    names, errors = [], []
    while True:
        try:
            got = source.read()
        except SourceExhausted:
            break
        except SourceError as error:
            errors.append(str(error))
            continue
        if got is not None:
            names.append(got.name)
            source.taken(got)
    assert names == ["part-00000", "part-00001", "part-00002"]
    assert len(errors) == 1 and "part-00001x.png" in errors[0] and "not a readable image" in errors[0]


@pytest.mark.parametrize("uri", ["7", "{tmp}/missing-folder", "{tmp}/missing.mp4"])
def test_a_bad_source_is_one_clear_message_and_a_slow_retry_never_a_crash_or_a_busy_loop(tmp_path, uri, caplog):
    config = AgentConfig.load(overrides={
        "station": "s1", "service": {"url": f"http://127.0.0.1:{free_port()}", "key": "k"},
        "source": {"uri": uri.format(tmp=tmp_path), "retry_initial_s": 0.2, "retry_max_s": 0.4,
                   "kind": "folder" if "folder" in uri else None},
        "spool": {"dir": str(tmp_path / "spool")}, "line": {"outputs": []}})
    agent = Agent(config, stdout=io.StringIO())
    opened = []
    real_open = agent.source.open
    agent.source.open = lambda: (opened.append(time.monotonic()), real_open())[1]
    caplog.set_level(logging.INFO, logger="qc.agent")
    runner = __import__("threading").Thread(target=agent.run)
    runner.start()
    time.sleep(2.0)
    agent.stop()
    runner.join(timeout=10)
    agent.close()
    assert not runner.is_alive()
    messages = [r.getMessage() for r in caplog.records if r.name == "qc.agent" and r.levelno >= logging.ERROR]
    assert len(messages) == 1, messages
    assert "retrying with backoff" in messages[0]
    assert {"7": "camera 7", "missing-folder": "no such folder", "missing.mp4": "no such file"}[
        Path(uri).name] in messages[0]
    assert 3 <= len(opened) <= 25, f"{len(opened)} tries in 2 s"


# -- triggers --------------------------------------------------------------------------------


def test_nth_takes_one_frame_in_n_and_motion_only_changed_pictures():
    still = np.full((120, 160, 3), 90, np.uint8)
    nth = FrameGate(TriggerConfig(mode="nth", n=3))
    assert [nth.wants(still) for _ in range(7)] == [True, False, False, True, False, False, True]
    motion = FrameGate(TriggerConfig(mode="motion", motion_threshold=0.05))
    moved = still.copy()
    moved[20:100, 40:120] = 250
    noisy = np.clip(still.astype(int) + np.random.default_rng(0).integers(-6, 7, still.shape), 0, 255).astype(np.uint8)
    assert [motion.wants(x) for x in (still, noisy, still, moved, moved, still)] == [
        True, False, False, True, False, True]


def test_stdin_and_http_triggers_carry_the_part_id():
    import httpx

    events: queue.Queue = queue.Queue()
    StdinListener(events, io.StringIO("A-1\n\n{\"part_id\": \"B-2\"}\n"))
    got = [events.get(timeout=5).part_id for _ in range(3)]
    assert got == ["A-1", None, "B-2"]
    listener = HttpListener(events, "127.0.0.1", 0)
    try:
        assert httpx.post(f"http://127.0.0.1:{listener.port}/trigger?part_id=C-3").status_code == 202
        assert httpx.post(f"http://127.0.0.1:{listener.port}/trigger", json={"part_id": "D-4"}).status_code == 202
        assert httpx.post(f"http://127.0.0.1:{listener.port}/other").status_code == 404
        assert [events.get(timeout=5).part_id for _ in range(2)] == ["C-3", "D-4"]
    finally:
        listener.stop()


def test_the_agent_never_imports_fastapi_torch_or_ultralytics():
    code = ("import sys, agent.runner, agent.codes, agent.simulate, qc.commands.station, qc.commands.simulate; "
            "print([m for m in ('fastapi', 'torch', 'ultralytics', 'starlette') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_service_client_sorts_answers_without_raising(tmp_path):
    client = ServiceClient(f"http://127.0.0.1:{free_port()}", key="k", station="s", connect_timeout_s=0.5)
    answer = client.inspect(frame(1))
    assert answer.kind.value == "retry" and "cannot reach" in answer.reason
    client.close()


def test_a_part_id_is_read_from_a_datamatrix_in_the_frame_and_none_when_there_is_none():
    import zxingcpp

    from agent.codes import CodeReader

    code = np.array(zxingcpp.create_barcode("SN-000042", zxingcpp.BarcodeFormat.DataMatrix).to_image(scale=4))
    frame = np.full((480, 640, 3), 140, np.uint8)
    frame[200:200 + code.shape[0], 300:300 + code.shape[1]] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
    assert CodeReader().read(frame) == "SN-000042"
    assert CodeReader("DataMatrix").read(frame) == "SN-000042"
    assert CodeReader("QRCode").read(frame) is None
    assert CodeReader().read(np.full((480, 640, 3), 140, np.uint8)) is None
