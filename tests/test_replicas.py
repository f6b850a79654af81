"""Two `qc serve` replicas on one PostgreSQL and one S3 image store behind nginx, as a
specification: a frame retried against the other replica returns the first record; a promote
reaches every replica within QC_MODEL_POLL_S plus the load of the model; one replica killed
under load loses no acknowledged record (nor its image) while the other keeps answering, and
the stations' retries leave one record per frame.

Real processes: two `qc serve`, Debian's nginx with docker/nginx/qc.conf (hosts and ports
rewritten, TLS with a throw-away certificate), SeaweedFS (once per session) and the PostgreSQL
of QC_TEST_POSTGRES_URL (a schema of its own). The replicas share one QC_HOME for the model
registry, as the compose file shares its `models` volume."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from inspection.models.registry import Registry
from serving.launch import free_port
from tests.real_servers import FAIL_ALL, QcHome, QcServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

REPO = Path(__file__).resolve().parents[1]
POLL_S = 1.0
PROMOTE_WITHIN_S = 15.0  # poll period + hashing, loading and warming the model on 2 busy cores


def frame(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


class Nginx:
    """Debian's nginx running docker/nginx/qc.conf in front of the two replicas."""

    def __init__(self, folder: Path, upstreams: list[int]) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists() or shutil.which("openssl") is None:
            pytest.skip("nginx or openssl is not installed (apt-get install nginx)")
        folder.mkdir(parents=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=qc", "-keyout", str(folder / "qc.key"), "-out", str(folder / "qc.crt")],
                       capture_output=True, check=True)
        self.port, plain = free_port(), free_port()
        site = (REPO / "docker" / "nginx" / "qc.conf").read_text()
        site = site.replace("qc-1:8000", f"127.0.0.1:{upstreams[0]}").replace("qc-2:8000", f"127.0.0.1:{upstreams[1]}")
        site = site.replace("grafana:3000", f"127.0.0.1:{free_port()}").replace("/etc/nginx/tls", str(folder))
        site = site.replace("listen 443 ", f"listen 127.0.0.1:{self.port} ")
        site = site.replace("listen 80;", f"listen 127.0.0.1:{plain};")
        (folder / "site.conf").write_text(site)
        (folder / "nginx.conf").write_text(
            # Workers as this user: nginx's default (nobody) cannot enter pytest's private folders.
            f"{'user root;' if os.geteuid() == 0 else ''}\n"
            f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
            f"http {{\n access_log off;\n client_body_temp_path {folder}/body;\n proxy_temp_path {folder}/proxy;\n"
            f" include {folder}/site.conf;\n}}\n")
        self.process = subprocess.Popen([binary, "-c", str(folder / "nginx.conf"), "-p", str(folder),
                                         "-g", "daemon off;"], stderr=subprocess.PIPE)
        self.url = f"https://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/healthz", verify=False, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        pytest.fail(f"nginx did not answer: {(folder / 'error.log').read_text()[-1000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Plant:
    home: QcHome
    replicas: list[QcServer]
    proxy: Nginx
    bucket: str

    def client(self, url: str) -> httpx.Client:
        return httpx.Client(base_url=url, headers=self.home.headers, verify=False, timeout=30)


@pytest.fixture
def plant(tmp_path, untrained_model, postgres_url, seaweed_s3, monkeypatch):
    for name, value in seaweed_s3.env.items():
        monkeypatch.setenv(name, value)
    bucket = seaweed_s3.make_bucket(f"qc-plant-{tmp_path.name[-8:].lower().replace('_', '-')}")
    home = QcHome.make(tmp_path / "shared-home", model=untrained_model, database_url=postgres_url,
                       stations={"failing": FAIL_ALL, "passing": {}})
    env = {**seaweed_s3.env, "QC_IMAGE_STORE": f"s3://{bucket}/plant", "QC_MODEL_POLL_S": str(POLL_S),
           "QC_PASS_SAMPLE_RATE": "1"}
    replicas = [QcServer(home, **env), QcServer(home, **env)]
    proxy = Nginx(tmp_path / "nginx", [r.port for r in replicas])
    try:
        yield Plant(home, replicas, proxy, bucket)
    finally:
        proxy.stop()
        for replica in replicas:
            replica.stop(signal.SIGKILL)


def inspect(client: httpx.Client, station: str, data: bytes, key: str) -> httpx.Response:
    return client.post(f"/v1/stations/{station}/inspect", content=data,
                       headers={"Content-Type": "image/jpeg", "Idempotency-Key": key})


def test_a_frame_retried_on_the_other_replica_returns_the_first_record(plant):
    data = frame(1)
    with plant.client(plant.replicas[0].url) as first, plant.client(plant.replicas[1].url) as second:
        answer = inspect(first, "failing", data, "station-7-frame-1")
        again = inspect(second, "failing", data, "station-7-frame-1")
        assert answer.status_code == again.status_code == 200
        assert again.json()["id"] == answer.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        listed = second.get("/v1/inspections", params={"station": "failing"}).json()["items"]
        assert [item["id"] for item in listed] == [answer.json()["id"]]
        image = second.get(f"/v1/inspections/{answer.json()['id']}/image")  # stored by the other one
        assert image.status_code == 200 and image.content == data


def test_the_proxy_spreads_frames_over_both_replicas(plant):
    with plant.client(plant.proxy.url) as client:
        answers = [inspect(client, "passing", frame(100 + i), f"spread-{i}") for i in range(12)]
    assert {a.status_code for a in answers} == {200}
    counts = []
    for replica in plant.replicas:
        with plant.client(replica.url) as client:
            text = client.get("/metrics").text
        counts.append(sum(float(line.split()[-1]) for line in text.splitlines()
                          if line.startswith('qc_verdicts_total{station="passing"')))
    assert sum(counts) == 12 and all(count > 0 for count in counts), counts


def test_a_promote_reaches_every_replica_in_time(plant, untrained_model):
    registry = Registry(plant.home.path / "models")
    version = registry.add("default", untrained_model).version
    started = time.monotonic()
    registry.set_production("default", version)  # what qc models promote does, on any host
    reached = {}
    while len(reached) < 2 and time.monotonic() - started < PROMOTE_WITHIN_S + 30:
        for index, replica in enumerate(plant.replicas):
            if index not in reached and httpx.get(f"{replica.url}/readyz").json()["model"] == f"default@{version}":
                reached[index] = time.monotonic() - started
        time.sleep(0.05)
    print(f"promote reached the replicas after {sorted(round(s, 2) for s in reached.values())} s")
    assert len(reached) == 2 and max(reached.values()) < PROMOTE_WITHIN_S, reached


@dataclass
class Load:
    """Station threads posting distinct frames through the proxy, retrying what gets no 200
    with the same Idempotency-Key, as stations do."""

    url: str
    headers: dict
    threads: int = 4
    acknowledged: dict[str, dict] = field(default_factory=dict)  # key -> the 200 body
    sent: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # key -> (station, frame)
    failures: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stopped, self.lock = threading.Event(), threading.Lock()
        self.workers = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in self.workers:
            worker.start()

    def run(self, worker: int) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, verify=False, timeout=30) as client:
            i = 0
            while not self.stopped.is_set():
                key, station = f"w{worker}-{i}", ("failing", "passing")[i % 2]
                data = frame(10_000 * (worker + 1) + i)
                with self.lock:
                    self.sent[key] = (station, data)
                for _ in range(20):  # retried until acknowledged
                    try:
                        answer = inspect(client, station, data, key)
                        if answer.status_code == 200:
                            with self.lock:
                                self.acknowledged[key] = answer.json()
                            break
                        failure = str(answer.status_code)
                    except httpx.TransportError as error:
                        failure = type(error).__name__
                    with self.lock:
                        self.failures.append((time.monotonic(), failure))
                    time.sleep(0.2)
                i += 1

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def stop(self) -> None:
        self.stopped.set()
        for worker in self.workers:
            worker.join(timeout=120)


