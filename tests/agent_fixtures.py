"""What the agent tests share: a real `qc serve` on a free port with two stations and a station
key, frames on disk, and a Debian mosquitto broker on 127.0.0.1.

Used by tests/test_agent*.py; the service is started the way a plant starts it (`qc serve` in
a child process), so the agent talks real HTTP to the real pipeline and store.
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

import cv2
import httpx
import numpy as np
import pytest

from serving.launch import ServerDidNotStart, free_port, wait_ready

QC = Path(sys.executable).with_name("qc")
FAIL_ALL = {"default": {"fail_conf": 1e-6, "review_conf": 1e-6}}  # the untrained model fails every frame


@dataclass
class ServiceHome:
    path: Path
    admin: str
    station_key: str  # for "failing" and "passing"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}


def make_home(folder: Path, model: Path) -> ServiceHome:
    from inspection.models.registry import Registry
    from inspection.rules import StationRules
    from inspection.settings import Settings
    from inspection.store.database import Database
    from inspection.store.keys import KeyStore
    from inspection.store.records import RecordStore

    settings = Settings(home=folder, database_url="")
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    registry.add("default", model)
    registry.set_production("default", "v1")
    db = Database.from_settings(settings)
    store = RecordStore(db)
    store.add_station("failing", rules=StationRules.parse(FAIL_ALL))
    store.add_station("passing", rules=StationRules())
    keys = KeyStore(db)
    admin = keys.create(role="admin", name="agent tests")
    station_key = keys.create(role="station", stations=["failing", "passing"], name="agent")
    db.dispose()
    return ServiceHome(folder, admin, station_key)


class Server:
    """`qc serve` on 127.0.0.1; stop() and start() again on the same port and home."""

    def __init__(self, home: ServiceHome, port: int | None = None) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.path.parent / f"server-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}
        environment.update({"QC_HOME": str(self.home.path), "QC_HOST": "127.0.0.1", "QC_PORT": str(self.port),
                            "QC_PROVIDERS": "cpu", "QC_MODEL_POLL_S": "3600", "QC_PASS_SAMPLE_RATE": "0"})
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([str(QC), "serve"], env=environment, cwd=self.home.path.parent,
                                            stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(self.url, self.process, timeout=90, log_path=self.log)
        except ServerDidNotStart as error:
            pytest.fail(str(error))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)

    def records(self, station: str) -> list[dict]:
        items, cursor = [], None
        with httpx.Client(base_url=self.url, headers=self.home.headers, timeout=30) as client:
            while True:
                params = {"station": station, "limit": 500, **({"cursor": cursor} if cursor else {})}
                page = client.get("/v1/inspections", params=params).json()
                items += page["items"]
                cursor = page["next_cursor"]
                if not cursor:
                    return items


def write_frames(folder: Path, n: int, *, size: tuple[int, int] = (160, 120), start: int = 0) -> list[Path]:
    """n distinct noise PNGs named part-00000.png ...; their names are the part ids."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        pixels = np.random.default_rng(i).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"part-{i:05d}.png"
        cv2.imwrite(str(path), pixels)
        paths.append(path)
    return paths


class Mosquitto:
    """Debian's mosquitto on 127.0.0.1 and a free port, for as long as the fixture lives."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.skip("mosquitto is not installed (apt-get install -y mosquitto)")
        self.port = free_port()
        config = folder / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        pytest.fail("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
