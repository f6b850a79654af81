"""Keys and roles: every route but health needs a key; each role is refused what it may not do.

The service harness and its model: tests/service_harness.py."""

from __future__ import annotations

import pytest

from tests.service_harness import (
    FAIL_ALL,
)

# -- keys and roles ------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/v1/stations/any/inspect"), ("get", "/v1/inspections"), ("get", "/v1/stations"),
    ("get", "/metrics"), ("get", "/v1/models"), ("get", "/v1/keys"),
])
def test_every_route_but_health_needs_a_key(service, method, path):
    response = getattr(service.client, method)(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "qc keys create" in response.json()["detail"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer ", "Bearer qc_nope_nope", "qc_abc_def"])
def test_a_malformed_or_unknown_key_is_401(service, header):
    response = service.client.get("/v1/stations", headers={"Authorization": header})
    assert response.status_code == 401


def test_each_role_is_refused_what_it_may_not_do_with_403_naming_the_role_needed(service):
    station = service.add_station()
    reviewer, engineer = service.key("reviewer"), service.key("engineer")
    station_key = service.key("station", (station,))
    refused = [
        service.inspect(station, key=reviewer),
        service.client.post("/v1/stations", json={"id": "by-station-key"}, headers=station_key),
        service.client.put(f"/v1/stations/{station}/rules", json={}, headers=reviewer),
        service.client.post("/v1/keys", json={"role": "admin"}, headers=engineer),
        service.client.get("/v1/keys", headers=engineer),
        service.client.post("/v1/models/default/promote", json={"version": "v1"}, headers=reviewer),
        service.client.get("/v1/models", headers=station_key),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert "a reviewer key cannot do this" in refused[0].json()["detail"]
    assert "admin" in refused[3].json()["detail"]
    assert service.records(station) == []
    allowed = [
        service.inspect(station, key=engineer),
        service.inspect(station, key=station_key),
        service.client.get("/v1/inspections", params={"station": station}, headers=reviewer),
        service.client.put(f"/v1/stations/{station}/rules", json={}, headers=engineer),
    ]
    assert [r.status_code for r in allowed] == [200] * len(allowed)


def test_a_station_key_is_limited_to_its_own_stations(service):
    mine, theirs = service.add_station(FAIL_ALL), service.add_station(FAIL_ALL)
    key = service.key("station", (mine,))
    assert service.inspect(mine, key=key).status_code == 200
    other = service.inspect(theirs, key=key)
    assert other.status_code == 403 and theirs in other.json()["detail"]
    their_record = service.inspect(theirs).json()["id"]
    assert service.client.get(f"/v1/inspections/{their_record}", headers=key).status_code == 404
    assert service.client.get(f"/v1/inspections/{their_record}/image", headers=key).status_code == 404
    assert service.client.get("/v1/inspections", params={"station": theirs}, headers=key).status_code == 403
    assert service.client.get("/v1/inspections", headers=key).status_code == 403
    assert service.client.get(f"/v1/stations/{theirs}", headers=key).status_code == 403
    assert service.client.get(f"/v1/stations/{theirs}/rules", headers=key).status_code == 403
    assert [s["id"] for s in service.client.get("/v1/stations", headers=key).json()] == [mine]
    listed = service.client.get("/v1/inspections", params={"station": mine}, headers=key).json()["items"]
    assert len(listed) == 1
    assert len(service.records(theirs)) == 1  # only the admin's


def test_a_revoked_key_is_refused_at_once(service):
    created = service.client.post("/v1/keys", json={"role": "engineer", "name": "temp"}, headers=service.admin)
    assert created.status_code == 201
    token, key_id = created.json()["key"], created.json()["id"]
    headers = {"Authorization": f"Bearer {token}"}
    assert service.client.get("/v1/stations", headers=headers).status_code == 200  # now cached
    assert service.client.delete(f"/v1/keys/{key_id}", headers=service.admin).status_code == 204
    assert service.client.get("/v1/stations", headers=headers).status_code == 401
    listed = {k["id"]: k for k in service.client.get("/v1/keys", headers=service.admin).json()}
    assert listed[key_id]["revoked"] is True
    assert token not in str(listed)


def test_keys_made_through_the_api_are_shown_once_and_validated(service):
    station = service.add_station()
    made = service.client.post("/v1/keys", json={"role": "station", "stations": [station]}, headers=service.admin)
    assert made.status_code == 201 and made.json()["key"].startswith("qc_")
    misspelt = service.client.post("/v1/keys", json={"role": "station", "stations": ["nosuch"]}, headers=service.admin)
    assert misspelt.status_code == 404 and "qc stations add nosuch" in misspelt.json()["detail"]
    no_station = service.client.post("/v1/keys", json={"role": "station"}, headers=service.admin)
    assert no_station.status_code == 422 and "--station" in no_station.json()["detail"]
    long_name = service.client.post("/v1/keys", json={"role": "admin", "name": "x" * 200}, headers=service.admin)
    assert long_name.status_code == 422
    assert service.client.delete("/v1/keys/nosuchkey", headers=service.admin).status_code == 404


