"""Stations and their versioned rules."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from inspection.rules import StationRules
from inspection.store.keys import ApiKey
from inspection.store.records import Station
from serving.auth import check_station, may_use_station, require
from serving.schemas import StationIn, StationOut

router = APIRouter(tags=["stations"])


def _out(station: Station) -> StationOut:
    return StationOut(id=station.id, description=station.description, rules_version=station.rules_version,
                      rules=station.rules, created_at=station.created_at.isoformat() + "Z")


@router.get("/v1/stations", response_model=list[StationOut])
def list_stations(request: Request, key: ApiKey = Depends(require("station", "reviewer"))):
    stations = request.app.state.store.stations()
    return [_out(s) for s in stations if may_use_station(key, s.id)]


def _check_classes(request: Request, rules: StationRules) -> None:
    """Rules that name a class the served model does not detect are refused (422)."""
    current = request.app.state.manager.current
    if current is not None:
        rules.check_classes(current.detector.names.values(), model=f"{current.name}@{current.version}")


@router.post("/v1/stations", response_model=StationOut, status_code=201)
def add_station(body: StationIn, request: Request, key: ApiKey = Depends(require("engineer"))):
    """Add a station with its first rules version (409 if it exists)."""
    _check_classes(request, body.rules)
    return _out(request.app.state.store.add_station(body.id, rules=body.rules, description=body.description,
                                                    created_by=key.id))


@router.get("/v1/stations/{station}", response_model=StationOut)
def get_station(station: str, request: Request, key: ApiKey = Depends(require("station", "reviewer"))):
    check_station(key, station)
    return _out(request.app.state.store.station(station))


@router.put("/v1/stations/{station}/rules", response_model=StationOut)
def set_rules(station: str, rules: StationRules, request: Request, key: ApiKey = Depends(require("engineer"))):
    """A new rules version; records keep the version that judged them."""
    _check_classes(request, rules)
    return _out(request.app.state.store.set_rules(station, rules, created_by=key.id))


@router.get("/v1/stations/{station}/rules")
def rules_history(station: str, request: Request, key: ApiKey = Depends(require("station", "reviewer"))):
    """Every rules version of the station, oldest first."""
    check_station(key, station)
    return request.app.state.store.rules_history(station)
