"""Health and metrics. /healthz and /readyz need no key (load balancers and orchestrators
probe them); /metrics needs one, like every other route.

/metrics is scoped by the key's role: staff keys (reviewer, engineer, admin) see every
series; a station key sees the service-wide series (latency, queue, model) and, of the
per-station series, only its own stations' (another line's verdict counts are not its
business)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from inspection.roles import Role
from serving.deps import KeyDep, StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> JSONResponse:
    """Ready only with a model loaded and the database reachable."""
    ready, body = await state.readiness()
    return JSONResponse({"ready": ready, **body}, status_code=200 if ready else 503)


@router.get("/metrics", responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}},
                                          "description": "Prometheus text format"}})
def metrics(state: StateDep, key: KeyDep) -> Response:
    """Prometheus text format."""
    state.metrics.queue_depth.set(state.batcher.depth)
    registry: CollectorRegistry | _StationScoped = state.metrics.registry
    if key.role is Role.STATION:
        registry = _StationScoped(registry, set(key.stations))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _StationScoped:
    """A view of a metrics registry without the samples of stations outside `stations`."""

    def __init__(self, registry, stations: set[str]) -> None:
        self.registry, self.stations = registry, stations

    def collect(self):
        for family in self.registry.collect():
            family.samples = [s for s in family.samples
                              if "station" not in s.labels or s.labels["station"] in self.stations]
            yield family
