"""Stations and their versioned rules through the API.

The service harness and its model: tests/service_harness.py."""

from __future__ import annotations

import secrets

import pytest

from tests.service_harness import (
    FAIL_ALL,
    concurrently,
    frame,
)

# -- stations and rules through the API ----------------------------------------------------


def test_stations_are_added_read_and_their_rules_versioned(service):
    station = f"st-{secrets.token_hex(4)}"
    created = service.client.post("/v1/stations", json={"id": station, "description": "cam 2", "rules": FAIL_ALL},
                                  headers=service.admin)
    assert created.status_code == 201
    assert created.json()["rules_version"] == 1 and created.json()["rules"]["default"]["fail_conf"] == 1e-6
    again = service.client.post("/v1/stations", json={"id": station}, headers=service.admin)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    judged_by_v1 = service.inspect(station).json()
    assert judged_by_v1["verdict"] == "FAIL" and judged_by_v1["rules_version"] == 1

    changed = service.client.put(f"/v1/stations/{station}/rules", json={}, headers=service.admin)
    assert changed.status_code == 200 and changed.json()["rules_version"] == 2
    judged_by_v2 = service.inspect(station, frame(seed=80)).json()
    assert judged_by_v2["verdict"] == "PASS" and judged_by_v2["rules_version"] == 2
    old = service.client.get(f"/v1/inspections/{judged_by_v1['id']}", headers=service.admin).json()
    assert old["rules_version"] == 1 and old["verdict"] == "FAIL"

    history = service.client.get(f"/v1/stations/{station}/rules", headers=service.admin).json()
    assert [h["version"] for h in history] == [1, 2]
    assert history[0]["rules"]["default"]["fail_conf"] == 1e-6
    shown = service.client.get(f"/v1/stations/{station}", headers=service.admin).json()
    assert shown["rules_version"] == 2 and shown["description"] == "cam 2"


def test_rules_naming_a_class_the_model_does_not_detect_are_refused(service):
    station = service.add_station()
    misspelt = {"classes": {"scratches": {"fail_conf": 0.3}}}  # the untrained model's classes are "0", "1", ...
    refused = service.client.put(f"/v1/stations/{station}/rules", json=misspelt, headers=service.admin)
    assert refused.status_code == 422 and "scratches" in refused.json()["detail"]
    added = service.client.post("/v1/stations", json={"id": "st-misspelt", "rules": misspelt}, headers=service.admin)
    assert added.status_code == 422
    known = service.client.put(f"/v1/stations/{station}/rules", json={"classes": {"1": {"fail_conf": 0.3}}},
                               headers=service.admin)
    assert known.status_code == 200 and known.json()["rules_version"] == 2


@pytest.mark.parametrize(("rules", "named"), [
    ({"default": {"fail_conf": 0.2, "review_conf": 0.5}}, "review_conf 0.5 is above fail_conf 0.2"),
    ({"area_unit": "mm2"}, "px_per_mm"),
    ({"defaults": {}}, "defaults"),
    ({"roi": [[[0, 0], [1, 1]]]}, "at least 3 points"),
])
def test_invalid_rules_are_refused_422_naming_the_problem_and_the_version_stays(service, rules, named):
    station = service.add_station()
    response = service.client.put(f"/v1/stations/{station}/rules", json=rules, headers=service.admin)
    assert response.status_code == 422
    assert named in str(response.json()["detail"])
    assert service.client.get(f"/v1/stations/{station}", headers=service.admin).json()["rules_version"] == 1


def test_rules_with_a_number_json_cannot_carry_are_refused(service):
    station = service.add_station()
    response = service.client.put(f"/v1/stations/{station}/rules", content=b'{"default": {"min_area": 1e999}}',
                                  headers={**service.admin, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert service.client.get(f"/v1/stations/{station}", headers=service.admin).status_code == 200


def test_station_ids_are_checked(service):
    for bad in ("", "-starts-with-dash", "has space", "x" * 65, "../etc"):
        assert service.client.post("/v1/stations", json={"id": bad}, headers=service.admin).status_code == 422
    assert service.client.put("/v1/stations/nowhere/rules", json={}, headers=service.admin).status_code == 404


def test_concurrent_rules_changes_through_the_api_all_succeed(service):
    station = service.add_station()
    codes = concurrently(6, lambda i: service.client.put(f"/v1/stations/{station}/rules",
                                                         json={"default": {"min_area": i}},
                                                         headers=service.admin).status_code)
    assert codes == [200] * 6
    history = service.client.get(f"/v1/stations/{station}/rules", headers=service.admin).json()
    assert [h["version"] for h in history] == list(range(1, 8))


