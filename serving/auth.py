"""API keys on every route but health: `Authorization: Bearer qc_<id>_<secret>`.

Roles, from least to most:
- station: inspects as its own stations, and reads its own stations' records;
- reviewer: reads inspections and images, reviews;
- engineer: also manages stations, rules and models;
- admin: also manages keys.

Verified keys are cached for `CACHE_SECONDS` so that a frame costs no database read for auth;
a revoked key therefore stops working within that time.
"""

from __future__ import annotations

import hashlib
import time

from fastapi import Depends, HTTPException, Request

from inspection.store.keys import ApiKey, KeyStore

CACHE_SECONDS = 30.0
STAFF = ("reviewer", "engineer", "admin")  # each can do what the ones before it can


class Authenticator:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self._cache: dict[str, tuple[ApiKey, float]] = {}

    def verify(self, token: str) -> ApiKey | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self._cache.get(digest)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        key = self.keys.verify(token)
        if key is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (key, time.monotonic() + CACHE_SECONDS)
        return key

    def forget(self) -> None:
        self._cache.clear()


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def current_key(request: Request) -> ApiKey:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>' (create one with qc keys create)")
    key = request.app.state.auth.verify(token.strip())
    if key is None:
        raise _unauthorized("invalid or revoked API key")
    request.state.key_id = key.id
    return key


def require(*roles: str):
    """Dependency: a key of one of `roles`, or a staff role above one of them."""
    allowed = set(roles)
    for role in roles:
        if role in STAFF:
            allowed |= set(STAFF[STAFF.index(role):])
    needed = " or ".join(sorted(allowed))

    def check(key: ApiKey = Depends(current_key)) -> ApiKey:
        if key.role not in allowed:
            raise HTTPException(status_code=403, detail=f"a {key.role} key cannot do this; it needs {needed}")
        return key

    return check


def may_use_station(key: ApiKey, station: str) -> bool:
    return key.role != "station" or station in key.stations


def check_station(key: ApiKey, station: str) -> None:
    if not may_use_station(key, station):
        raise HTTPException(status_code=403, detail=f"this station key is not for station {station}")
