"""Stations and their versioned rules."""

from __future__ import annotations

from fastapi import APIRouter

from inspection.rules import StationRules
from serving.deps import Engineer, HealthDep, ManagerDep, Reader, StoreDep, check_station, may_use_station
from serving.schemas import StationIn, StationOut

router = APIRouter(prefix="/v1/stations", tags=["stations"])


@router.get("", response_model=list[StationOut])
def list_stations(store: StoreDep, health: HealthDep, key: Reader) -> list[StationOut]:
    """Every station the key may see, with its agent's health (`silent` when it stopped beating)."""
    beats = health.all()
    return [StationOut.of(s, beats.get(s.id)) for s in store.stations() if may_use_station(key, s.id)]


@router.post("", response_model=StationOut, status_code=201)
def add_station(body: StationIn, store: StoreDep, manager: ManagerDep, key: Engineer) -> StationOut:
    """Add a station with its first rules version (409 if it exists)."""
    manager.check_classes(body.rules)  # a class the served model does not detect: 422
    return StationOut.of(store.add_station(body.id, rules=body.rules, description=body.description,
                                           created_by=key.id))


@router.get("/{station}", response_model=StationOut)
def get_station(station: str, store: StoreDep, key: Reader) -> StationOut:
    check_station(key, station)
    return StationOut.of(store.station(station))


@router.put("/{station}/rules", response_model=StationOut)
def set_rules(station: str, rules: StationRules, store: StoreDep, manager: ManagerDep,
              key: Engineer) -> StationOut:
    """A new rules version; records keep the version that judged them."""
    manager.check_classes(rules)
    return StationOut.of(store.set_rules(station, rules, created_by=key.id))


@router.get("/{station}/rules")
def rules_history(station: str, store: StoreDep, key: Reader) -> list[dict]:
    """Every rules version of the station, oldest first."""
    check_station(key, station)
    return store.rules_history(station)
