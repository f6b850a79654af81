"""The service on PostgreSQL.

The service harness and its model: tests/service_harness.py."""

from __future__ import annotations

import pytest

from tests.service_harness import (
    FAIL_ALL,
    frame,
)

# -- PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_on_postgresql_frames_are_recorded_and_unstorable_values_are_refused_not_500(start, postgres_url):
    service = start(database_url=postgres_url)
    station = service.add_station(FAIL_ALL)
    answered = service.inspect(station, headers={"Idempotency-Key": "pg-1"}).json()
    assert answered["verdict"] == "FAIL"
    assert service.client.get(f"/v1/inspections/{answered['id']}", headers=service.admin).status_code == 200
    assert service.inspect(station, frame(seed=5), headers={"Idempotency-Key": "pg-1"}).json()["id"] == answered["id"]
    refused = [
        service.client.post("/v1/stations", json={"id": "nul", "description": "a\x00b"}, headers=service.admin),
        service.client.get("/v1/inspections", params={"part_id": "a\x00"}, headers=service.admin),
        service.client.get("/v1/inspections/a%00b", headers=service.admin),
        service.client.post("/v1/keys", json={"role": "station", "stations": [station], "name": "n\x00"},
                            headers=service.admin),
    ]
    assert [r.status_code for r in refused] == [422] * len(refused)
    assert "cannot be stored" in refused[0].json()["detail"]
    assert [s["id"] for s in service.client.get("/v1/stations", headers=service.admin).json()] == [station]
