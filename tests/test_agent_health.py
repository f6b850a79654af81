"""Station health, as a specification: an agent's heartbeat is stored and shown beside its
station; a station whose agent stopped beating during its shift is flagged silent; keys are
scoped as for frames."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from inspection.store.records import utcnow
from inspection.store.stations_health import Heartbeat, StationHealth, StationHealthStore
from tests.service_harness import running

BEAT = {"agent_version": "0.1.0", "interval_s": 30, "shift": None, "spool_depth": 4, "dropped": 1,
        "deadline_misses": 2, "last_capture_at": "2026-11-30T10:00:00.000Z", "captured": 10}


@pytest.fixture
def service(untrained_model, tmp_path):
    with running(tmp_path / "home", untrained_model) as started:
        yield started


def health(at: datetime, *, interval_s: float = 30, shift: str | None = None) -> StationHealth:
    return StationHealth("s", at, "0.1.0", interval_s, shift, {})


@pytest.mark.parametrize(("shift", "now", "silent"), [
    (None, "12:00", True),
    ("06:00-22:00", "12:00", True),
    ("06:00-22:00", "23:00", False),   # silence after the shift is the line going home
    ("22:00-06:00", "02:00", True),    # a night shift passes midnight
    ("22:00-06:00", "12:00", False),
])
def test_a_station_is_silent_after_three_missed_beats_inside_its_shift(shift, now, silent):
    moment = datetime.fromisoformat(f"2026-11-30T{now}:00")
    assert health(moment - timedelta(seconds=91), shift=shift).silent(moment) is silent
    assert health(moment - timedelta(seconds=89), shift=shift).silent(moment) is False


def test_a_heartbeat_is_stored_and_shown_beside_its_station(service):
    station = service.add_station()
    key = service.key("station", (station,))
    answer = service.client.post(f"/v1/stations/{station}/heartbeat", json=BEAT, headers=key)
    assert answer.status_code == 200, answer.text
    listed = {s["id"]: s for s in service.client.get("/v1/stations", headers=service.admin).json()}
    shown = listed[station]["health"]
    assert (shown["agent_version"], shown["spool_depth"], shown["dropped"], shown["deadline_misses"]) == (
        "0.1.0", 4, 1, 2)
    assert shown["silent"] is False and shown["last_capture_at"] == BEAT["last_capture_at"]
    assert service.client.get(f"/v1/stations/{station}/health", headers=key).json()["spool_depth"] == 4


def test_a_station_that_stopped_beating_is_flagged_silent_in_the_list(service):
    station = service.add_station()
    StationHealthStore(service.state.db).record(station, Heartbeat("0.1.0", 30, None, {}),
                                                at=utcnow() - timedelta(minutes=5))
    listed = {s["id"]: s for s in service.client.get("/v1/stations", headers=service.admin).json()}
    assert listed[station]["health"]["silent"] is True


def test_heartbeats_are_scoped_like_frames(service):
    mine, other = service.add_station(), service.add_station()
    key = service.key("station", (mine,))
    assert service.client.post(f"/v1/stations/{other}/heartbeat", json=BEAT, headers=key).status_code == 403
    assert service.client.post("/v1/stations/nope/heartbeat", json=BEAT, headers=service.admin).status_code == 404
    assert service.client.post(f"/v1/stations/{mine}/heartbeat", json=BEAT).status_code == 401
    bad = service.client.post(f"/v1/stations/{mine}/heartbeat", json={**BEAT, "shift": "6-22"}, headers=key)
    assert bad.status_code == 422
    no_beat = service.client.get(f"/v1/stations/{other}/health", headers=service.admin)
    assert no_beat.status_code == 404 and "no heartbeat" in no_beat.text
