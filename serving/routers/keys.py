"""API keys (admins only). The plain key is shown once, at creation."""

from __future__ import annotations

from fastapi import APIRouter

from serving.deps import Admin, StateDep
from serving.schemas import KeyIn, KeyOut

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201)
def create_key(body: KeyIn, state: StateDep, key: Admin) -> dict:
    token = state.keys.create(role=body.role, stations=body.stations, name=body.name)
    return {"key": token, "id": token.split("_")[1], "role": body.role, "stations": body.stations}


@router.get("", response_model=list[KeyOut])
def list_keys(state: StateDep, key: Admin) -> list[KeyOut]:
    return [KeyOut.of(k) for k in state.keys.list()]


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: str, state: StateDep, key: Admin) -> None:
    state.keys.revoke(key_id)
    state.auth.forget()
