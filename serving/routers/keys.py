"""API keys (admins only). The plain key is shown once, at creation."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from inspection.store.keys import ApiKey
from serving.auth import require
from serving.schemas import KeyIn, KeyOut

router = APIRouter(tags=["keys"])
admin = require("admin")


@router.post("/v1/keys", status_code=201)
def create_key(body: KeyIn, request: Request, key: ApiKey = Depends(admin)) -> dict:
    token = request.app.state.keys.create(role=body.role, stations=body.stations, name=body.name)
    return {"key": token, "id": token.split("_")[1], "role": body.role, "stations": body.stations}


@router.get("/v1/keys", response_model=list[KeyOut])
def list_keys(request: Request, key: ApiKey = Depends(admin)):
    return [KeyOut(id=k.id, role=k.role, stations=k.stations, name=k.name,
                   created_at=k.created_at.isoformat() + "Z", revoked=k.revoked_at is not None)
            for k in request.app.state.keys.list()]


@router.delete("/v1/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, request: Request, key: ApiKey = Depends(admin)) -> None:
    request.app.state.keys.revoke(key_id)
    request.app.state.auth.forget()
