"""The model registry through the API: read (reviewers), promote, roll back, shadow (engineers)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Path, Request

from inspection.models import promotion
from inspection.store.keys import ApiKey
from serving.auth import require
from serving.schemas import PromoteIn, ShadowIn

router = APIRouter(tags=["models"])
engineer = require("engineer")
# Registry names and versions are folder names under $QC_HOME/models: never "..".
Name = Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="registry model name")
Version = Path(pattern=r"^v\d+$", description="v1, v2, ...")


def _served(request: Request, name: str) -> bool:
    return name == request.app.state.settings.model_name


@router.get("/v1/models")
def list_models(request: Request, key: ApiKey = Depends(require("reviewer"))) -> list[dict]:
    registry = request.app.state.registry
    current = request.app.state.manager.current
    return [
        {"name": name, "versions": registry.versions(name), "production": registry.production_version(name),
         "serving": current.version if current and current.name == name else None}
        for name in registry.names()
    ]


@router.get("/v1/models/{name}/{version}")
def show_model(request: Request, name: str = Name, version: str = Version,
               key: ApiKey = Depends(require("reviewer"))) -> dict:
    entry = request.app.state.registry.get(name, version)
    return {"name": name, "version": version, "card": entry.card}


async def _switch(request: Request, name: str, version: str, move_pointer) -> dict:
    """Warm the new model first; move the pointer only if it loads; then switch."""
    manager = request.app.state.manager
    async with manager.swap_lock:  # never interleaved with the watcher's own swap
        already = manager.current is not None and manager.current.version == version
        loaded = await manager.prepare(version) if _served(request, name) and not already else None  # 422 if it cannot run
        pointer = await asyncio.to_thread(move_pointer)
        if loaded is not None:
            manager.activate(loaded)
    return pointer


@router.post("/v1/models/{name}/promote")
async def promote(body: PromoteIn, request: Request, name: str = Name, key: ApiKey = Depends(engineer)) -> dict:
    """Promote through the gate (evaluations on the frozen holdout must be in both cards)."""
    registry = request.app.state.registry
    # The gate first (404 or 409 with the table): a refused candidate is never loaded.
    decision = await asyncio.to_thread(promotion.check, registry, name, body.version)
    promotion.passed(decision, name=name, version=body.version)
    return await _switch(request, name, body.version,
                         lambda: promotion.promote(registry, name, body.version, decision=decision))


@router.post("/v1/models/{name}/rollback")
async def rollback(request: Request, name: str = Name, key: ApiKey = Depends(engineer)) -> dict:
    registry = request.app.state.registry
    target = await asyncio.to_thread(registry.rollback_target, name)
    return await _switch(request, name, target, lambda: registry.rollback(name))


@router.put("/v1/shadow")
async def set_shadow(body: ShadowIn, request: Request, key: ApiKey = Depends(engineer)) -> dict:
    """Run a candidate on a sample of live frames; its verdicts are stored, never returned."""
    loaded = await request.app.state.manager.set_shadow(body.ref)
    return {"shadow": f"{loaded.name}@{loaded.version}" if loaded else None,
            "rate": request.app.state.settings.shadow_rate}


@router.get("/v1/shadow")
def shadow_report(request: Request, key: ApiKey = Depends(require("reviewer"))) -> dict:
    """Agreement of the shadow model with production, per class and per verdict."""
    shadow = request.app.state.manager.shadow
    report = request.app.state.store.shadow_agreement(shadow.version if shadow else None)
    return {"shadow": f"{shadow.name}@{shadow.version}" if shadow else None, **report}
