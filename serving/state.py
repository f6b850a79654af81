"""The service's parts, made once at start-up and held in one typed value.

Example::

    state = AppState.start(ServeSettings(), metrics=Metrics())   # in the lifespan, in a thread
    await state.batcher.start()
    ready, body = await state.readiness()

Every store a route uses is made here, once, and held here (with the alarm evaluator): routes
never read `request.app.state` themselves, and never build a store from the database; they
name what they need through the `Annotated` aliases of `serving/deps.py` (`StoreDep`,
`JobsDep`, `ModelDep`, `Engineer`, ...), which read it from here. Tests and tools build an
`AppState` the same way the lifespan does.
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspection.errors import ModelError
from inspection.models.registry import Registry
from inspection.store.analytics import AnalyticsStore
from inspection.store.database import Database
from inspection.store.image_stores import open_image_store
from inspection.store.images import ImageStorage
from inspection.store.jobs import JobStore
from inspection.store.keys import KeyStore
from inspection.store.labels import LabelStore
from inspection.store.products import ProductStore
from inspection.store.records import RecordStore
from inspection.store.references import StationReferences
from inspection.store.reviews import ReviewStore
from inspection.store.stations_health import StationHealthStore
from inspection.store.trail import Trails
from inspection.store.users import UserStore
from serving.admission import FairAdmission
from serving.alarms import AlarmEvaluator
from serving.anomaly_maps import AnomalyMaps
from serving.auth import Authenticator
from serving.batcher import MicroBatcher
from serving.decode_budget import DecodeBudget
from serving.judging import Judge
from serving.metrics import Metrics
from serving.model_manager import LoadedModel, ModelManager
from serving.pipeline import Frame, Inspector, TensorFrame, run_batch
from serving.settings import ServeSettings


def _refuse_missing_providers(settings: ServeSettings, model: LoadedModel | None) -> None:
    """A GPU provider named in QC_PROVIDERS that did not load stops the start: the operator
    asked for that engine, and a service quietly ten times slower would stall the line."""
    if model is None:
        return
    named = [p for p in settings.provider_list() if p.lower() != "auto"]
    missing = model.detector.backend.missing_providers
    if named and missing:
        raise ModelError(
            f"QC_PROVIDERS={settings.providers}: {', '.join(missing)} did not load (running on "
            f"{', '.join(model.detector.providers)}); install onnxruntime-gpu with the CUDA, "
            "cuDNN and TensorRT libraries it links (docker/serve-gpu.Dockerfile), run with the "
            "GPU visible (docker run --gpus all), or set QC_PROVIDERS=cpu")


@dataclass
class AppState:
    settings: ServeSettings
    metrics: Metrics
    db: Database  # for the lifespan (ping, dispose) and tools; routes take the stores below
    store: RecordStore
    products: ProductStore
    keys: KeyStore
    users: UserStore
    reviews: ReviewStore
    analytics: AnalyticsStore
    jobs: JobStore
    health: StationHealthStore
    references: StationReferences
    labels: LabelStore
    trails: Trails
    alarms: AlarmEvaluator
    auth: Authenticator
    images: ImageStorage
    registry: Registry
    manager: ModelManager
    batcher: MicroBatcher[Frame | TensorFrame, LoadedModel]
    inspector: Inspector
    admission: FairAdmission
    decode_budget: DecodeBudget
    anomaly_maps: AnomalyMaps

    @classmethod
    def start(cls, settings: ServeSettings, *, metrics: Metrics) -> AppState:
        """Open the database (migrating it), the stores and the registry, and load the
        production model. Blocking: the lifespan runs it in a thread."""
        db = Database.from_settings(settings)
        store, keys, products, analytics = RecordStore(db), KeyStore(db), ProductStore(db), AnalyticsStore(db)
        images, registry = open_image_store(settings), Registry(settings.models_dir)
        manager = ModelManager(settings, registry)

        def on_change(m: LoadedModel) -> None:
            metrics.set_model(m.name, m.version, m.detector.providers)
            metrics.set_missing_providers(m.detector.backend.missing_providers)

        def on_batch(n: int, ms: float) -> None:
            metrics.batch_size.observe(n)
            metrics.inference.observe(ms / 1000)

        manager.on_change = on_change
        manager.on_pointer = lambda followed: metrics.pointer_followed.set(1 if followed else 0)
        manager.load_production()
        _refuse_missing_providers(settings, manager.current)
        batcher: MicroBatcher[Frame | TensorFrame, LoadedModel] = MicroBatcher(
            run=functools.partial(run_batch, convert_ahead=settings.inference_workers == 1),
            current=lambda: manager.loaded, max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms, queue_size=settings.queue_size,
            workers=settings.inference_workers,
            can_batch=lambda: manager.current is not None and manager.current.detector.batch != 1,
            on_batch=on_batch,
        )
        judge = Judge(store=store, products=products, manager=manager, settings=settings)
        inspector = Inspector(settings=settings, store=store, images=images, manager=manager,
                              batcher=batcher, metrics=metrics, judge=judge)
        admission = FairAdmission(
            capacity=settings.fair_capacity or 2 * settings.max_batch * settings.inference_workers,
            window_s=settings.fair_window_s,
            on_refused=lambda who: metrics.rejected.labels(reason="fair_share").inc())
        budget = DecodeBudget(in_flight=settings.max_pixels_in_flight, per_request=settings.max_request_pixels)
        return cls(settings=settings, metrics=metrics, db=db, store=store, products=products, keys=keys,
                   users=UserStore(db), reviews=ReviewStore(db), analytics=analytics, jobs=JobStore(db),
                   health=StationHealthStore(db), references=StationReferences(db), labels=LabelStore(db),
                   trails=Trails(db, datasets_root=settings.datasets_dir, registry=registry),
                   alarms=AlarmEvaluator(analytics, settings, metrics=metrics),
                   auth=Authenticator(keys), images=images, registry=registry, manager=manager,
                   batcher=batcher, inspector=inspector, admission=admission, decode_budget=budget,
                   anomaly_maps=AnomalyMaps(registry))

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready only with a model loaded and the database reachable; the body says which.

        A service whose production pointer names a version it could not load stays ready (it
        serves the version it has: taking the only instance out of rotation would stop the
        line) but says so: `production` is what the pointer names, `pointer_problem` why it
        is not served. The body needs no key (probes), so errors are shown without file paths:
        the log has them whole."""
        model = self.manager.current
        database = await asyncio.to_thread(self.db.ping)
        try:
            production = await asyncio.to_thread(self.registry.production_version, self.settings.model_name)
        except Exception:  # noqa: BLE001 - a corrupt pointer file: pointer_problem or last_model_error says so
            production = None
        body = {
            "model": f"{model.name}@{model.version}" if model else None,
            "production": f"{self.settings.model_name}@{production}" if production else None,
            "providers": model.detector.providers if model else [],
            "database": "ok" if database else "unreachable",
            "queue_depth": self.batcher.depth,
            "last_model_error": without_paths(self.manager.last_error, (self.settings.home,)),
            # QC_PROVIDERS=auto in a GPU build that ended on the CPU: still ready (a slow line
            # beats a stopped one), but said here, in qc_providers_missing and by its alert.
            "missing_providers": model.detector.backend.missing_providers if model else [],
            "pointer_problem": without_paths(self.manager.pointer_problem, (self.settings.home,)),
        }
        return bool(model and database), body


_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s/:;,'\"()]+)+/?")


def without_paths(text: str | None, roots: tuple[Path, ...] = ()) -> str | None:
    """`text` with absolute file paths cut to their last component ("…/model.onnx"): an
    unauthenticated probe learns what failed, not where the files live. The known `roots`
    (QC_HOME) go first, whole: a folder name with a space or a colon would end the pattern."""
    if text is None:
        return None
    for known in sorted({str(p) for root in roots for p in (root, root.resolve())}, key=len, reverse=True):
        text = text.replace(known + "/", "/").replace(known, "…")
    return _PATH.sub(lambda m: "…/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)
