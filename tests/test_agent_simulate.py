"""`qc simulate`, as a specification: scenarios are parsed strictly, and a simulated line with
a network outage, a brightness drift and a blur reaches a real `qc serve` with every frame
recorded once, the effects visible in the stored images."""

from __future__ import annotations

import json
import os
import subprocess

import cv2
import httpx
import numpy as np
import pytest

from agent.simulate import ScenarioKind, SimulatedSource, SyntheticFrames, parse_scenarios
from inspection.errors import ConfigError
from tests.agent_fixtures import QC, Server, make_home


def test_scenarios_are_parsed_and_a_bad_one_names_the_fields_it_needs():
    step, outage = parse_scenarios(["defect-step:at=10,rate=0.5", "outage:at=3,frames=4"])
    assert (step.kind, step.at, step.values) == (ScenarioKind.DEFECT_STEP, 10, {"rate": 0.5})
    assert [outage.active(i) for i in range(2, 8)] == [False, True, True, True, True, False]
    with pytest.raises(ConfigError, match="needs exactly at, sigma"):
        parse_scenarios(["blur:at=3"])
    with pytest.raises(ConfigError, match="unknown scenario 'smoke'"):
        parse_scenarios(["smoke:at=1"])


def test_synthetic_frames_follow_the_seed_and_the_drift_brightens_them():
    plain = SimulatedSource(SyntheticFrames(n=6, defect_rate=0.0, seed=4, width=96, height=96), [])
    drifting = SimulatedSource(SyntheticFrames(n=6, defect_rate=0.0, seed=4, width=96, height=96),
                               parse_scenarios(["drift:at=2,per_frame=0.2"]))
    pairs = [(plain.read().image, drifting.read().image) for _ in range(6)]
    assert all(np.array_equal(a, b) for a, b in pairs[:3])  # the drift starts at 2 with a gain of 1.0
    assert all(b.mean() > a.mean() + 5 for a, b in pairs[3:])


@pytest.mark.slow
def test_a_simulated_line_with_an_outage_drift_and_blur_is_recorded_whole(tmp_path, untrained_model):
    home = make_home(tmp_path / "qc-home", untrained_model)
    server = Server(home)
    try:
        done = subprocess.run(
            [str(QC), "simulate", "--station", "failing", "--url", server.url, "--frames", "30", "--rate", "15",
             "--size", "160", "--spool", str(tmp_path / "spool"), "--deadline-ms", "30000",
             "--scenario", "outage:at=5,frames=10", "--scenario", "blur:at=20,sigma=4"],
            env={**os.environ, "QC_STATION_KEY": home.station_key}, capture_output=True, text=True, timeout=240,
            check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        records = server.records("failing")
        assert sorted(r["part_id"] for r in records) == [f"sim-{i:06d}" for i in range(30)]
        assert "simulated network outage" in done.stderr
        by_part = {r["part_id"]: r["id"] for r in records}

        def sharpness(part: str) -> float:
            data = httpx.get(f"{server.url}/v1/inspections/{by_part[part]}/image", headers=home.headers).content
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
            return float(cv2.Laplacian(image, cv2.CV_64F).var())

        before = np.median([sharpness(f"sim-{i:06d}") for i in range(15, 20)])
        after = np.median([sharpness(f"sim-{i:06d}") for i in range(20, 25)])
        assert after < before / 3, (before, after)
        answers = [json.loads(line) for line in done.stdout.splitlines()]
        assert len(answers) == 30 and {a["answer"] for a in answers} == {"NG"}
    finally:
        server.stop()
