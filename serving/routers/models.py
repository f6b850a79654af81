"""The model registry through the API: read (reviewers), promote, roll back, shadow (engineers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path

from inspection.models import promotion
from serving.deps import Engineer, ManagerDep, RegistryDep, Reviewer, SettingsDep, StoreDep
from serving.model_manager import ModelManager
from serving.schemas import PromoteIn, ShadowIn

router = APIRouter(prefix="/v1", tags=["models"])
# Registry names and versions are folder names under $QC_HOME/models: never "..".
Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="registry model name")]
Version = Annotated[str, Path(pattern=r"^v\d+$", description="v1, v2, ...")]


@router.get("/models")
def list_models(registry: RegistryDep, manager: ManagerDep, key: Reviewer) -> list[dict]:
    current = manager.current
    return [
        {"name": name, "versions": registry.versions(name), "production": registry.production_version(name),
         "serving": current.version if current and current.name == name else None}
        for name in registry.names()
    ]


@router.get("/models/{name}/{version}")
def show_model(name: Name, version: Version, registry: RegistryDep, key: Reviewer) -> dict:
    entry = registry.get(name, version)
    return {"name": name, "version": version, "card": entry.card}


async def _switch(manager: ModelManager, name: str, version: str,
                  move_pointer: Callable[[bool], dict]) -> dict:
    """Warm the new model first; move the pointer only if it loads; then switch. A model this
    service does not serve is load-checked by the registry side (promotion.load_check)."""
    served = name == manager.settings.model_name
    async with manager.swap_lock:  # never interleaved with the watcher's own swap
        already = manager.current is not None and manager.current.version == version
        loaded = await manager.prepare(version) if served and not already else None  # 422 if it cannot run
        pointer = await asyncio.to_thread(move_pointer, not served)  # load-check unless loaded here
        if loaded is not None:
            manager.activate(loaded)
        elif served and already:
            manager.following()  # the pointer is back on the version served
    return pointer


@router.post("/models/{name}/promote")
async def promote(name: Name, body: PromoteIn, registry: RegistryDep, manager: ManagerDep,
                  key: Engineer) -> dict:
    """Promote through the gate (evaluations on the frozen holdout must be in both cards)."""
    # The gate first (404 or 409 with the table): a refused candidate is never loaded.
    decision = await asyncio.to_thread(promotion.check, registry, name, body.version)
    promotion.passed(decision, name=name, version=body.version)
    return await _switch(manager, name, body.version,
                         lambda load: promotion.promote(registry, name, body.version, decision=decision,
                                                        load=load))


@router.post("/models/{name}/rollback")
async def rollback(name: Name, registry: RegistryDep, manager: ManagerDep, key: Engineer) -> dict:
    """Back to the newest earlier production version that loads (versions that no longer
    load are skipped and named if none is left)."""
    served = name == manager.settings.model_name
    check = manager.load_check if served else promotion.load_check
    target = await asyncio.to_thread(registry.rollback_target, name, loadable=check)
    return await _switch(manager, name, target, lambda _: registry.rollback(name, target=target))


@router.put("/shadow")
async def set_shadow(body: ShadowIn, manager: ManagerDep, settings: SettingsDep, key: Engineer) -> dict:
    """Run a candidate on a sample of live frames; its verdicts are stored, never returned."""
    loaded = await manager.set_shadow(body.ref)
    return {"shadow": f"{loaded.name}@{loaded.version}" if loaded else None,
            "rate": settings.shadow_rate}


@router.get("/shadow")
def shadow_report(manager: ManagerDep, store: StoreDep, key: Reviewer) -> dict:
    """Agreement of the shadow model with production, per class and per verdict."""
    shadow = manager.shadow
    report = store.shadow_agreement(shadow.version if shadow else None)
    return {"shadow": f"{shadow.name}@{shadow.version}" if shadow else None, **report}
