"""The service's parts, made once at start-up and held in one typed value.

Example::

    state = AppState.start(ServeSettings(), metrics=Metrics())   # in the lifespan, in a thread
    await state.batcher.start()
    ready, body = await state.readiness()

Routes never read `request.app.state` themselves: they name what they need through the
`Annotated` aliases of `serving/deps.py` (`StoreDep`, `ModelDep`, `Engineer`, ...), which read
it from here. Tests and tools build an `AppState` the same way the lifespan does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from inspection.models.registry import Registry
from inspection.store.database import Database
from inspection.store.images import ImageStore
from inspection.store.keys import KeyStore
from inspection.store.records import RecordStore
from serving.admission import FairAdmission
from serving.auth import Authenticator
from serving.batcher import MicroBatcher
from serving.decode_budget import DecodeBudget
from serving.metrics import Metrics
from serving.model_manager import LoadedModel, ModelManager
from serving.pipeline import Frame, Inspector, TensorFrame, run_batch
from serving.settings import ServeSettings


@dataclass
class AppState:
    settings: ServeSettings
    metrics: Metrics
    db: Database
    store: RecordStore
    keys: KeyStore
    auth: Authenticator
    images: ImageStore
    registry: Registry
    manager: ModelManager
    batcher: MicroBatcher[Frame | TensorFrame, LoadedModel]
    inspector: Inspector
    admission: FairAdmission
    decode_budget: DecodeBudget

    @classmethod
    def start(cls, settings: ServeSettings, *, metrics: Metrics) -> AppState:
        """Open the database (migrating it), the stores and the registry, and load the
        production model. Blocking: the lifespan runs it in a thread."""
        db = Database.from_settings(settings)
        store, keys = RecordStore(db), KeyStore(db)
        images, registry = ImageStore(settings.images_dir), Registry(settings.models_dir)
        manager = ModelManager(settings, registry)
        manager.on_change = lambda m: metrics.set_model(m.name, m.version, m.detector.providers)
        manager.load_production()
        batcher: MicroBatcher[Frame | TensorFrame, LoadedModel] = MicroBatcher(
            run=run_batch, current=lambda: manager.current, max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms, queue_size=settings.queue_size,
            workers=settings.inference_workers,
            can_batch=lambda: manager.current is not None and manager.current.detector.batch != 1,
            on_batch=lambda n, ms: (metrics.batch_size.observe(n), metrics.inference.observe(ms / 1000)),
        )
        inspector = Inspector(settings=settings, store=store, images=images, manager=manager,
                              batcher=batcher, metrics=metrics)
        admission = FairAdmission(
            capacity=settings.queue_size, window_s=settings.fair_window_s,
            on_refused=lambda who: metrics.rejected.labels(reason="fair_share").inc())
        budget = DecodeBudget(in_flight=settings.max_pixels_in_flight, per_request=settings.max_request_pixels)
        return cls(settings=settings, metrics=metrics, db=db, store=store, keys=keys,
                   auth=Authenticator(keys), images=images, registry=registry, manager=manager,
                   batcher=batcher, inspector=inspector, admission=admission, decode_budget=budget)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready only with a model loaded and the database reachable; the body says which."""
        model = self.manager.current
        database = await asyncio.to_thread(self.db.ping)
        body = {
            "model": f"{model.name}@{model.version}" if model else None,
            "providers": model.detector.providers if model else [],
            "database": "ok" if database else "unreachable",
            "queue_depth": self.batcher.depth,
            "last_model_error": self.manager.last_error,
        }
        return bool(model and database), body
