"""Station health: agents' heartbeats in, each station's health out.

POST /v1/stations/{station}/heartbeat (a station key for that station, or an engineer's)
stores the agent's last beat; GET /v1/stations/{station}/health reads it with the `silent`
flag (no beat for three intervals during the station's shift). GET /v1/stations shows the
same health beside each station.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException

from inspection.store.stations_health import Heartbeat
from serving.deps import HealthDep, Reader, StationKey, StoreDep, check_station
from serving.schemas import HeartbeatIn, StationHealthOut

router = APIRouter(prefix="/v1/stations", tags=["station health"])


@router.post("/{station}/heartbeat", response_model=StationHealthOut,
             responses={401: {}, 403: {}, 404: {"description": "unknown station"}})
async def heartbeat(station: str, body: HeartbeatIn, store: StoreDep, beats: HealthDep,
                    key: StationKey) -> StationHealthOut:
    """The agent's health now: version, last capture and verdict, spool depth, drops, misses."""
    check_station(key, station)
    await asyncio.to_thread(store.station, station)  # 404 for an unknown station
    counters = body.model_dump(exclude={"agent_version", "interval_s", "shift"})
    beat = Heartbeat(agent_version=body.agent_version, interval_s=body.interval_s, shift=body.shift,
                     counters=counters)
    saved = await asyncio.to_thread(beats.record, station, beat)
    return StationHealthOut.of(saved)


@router.get("/{station}/health", response_model=StationHealthOut,
            responses={404: {"description": "unknown station, or no heartbeat yet"}})
def health(station: str, store: StoreDep, beats: HealthDep, key: Reader) -> StationHealthOut:
    check_station(key, station)
    store.station(station)
    found = beats.of(station)
    if found is None:
        raise HTTPException(404, f"station {station} has sent no heartbeat yet; is its agent running "
                                 "(qc station run)?")
    return StationHealthOut.of(found)