def test_a_replica_killed_under_load_loses_no_acknowledged_record(plant):
    load = Load(plant.proxy.url, plant.home.headers)
    try:
        deadline = time.monotonic() + 90
        while load.count() < 30:
            assert time.monotonic() < deadline, f"only {load.count()} frames acknowledged"
            time.sleep(0.05)
        plant.replicas[0].stop(signal.SIGKILL)
        killed_at, before = time.monotonic(), load.count()
        while load.count() < before + 30:  # the other replica keeps answering, through the proxy
            assert time.monotonic() < killed_at + 90, f"only {load.count() - before} answered after the kill"
            time.sleep(0.05)
        answered_after_s = time.monotonic() - killed_at
    finally:
        load.stop()
    print(f"{before} acknowledged before kill -9, 30 more in {answered_after_s:.1f} s after it; "
          f"{len(load.failures)} tries refused or cut ({sorted({f for _, f in load.failures})})")

    survivor = plant.replicas[1]
    with plant.client(survivor.url) as client:
        for key, body in load.acknowledged.items():
            station = load.sent[key][0]
            found = client.get(f"/v1/inspections/{body['id']}")
            assert found.status_code == 200, f"acknowledged {key} lost"
            assert found.json()["verdict"] == body["verdict"] and found.json()["station"] == station
        for key in list(load.acknowledged)[:10]:  # images too: S3 took them before the records
            image = client.get(f"/v1/inspections/{load.acknowledged[key]['id']}/image")
            assert image.status_code == 200 and image.content == load.sent[key][1]
        recorded = sum(len(client.get("/v1/inspections", params={"station": s, "limit": 500}).json()["items"])
                       for s in ("failing", "passing"))
    # Every frame a station gave up on was retried until acknowledged: one record per frame.
    assert set(load.acknowledged) == set(load.sent)
    assert recorded == len(load.sent)
