"""A station PC installs `qc[agent]` and nothing heavier: the agent runs without torch,
Ultralytics or FastAPI (as tests/test_packaging.py proves for `qc[cpu]` and `qc predict`)."""

from __future__ import annotations

import subprocess
import venv

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "ultralytics", "fastapi", "starlette", "uvicorn", "onnxruntime", "albumentations")


@pytest.mark.slow
def test_qc_station_runs_in_a_venv_with_only_the_agent_extra(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{REPO}[agent]"],
                             capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stderr[-2000:]
    installed = subprocess.run([str(python), "-c", (f"import importlib.util as u; print([m for m in {HEAVY!r} "
                                                    "if u.find_spec(m)])")], capture_output=True, text=True, check=True)
    assert installed.stdout.strip() == "[]", f"installed with qc[agent]: {installed.stdout}"
    imports = subprocess.run([str(python), "-c", ("import agent.runner, agent.simulate, agent.codes, paho.mqtt.client, "
                                                  "asyncua, zxingcpp, httpx; print('ok')")],
                             capture_output=True, text=True, cwd=tmp_path, check=False)
    assert imports.stdout.strip() == "ok", imports.stderr[-2000:]
    # A bad source on a station PC: one clear line on stderr and exit code 2, never a traceback.
    bad = subprocess.run([str(env_dir / "bin" / "qc"), "station", "run", "--station", "s1", "--source", "0",
                          "--safe-default", "OK"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "never OK" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
