"""Health, readiness, metrics, outages and shadow mode.

The service harness and its model: tests/service_harness.py."""

from __future__ import annotations

import time

from tests.service_harness import (
    FAIL_ALL,
    frame,
)

# -- health and metrics --------------------------------------------------------------------


def test_healthz_and_readyz_need_no_key_and_say_what_serves(service):
    assert service.client.get("/healthz").json() == {"status": "ok"}
    ready = service.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["model"] == "default@v1"
    assert ready.json()["database"] == "ok" and ready.json()["providers"] == ["CPUExecutionProvider"]


def test_metrics_count_verdicts_and_batch_sizes(service):
    station = service.add_station(FAIL_ALL)
    service.inspect(station)
    metrics = service.client.get("/metrics", headers=service.key("reviewer"))
    assert metrics.status_code == 200
    text_body = metrics.text
    assert f'qc_verdicts_total{{station="{station}",verdict="FAIL"}} 1.0' in text_body
    assert "qc_batch_size_count" in text_body and "qc_batch_size_bucket" in text_body
    assert 'qc_model_info{name="default",providers="CPUExecutionProvider",version="v1"} 1.0' in text_body


def test_without_a_model_the_service_starts_unready_refuses_frames_503_and_takes_a_first_model(start, untrained_model):
    service = start(model=None, require_model=False)
    ready = service.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["ready"] is False and ready.json()["model"] is None
    station = service.add_station()
    refused = service.inspect(station)
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert "no model loaded" in refused.json()["detail"]
    assert service.records(station) == []

    assert service.register(untrained_model) == "v1"
    promoted = service.client.post("/v1/models/default/promote", json={"version": "v1"}, headers=service.admin)
    assert promoted.status_code == 200, promoted.text
    assert service.client.get("/readyz").status_code == 200
    assert service.inspect(station).status_code == 200


def test_a_database_outage_answers_503_with_retry_after_and_readyz_says_so(service, monkeypatch):
    from sqlalchemy.exc import OperationalError

    station = service.add_station()

    def unreachable(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(service.state.store, "admission", unreachable)  # the inspect route's first read
    monkeypatch.setattr(service.state.db, "ping", lambda: False)
    response = service.inspect(station)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert "database unavailable" in response.json()["detail"]
    ready = service.client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["database"] == "unreachable"


def test_a_shadow_model_judges_live_frames_without_changing_the_answers(start):
    service = start(shadow_rate=1.0)
    station = service.add_station(FAIL_ALL)
    on = service.client.put("/v1/shadow", json={"ref": "default@v1"}, headers=service.admin)
    assert on.status_code == 200 and on.json()["shadow"] == "default@v1"
    answers = [service.inspect(station, frame(seed=110 + i)).json() for i in range(3)]
    assert {a["verdict"] for a in answers} == {"FAIL"}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        report = service.client.get("/v1/shadow", headers=service.admin).json()
        if report["frames"] >= 3:
            break
        time.sleep(0.05)
    assert report["shadow"] == "default@v1" and report["frames"] == 3
    assert report["verdict_agreement"] == 1.0  # the same model agrees with itself
    off = service.client.put("/v1/shadow", json={"ref": None}, headers=service.admin)
    assert off.json()["shadow"] is None
    missing = service.client.put("/v1/shadow", json={"ref": "default@v9"}, headers=service.admin)
    assert missing.status_code == 404


def test_a_shadow_model_that_cannot_load_does_not_stop_production(start):
    service = start(shadow_model="default@v9")
    station = service.add_station()
    assert service.inspect(station).status_code == 200
    report = service.client.get("/v1/shadow", headers=service.admin).json()
    assert report["shadow"] is None


