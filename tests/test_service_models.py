"""Models while the line runs: hot swap, refusal, rollback, the watcher.

The service harness and its model: tests/service_harness.py."""

from __future__ import annotations

import threading
import time
from typing import Self

import pytest

from inspection.models.registry import Registry
from tests.service_harness import (
    HOLDOUT,
    Service,
    frame,
)

# -- models: hot swap, refusal, rollback ---------------------------------------------------


class Traffic:
    """Threads posting frames until stopped; every answer with the time its request left."""

    def __init__(self, service: Service, station: str, threads: int = 3) -> None:
        self.service, self.station = service, station
        self.answers: list[tuple[float, int, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(i,)) for i in range(threads)]

    def _post(self, worker: int) -> None:
        i = 0
        while not self._stop.is_set():
            sent = time.monotonic()
            response = self.service.inspect(self.station, frame(seed=1000 * worker + i))
            version = response.json()["model"]["version"] if response.status_code == 200 else response.text
            self.answers.append((sent, response.status_code, version))
            i += 1

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_promoting_a_model_while_frames_flow_drops_no_frame_and_later_frames_use_it(start, untrained_model):
    service = start()
    station = service.add_station()
    assert service.register(untrained_model) == "v2"
    engineer = service.key("engineer")
    with Traffic(service, station) as traffic:
        time.sleep(0.4)
        promoted = service.client.post("/v1/models/default/promote", json={"version": "v2"}, headers=engineer)
        done = time.monotonic()
        time.sleep(0.6)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["version"] == "v2" and promoted.json()["previous"] == "v1"
    failed = [(code, detail) for _, code, detail in traffic.answers if code != 200]
    assert failed == []
    assert "v1" in {v for sent, _, v in traffic.answers if sent < done}
    later = {v for sent, _, v in traffic.answers if sent > done}
    assert later == {"v2"}
    models = service.client.get("/v1/models", headers=engineer).json()
    assert models == [{"name": "default", "versions": ["v1", "v2"], "production": "v2", "serving": "v2"}]


def test_a_candidate_the_gate_refuses_is_never_loaded(start, untrained_model, monkeypatch):
    service = start()
    worse = {"evaluations": {HOLDOUT: {"map50_95": 0.3, "per_class": {}}}}
    assert service.register(untrained_model, card=worse) == "v2"
    loads = []
    monkeypatch.setattr(service.state.manager, "prepare", loads.append)
    refused = service.client.post("/v1/models/default/promote", json={"version": "v2"}, headers=service.admin)
    assert refused.status_code == 409 and "refused by the promotion gate" in refused.json()["detail"]
    assert loads == []
    assert service.client.get("/v1/models", headers=service.admin).json()[0]["production"] == "v1"


def test_a_model_that_cannot_load_is_refused_by_promote_and_the_current_one_keeps_serving(
        start, untrained_model, tmp_path):
    service = start()
    station = service.add_station()
    service.register(untrained_model)
    promoted = service.client.post("/v1/models/default/promote", json={"version": "v2"}, headers=service.admin)
    assert promoted.status_code == 200
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model\n" * 100)
    assert service.register(broken) == "v3"
    with Traffic(service, station, threads=2) as traffic:
        refused = service.client.post("/v1/models/default/promote", json={"version": "v3"}, headers=service.admin)
        time.sleep(0.2)
    assert refused.status_code == 422
    assert "v3" in refused.json()["detail"] and "ONNX" in refused.json()["detail"]
    assert {code for _, code, _ in traffic.answers} == {200}
    assert {version for _, _, version in traffic.answers} == {"v2"}
    assert Registry(service.settings.models_dir).production_version("default") == "v2"
    assert service.inspect(station).json()["model"]["version"] == "v2"
    ready = service.client.get("/readyz").json()
    assert ready["model"] == "default@v2" and "v3" in ready["last_model_error"]


def test_rollback_returns_to_the_previous_production_version(start, untrained_model):
    service = start()
    station = service.add_station()
    service.register(untrained_model)
    service.client.post("/v1/models/default/promote", json={"version": "v2"}, headers=service.admin)
    assert service.inspect(station).json()["model"]["version"] == "v2"
    rolled = service.client.post("/v1/models/default/rollback", headers=service.admin)
    assert rolled.status_code == 200 and rolled.json()["version"] == "v1"
    assert service.inspect(station, frame(seed=7)).json()["model"]["version"] == "v1"
    again = service.client.post("/v1/models/default/rollback", headers=service.admin)
    assert again.status_code == 409 and "no earlier production version" in again.json()["detail"]


def test_a_promotion_made_outside_the_service_is_picked_up_by_the_watcher(start, untrained_model, tmp_path):
    service = start(model_poll_s=0.1)
    station = service.add_station()
    registry = Registry(service.settings.models_dir)
    service.register(untrained_model)
    registry.set_production("default", "v2")  # as `qc models promote` in another process does
    deadline = time.monotonic() + 10
    while service.state.manager.current.version != "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.inspect(station).json()["model"]["version"] == "v2"

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    service.register(broken)
    registry.set_production("default", "v3")
    deadline = time.monotonic() + 10
    while not service.state.manager.last_error and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "v3" in (service.state.manager.last_error or "")
    assert service.inspect(station, frame(seed=8)).json()["model"]["version"] == "v2"


@pytest.mark.parametrize("path", [
    "/v1/models/%2E%2E/v1", "/v1/models/default/%2E%2E", "/v1/models/.hidden/v1",
])
def test_model_names_and_versions_are_never_paths(service, path):
    assert service.client.get(path, headers=service.admin).status_code in (404, 422)
    assert service.client.post("/v1/models/%2E%2E/rollback", headers=service.admin).status_code == 422
    shadow = service.client.put("/v1/shadow", json={"ref": "../../etc@v1"}, headers=service.admin)
    assert shadow.status_code == 422


