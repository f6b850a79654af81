"""What a route needs, named in its signature: typed dependency aliases for the service.

Example::

    @router.get("/{station}")
    def get_station(station: str, store: StoreDep, key: Reader) -> StationOut:
        check_station(key, station)
        return StationOut.of(store.station(station))

As in FastAPI's full-stack template (`backend/app/api/deps.py`): each alias is
`Annotated[T, Depends(...)]`, so a signature says both the type a route gets and where it
comes from, and nothing reads `request.app.state` by hand. The key guards (`StationKey`,
`Reader`, `Reviewer`, `Engineer`, `Admin`) also declare the bearer scheme in OpenAPI, so
/docs' Authorize button and generated clients send the key. `Person` is the guard of the
review API: a signed-in person (the page's cookie, with its CSRF token on every change) or a
staff key; never a station key.

The dependencies are `async def`: FastAPI runs a plain `def` dependency in a worker thread,
and three thread hand-offs per frame (state, key, role check) cost more CPU than the work
they carry (bench/serving, BENCHMARKS.md). None of them blocks; a key the cache does not
hold is verified in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from inspection.models.registry import Registry
from inspection.roles import Role
from inspection.store.analytics import AnalyticsStore
from inspection.store.images import ImageStorage
from inspection.store.jobs import JobStore
from inspection.store.keys import ApiKey, KeyStore
from inspection.store.labels import LabelStore
from inspection.store.products import ProductStore
from inspection.store.records import RecordStore
from inspection.store.references import StationReferences
from inspection.store.reviews import ReviewStore
from inspection.store.stations_health import StationHealthStore
from inspection.store.trail import Trails
from inspection.store.users import UserStore
from serving.alarms import AlarmEvaluator
from serving.anomaly_maps import AnomalyMaps
from serving.auth import Authenticator
from serving.metrics import Metrics
from serving.model_manager import LoadedModel, ModelManager
from serving.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, Actor, actor_of, csrf_matches, session_of
from serving.settings import ServeSettings
from serving.state import AppState


async def get_state(request: Request) -> AppState:
    return request.app.state.qc


StateDep = Annotated[AppState, Depends(get_state)]


async def _settings(request: Request) -> ServeSettings:
    return request.app.state.settings  # set before start-up: the error handlers need it too


def metrics_of(request: Request) -> Metrics:
    """The app's metrics: there from creation, before start-up (error handlers count with it)."""
    return request.app.state.metrics


SettingsDep = Annotated[ServeSettings, Depends(_settings)]
MetricsDep = Annotated[Metrics, Depends(metrics_of)]


async def _store(state: StateDep) -> RecordStore:
    return state.store


async def _products(state: StateDep) -> ProductStore:
    return state.products


async def _images(state: StateDep) -> ImageStorage:
    return state.images


async def _registry(state: StateDep) -> Registry:
    return state.registry


async def _manager(state: StateDep) -> ModelManager:
    return state.manager


async def _anomaly_maps(state: StateDep) -> AnomalyMaps:
    return state.anomaly_maps


async def _users(state: StateDep) -> UserStore:
    return state.users


async def _reviews(state: StateDep) -> ReviewStore:
    return state.reviews


async def _analytics(state: StateDep) -> AnalyticsStore:
    return state.analytics


async def _jobs(state: StateDep) -> JobStore:
    return state.jobs


async def _health(state: StateDep) -> StationHealthStore:
    return state.health


async def _references(state: StateDep) -> StationReferences:
    return state.references


async def _labels(state: StateDep) -> LabelStore:
    return state.labels


async def _keys(state: StateDep) -> KeyStore:
    return state.keys


async def _auth(state: StateDep) -> Authenticator:
    return state.auth


async def _trails(state: StateDep) -> Trails:
    return state.trails


async def _alarms(state: StateDep) -> AlarmEvaluator:
    return state.alarms


# One alias per store: a route names the stores it uses (all made once, in AppState.start).
StoreDep = Annotated[RecordStore, Depends(_store)]
ProductsDep = Annotated[ProductStore, Depends(_products)]
ImagesDep = Annotated[ImageStorage, Depends(_images)]
RegistryDep = Annotated[Registry, Depends(_registry)]
ManagerDep = Annotated[ModelManager, Depends(_manager)]
AnomalyMapsDep = Annotated[AnomalyMaps, Depends(_anomaly_maps)]
UsersDep = Annotated[UserStore, Depends(_users)]
ReviewsDep = Annotated[ReviewStore, Depends(_reviews)]
AnalyticsDep = Annotated[AnalyticsStore, Depends(_analytics)]
JobsDep = Annotated[JobStore, Depends(_jobs)]
HealthDep = Annotated[StationHealthStore, Depends(_health)]
ReferencesDep = Annotated[StationReferences, Depends(_references)]
LabelsDep = Annotated[LabelStore, Depends(_labels)]
TrailsDep = Annotated[Trails, Depends(_trails)]
KeysDep = Annotated[KeyStore, Depends(_keys)]
AuthDep = Annotated[Authenticator, Depends(_auth)]
AlarmsDep = Annotated[AlarmEvaluator, Depends(_alarms)]


