"""API keys (admins only). The plain key is shown once, at creation."""

from __future__ import annotations

from fastapi import APIRouter

from serving.deps import Admin, AuthDep, KeysDep
from serving.schemas import KeyIn, KeyOut

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201)
def create_key(body: KeyIn, keys: KeysDep, key: Admin) -> dict:
    token = keys.create(role=body.role, stations=body.stations, name=body.name)
    return {"key": token, "id": token.split("_")[1], "role": body.role, "stations": body.stations}


@router.get("", response_model=list[KeyOut])
def list_keys(keys: KeysDep, key: Admin) -> list[KeyOut]:
    return [KeyOut.of(k) for k in keys.list()]


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: str, keys: KeysDep, auth: AuthDep, key: Admin) -> None:
    keys.revoke(key_id)
    auth.forget()
