"""Zero loss, as a specification: a station runs a few hundred frames through `qc station run`
while the service is stopped in the middle and the agent itself is killed with SIGKILL once;
after both start again, the service holds exactly one record per captured frame."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.agent_fixtures import QC, Server, make_home, write_frames

pytestmark = pytest.mark.slow

FRAMES = 300


def agent(home, server: Server, frames: Path, spool: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "QC_STATION_KEY": home.station_key}
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(QC), "station", "run", "--station", "failing", "--source", str(frames / "*.png"), "--url", server.url,
             "--spool", str(spool), "--part-id", "filename", "--fps", "12", "--deadline-ms", "60000",
             "--exit-when-done"],
            env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def spooled(spool: Path) -> int:
    return len(list((spool / "frames").glob("*.frame")))


def captured(spool: Path) -> int:
    ledger = spool / "captured.txt"
    return len(ledger.read_text().splitlines()) if ledger.is_file() else 0


def test_nothing_is_lost_or_doubled_when_the_service_stops_and_the_agent_is_killed_mid_run(
        tmp_path, untrained_model):
    home = make_home(tmp_path / "qc-home", untrained_model)
    server = Server(home)
    frames = tmp_path / "frames"
    write_frames(frames, FRAMES)
    spool, log = tmp_path / "spool", tmp_path / "agent.log"

    first = agent(home, server, frames, spool, log)
    second: subprocess.Popen | None = None
    try:
        wait_until(lambda: len(server.records("failing")) >= 40, 120, "40 records")
        server.stop()  # the service goes away mid-run; the agent keeps capturing into its spool
        wait_until(lambda: spooled(spool) >= 60, 60, "60 frames spooled while the service is down")
        depth_while_down = spooled(spool)
        first.send_signal(signal.SIGKILL)  # and the agent dies without a word
        first.wait(timeout=30)
        taken_before_kill = captured(spool)
        assert 0 < taken_before_kill < FRAMES, "the kill should land mid-run"

        server.start()
        second = agent(home, server, frames, spool, log)
        assert second.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
        server.stop()  # a failing test leaves no server behind

    server.start()  # a fresh start reads what was recorded
    try:
        records = server.records("failing")
    finally:
        server.stop()
    parts = [r["part_id"] for r in records]
    print(f"{len(records)} records; {depth_while_down} spooled while the service was down; "
          f"{taken_before_kill} captured before kill -9")
    assert sorted(parts) == [f"part-{i:05d}" for i in range(FRAMES)], "none lost, none duplicated"
    assert spooled(spool) == 0
    report = json.loads([line for line in log.read_text().splitlines() if line.startswith('{"report"')][-1])
    assert report["report"]["dropped"] == 0
    assert "cannot reach" in log.read_text()  # the outage was seen and waited out, with backoff