async def _current_model(state: StateDep) -> LoadedModel:
    model = state.manager.current
    if model is None:
        raise HTTPException(503, "no model loaded; promote one with qc models promote",
                            headers={"Retry-After": "5"})
    return model


ModelDep = Annotated[LoadedModel, Depends(_current_model)]
"""The model serving now (503 with Retry-After while there is none)."""

# auto_error=False: our 401 names the fix (FastAPI's own says only "Not authenticated").
bearer = HTTPBearer(auto_error=False, description="an API key from `qc keys create`")


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


async def current_key(
    request: Request,
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    if credentials is None or not credentials.credentials.strip():
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>' (create one with qc keys create)")
    token = credentials.credentials.strip()
    # A key verified lately is in the cache; otherwise the database is read off the loop.
    key = state.auth.cached(token) or await asyncio.to_thread(state.auth.verify, token)
    if key is None:
        raise _unauthorized("invalid or revoked API key")
    request.state.key_id = key.id
    return key


KeyDep = Annotated[ApiKey, Depends(current_key)]
"""Any valid key, whatever its role."""


def require(*roles: Role) -> Callable[[ApiKey], Awaitable[ApiKey]]:
    """A dependency: a key whose role covers one of `roles` (see `Role.covers`), else 403."""
    needed = " or ".join(sorted({r.value for r in Role for want in roles if r.covers(want)}))

    async def check(key: KeyDep) -> ApiKey:
        if not any(key.role.covers(role) for role in roles):
            raise HTTPException(status_code=403, detail=f"a {key.role} key cannot do this; it needs {needed}")
        return key

    return check


StationKey = Annotated[ApiKey, Depends(require(Role.STATION, Role.ENGINEER))]
"""May post frames: a station key (for its own stations) or an engineer's."""
Reader = Annotated[ApiKey, Depends(require(Role.STATION, Role.REVIEWER))]
"""May read records: a station key (its own stations) or any staff key."""
Reviewer = Annotated[ApiKey, Depends(require(Role.REVIEWER))]
Engineer = Annotated[ApiKey, Depends(require(Role.ENGINEER))]
Admin = Annotated[ApiKey, Depends(require(Role.ADMIN))]


def may_use_station(key: ApiKey, station: str) -> bool:
    return key.role is not Role.STATION or station in key.stations


def check_station(key: ApiKey, station: str) -> None:
    if not may_use_station(key, station):
        raise HTTPException(status_code=403, detail=f"this station key is not for station {station}")


# The review routes take a staff key or the pages' session: declared as two alternative
# security schemes, so the OpenAPI document (and Schemathesis) knows a signed-in request needs
# no Authorization header. The cookie itself is read by serving/sessions.py.
session_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                              description="the review pages' sign-in session (POST /login), with X-CSRF-Token "
                                          "on changes")


async def current_person(
    request: Request,
    state: StateDep,
    users: UsersDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    _session: Annotated[str | None, Depends(session_cookie)],
) -> Actor:
    """A staff key (Authorization: Bearer), else the review page's session cookie; changes
    through the cookie need the session's CSRF token in X-CSRF-Token."""
    if credentials is not None and credentials.credentials.strip():
        key = await current_key(request, state, credentials)
        if not key.role.is_staff:
            raise HTTPException(403, "a station key cannot review; use a reviewer key or sign in at /login")
        return Actor(name=f"key:{key.id}", display_name=key.name or f"key {key.id}", role=key.role, via="key")
    session = await asyncio.to_thread(session_of, request, users, state.settings)  # a database read
    if session is None:
        raise _unauthorized("sign in at /login, or send 'Authorization: Bearer <key>' with a staff key")
    if request.method not in SAFE_METHODS and not csrf_matches(request.headers.get(CSRF_HEADER), session.csrf):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER}: send the token of the page's "
                                 "<meta name=csrf-token> (reload the page if it expired)")
    return actor_of(session)


Person = Annotated[Actor, Depends(current_person)]
"""A person reviewing: signed in on the pages (cookie + CSRF) or holding a staff key."""


def current_engineer(person: Person) -> Actor:
    if not person.role.covers(Role.ENGINEER):
        raise HTTPException(403, f"a {person.role} cannot do this; it needs an engineer or admin "
                                 "(a key, or signed in at /login)")
    return person


EngineerPerson = Annotated[Actor, Depends(current_engineer)]
"""An engineer or admin: signed in on the pages (cookie + CSRF) or holding such a key."""


# An alarm's id is a database integer: one beyond 64 bits is a 422, not an overflow in the driver.
AlarmId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the alarm's id")]
"""The `alarm_id` path parameter of the analytics API and the dashboard's forms."""

IncidentId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the incident's id")]
"""The `incident_id` path parameter of the analytics API and the dashboard's forms."""
