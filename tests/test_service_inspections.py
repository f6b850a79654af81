"""Reading records back: listing with filters and cursors.

The service harness and its model: tests/service_harness.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.service_harness import (
    FAIL_ALL,
    frame,
    utcnow,
)

# -- listing -------------------------------------------------------------------------------


def test_inspections_are_listed_newest_first_with_filters(service):
    failing = service.add_station(FAIL_ALL)
    passing = service.add_station()
    before = utcnow() - timedelta(seconds=1)
    fails = [service.inspect(failing, frame(seed=30 + i), headers={"X-Part-Id": f"P{i}"}).json() for i in range(3)]
    passes = [service.inspect(passing, frame(seed=40 + i), headers={"X-Part-Id": "P0"}).json() for i in range(2)]
    after = utcnow() + timedelta(seconds=1)

    def listed(**params) -> list[str]:
        response = service.client.get("/v1/inspections", params={"limit": 500, **params}, headers=service.admin)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    ours = {b["id"] for b in fails + passes}
    assert listed(station=failing) == [b["id"] for b in reversed(fails)]
    assert set(listed(verdict="FAIL")) >= {b["id"] for b in fails}
    assert not set(listed(verdict="FAIL")) & {b["id"] for b in passes}
    a_class = fails[0]["detections"][0]["class"]
    assert set(listed(station=failing, **{"class": a_class})) >= {fails[0]["id"]}
    assert listed(station=passing, **{"class": a_class}) == []
    assert set(listed(part_id="P0")) & ours == {fails[0]["id"], *(b["id"] for b in passes)}
    window = {"since": before.isoformat() + "Z", "until": after.isoformat() + "Z"}
    assert set(listed(**window)) >= ours
    assert set(listed(since=after.isoformat() + "Z")) & ours == set()
    assert set(listed(until=before.isoformat() + "Z")) & ours == set()
    with_offset = (after + timedelta(hours=2)).isoformat() + "+02:00"  # the same instant, elsewhere
    assert set(listed(until=with_offset)) >= ours


def test_pages_follow_next_cursor_until_it_is_null(service):
    station = service.add_station()
    made = [service.inspect(station, frame(seed=50 + i)).json()["id"] for i in range(5)]
    seen, cursor = [], None
    while True:
        params = {"station": station, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = service.client.get("/v1/inspections", params=params, headers=service.admin).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


@pytest.mark.parametrize("params", [
    {"since": "0001-01-01T00:00:00+01:00"},
    {"until": "9999-12-31T23:59:59-01:00"},
    {"since": "not a time"},
    {"limit": 0},
    {"limit": 501},
    {"verdict": "MAYBE"},
])
def test_odd_listing_parameters_never_give_a_server_error(service, params):
    response = service.client.get("/v1/inspections", params=params, headers=service.admin)
    assert response.status_code in (200, 422), response.text


