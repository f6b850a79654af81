"""The serving image, built and run, as a specification: `docker/serve.Dockerfile` builds FROM a
base given as a build argument, runs as a non-root user, reports healthy through a healthcheck
that follows QC_PORT, and judges a frame posted to it; a code change rebuilds only the layers
after the dependencies.

Run by `.ci/run` as root, which installs Debian's docker.io and debootstrap: a private dockerd
(its own data root, exec root and socket; no iptables, no bridge) and a Debian bookworm base
made with debootstrap and `docker import`, since Docker Hub cannot be reached from CI. Skipped
cleanly wherever docker cannot run. QC_TEST_DOCKER_ROOT keeps the daemon's data between local
runs (the base then is made once); by default everything lives in a temporary folder.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from serving.launch import free_port
from tests.real_servers import FAIL_ALL, QcHome

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BASE_TAG = "local/python:3.11"
IMAGE = "qc-serve:test"


def _mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    for path in [*sorted(glob.glob("/etc/apt/sources.list.d/*.sources")), "/etc/apt/sources.list"]:
        text = Path(path).read_text() if Path(path).is_file() else ""
        found = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.MULTILINE) or re.search(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s+bookworm", text, re.MULTILINE)
        if found:
            return found.group(1)
    return "http://deb.debian.org/debian"


class Docker:
    """A private dockerd, stopped by PID when done."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # A socket path must stay under ~100 bytes: a short folder of its own.
        self.run_dir = Path(tempfile.mkdtemp(prefix="qcd-"))
        self.socket = self.run_dir / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}
        self.log = root / "dockerd.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(self.run_dir / "exec"),
                 "--pidfile", str(self.run_dir / "dockerd.pid"), "-H", f"unix://{self.socket}",
                 "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-masq=false"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.skip(f"dockerd exited with {self.process.returncode}: {self.log.read_text()[-800:]}")
            if self.docker("info", check=False).returncode == 0:
                return
            time.sleep(0.5)
        self.stop()
        pytest.skip(f"dockerd did not answer in 60 s: {self.log.read_text()[-800:]}")

    def docker(self, *args: str, check: bool = True, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run([shutil.which("docker") or "docker", *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def docker(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("a private dockerd needs root (.ci/run runs as root)")
    for tool in ("dockerd", "docker", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: apt-get install -y docker.io debootstrap")
    kept = os.environ.get("QC_TEST_DOCKER_ROOT")
    daemon = Docker(Path(kept) if kept else tmp_path_factory.mktemp("docker"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def base(docker, tmp_path_factory) -> str:
    """Debian bookworm with python3 and a venv at /opt/python, as `local/python:3.11`, plus this
    machine's CA bundle (pip here goes through a TLS-inspecting proxy; a plant bakes its own CA
    into its base images the same way) as `local/python:3.11-ca`."""
    if docker.docker("image", "inspect", BASE_TAG, check=False).returncode != 0:
        rootfs = tmp_path_factory.mktemp("rootfs")
        made = subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                               "bookworm", str(rootfs), _mirror()], capture_output=True, text=True, timeout=900,
                              check=False)
        if made.returncode != 0:
            pytest.skip(f"debootstrap failed (no Debian mirror?): {made.stderr[-800:]}")
        subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", "/opt/python"], check=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        docker.docker("import", "--change",
                      "ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                      "-", BASE_TAG, stdin=tar.stdout)
        tar.wait()
        shutil.rmtree(rootfs, ignore_errors=True)
    context = tmp_path_factory.mktemp("ca")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        shutil.copy(bundle, context / "ca-certificates.crt")
    else:
        (context / "ca-certificates.crt").write_text("")
    (context / "Dockerfile").write_text(
        f"FROM {BASE_TAG}\nCOPY ca-certificates.crt /usr/local/share/plant-ca.crt\n"
        "ENV PIP_CERT=/usr/local/share/plant-ca.crt\n")
    docker.docker("build", "--network", "host", "-t", f"{BASE_TAG}-ca", ".", cwd=context)
    return f"{BASE_TAG}-ca"


def build(docker: Docker, base: str, context: Path) -> tuple[float, str]:
    started = time.monotonic()
    built = docker.docker("build", "--network", "host", "--build-arg", f"BASE={base}", "-f",
                          "docker/serve.Dockerfile", "-t", IMAGE, ".", cwd=context, timeout=1800)
    return time.monotonic() - started, built.stdout


@pytest.fixture(scope="module")
def image(docker, base, tmp_path_factory) -> dict:
    """The serving image built from a copy of the repository (so a code change can be made)."""
    context = tmp_path_factory.mktemp("context")
    for name in ("docker", "inspection", "serving", "labeling", "training", "qc", "pyproject.toml", "README.md"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    first, _ = build(docker, base, context)
    (context / "serving" / "app.py").write_text((context / "serving" / "app.py").read_text() + "\n# changed\n")
    second, log = build(docker, base, context)
    size = int(docker.docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"serving image: first build {first:.0f} s, after a code change {second:.0f} s, {size / 1e6:.0f} MB")
    return {"first_s": first, "rebuild_s": second, "rebuild_log": log}


def test_a_code_change_reuses_the_dependency_layer(image):
    # The dependencies' layer (pip install of docker/constraints.txt) comes from the cache;
    # only the code's layers are built again.
    steps = re.split(r"\nStep \d+/\d+ : ", image["rebuild_log"])
    dependencies = next(step for step in steps if step.startswith("RUN pip install --no-deps -r /tmp/constraints.txt"))
    code = next(step for step in steps if step.startswith("RUN pip install --no-deps ."))
    assert "Using cache" in dependencies
    assert "Using cache" not in code


def test_the_image_runs_as_a_non_root_user_without_torch(docker, image):
    config = json.loads(docker.docker("image", "inspect", IMAGE).stdout)[0]["Config"]
    assert config["User"] not in ("", "0", "root")
    assert "QC_PORT" in json.dumps(config["Healthcheck"])
    who = docker.docker("run", "--rm", "--network", "host", IMAGE, "python", "-c",
                        "import os, importlib.util as u; print(os.getuid(), u.find_spec('torch'))")
    assert who.stdout.split() == ["10001", "None"]


def test_the_container_judges_a_frame_and_turns_healthy_on_its_own_port(docker, image, untrained_model, tmp_path):
    home = QcHome.make(tmp_path / "home", model=untrained_model, stations={"failing": FAIL_ALL})
    subprocess.run(["chown", "-R", "10001", str(home.path)], check=True)
    port = free_port()  # not 8000: the healthcheck must follow QC_PORT
    name = f"qc-test-{port}"
    docker.docker("run", "-d", "--name", name, "--network", "host", "-e", f"QC_PORT={port}",
                  "-e", "QC_HOST=127.0.0.1", "-e", "QC_PROVIDERS=cpu", "-v", f"{home.path}:/var/lib/qc", IMAGE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(docker.docker("logs", name, check=False).stderr[-3000:])
        import cv2
        import numpy as np

        frame = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8))[1]
        answer = httpx.post(f"{url}/v1/stations/failing/inspect", content=frame.tobytes(),
                            headers={**home.headers, "Content-Type": "image/jpeg"}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["verdict"] == "FAIL"
        assert list((home.path / "images").rglob("*.jpg"))  # written by the container's user

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = json.loads(docker.docker("inspect", name).stdout)[0]["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                break
            time.sleep(1)
        assert state["Health"]["Status"] == "healthy", state["Health"]
    finally:
        docker.docker("rm", "-f", name, check=False)
