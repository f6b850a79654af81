"""Which model serves, and swapping it without dropping a frame.

A new production version (from `qc models promote`, `rollback`, or the API) is loaded and
warmed up in a worker thread while the old one keeps serving; then one assignment switches
`current`. Batches already running finish on the model they started with. A model that fails
to load or warm up is refused, and the old one keeps serving; `last_error` says why, and
`pointer_problem` says that the production pointer names a version this service does not
follow (/readyz shows it; qc_model_pointer_followed is 0).

At start, a production version that cannot load (moved there by hand, or its file damaged
since) does not keep the service down: it starts on the newest earlier production version
that loads, logs an error saying so, and reports it in `pointer_problem`. Only when no
version in the pointer's history loads does it refuse to start (QC_REQUIRE_MODEL).

Example::

    manager = ModelManager(settings, registry)
    manager.load_production()            # at start-up
    asyncio.create_task(manager.watch()) # follows the registry's production pointer
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inspection.detect.detector import Detector
from inspection.errors import ModelError, QCError
from inspection.models.registry import ModelVersion, Registry
from inspection.rules import ANOMALY_CLASS, StationRules
from inspection.settings import Backend
from serving.settings import ServeSettings

if TYPE_CHECKING:  # tritonclient is an extra: imported when QC_BACKEND=triton
    from inspection.detect.triton import TritonBackend

log = logging.getLogger("qc.models")


def remote_backend(settings: ServeSettings, entry: ModelVersion) -> TritonBackend | None:
    """A TritonBackend for this registry version when QC_BACKEND=triton, else None. The class
    names and sizes come from the registry's copy of the file; Triton runs the network. A
    good-only version runs in this process whatever the backend: it is no network."""
    if settings.backend is not Backend.TRITON or entry.goodonly:
        return None
    from inspection.detect.onnx_file import read_metadata
    from inspection.detect.triton import TritonBackend

    version = entry.version.removeprefix("v") if settings.triton_pin_version else ""
    return TritonBackend.open(settings.triton_url, entry.name, version=version,
                              key=settings.triton_key, timeout_s=settings.triton_timeout_s,
                              metadata=read_metadata(entry.model_path))


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    detector: Detector


class ModelManager:
    def __init__(self, settings: ServeSettings, registry: Registry) -> None:
        self.settings, self.registry = settings, registry
        self.current: LoadedModel | None = None
        self.shadow: LoadedModel | None = None
        self.last_error: str | None = None
        self.pointer_problem: str | None = None  # the pointer names a version not served
        self.swap_lock = asyncio.Lock()
        self.on_change = lambda model: None  # metrics hook
        self.on_pointer = lambda followed: None  # metrics hook: False while pointer_problem is set

    @property
    def loaded(self) -> LoadedModel:
        """The model served, for code behind ModelDep (which answered 503 while there was none):
        once loaded, a model is only ever replaced by another."""
        if self.current is None:
            raise ModelError("no model loaded; promote one with qc models promote")
        return self.current

    def _load(self, entry: ModelVersion) -> LoadedModel:
        detector = Detector(
            entry.model_path,
            backend=remote_backend(self.settings, entry),  # None: ONNX Runtime in this process
            providers=self.settings.provider_list(),
            # The service asks the detector for everything down to the lowest review threshold
            # any station could use; station rules then decide (inspection/rules.py).
            conf=0.01,
            iou=self.settings.iou,
            threads=self.settings.threads,
            spin=self.settings.spin,
            cache_dir=self.settings.home / "trt-cache",
        )  # warms up: a model that cannot run fails here, before it is switched in
        return LoadedModel(entry.name, entry.version, detector)

    def classes(self) -> frozenset[str] | None:
        """The served model's class names (None before one is loaded: nothing to check against)."""
        current = self.current
        return frozenset(current.detector.names.values()) if current is not None else None

    def review_classes(self, part_classes: list[str]) -> frozenset[str] | None:
        """The classes a reviewer may name: the served model's, and while a good-only model
        serves (its one class, anomaly, names no defect) also the part's own (QC_LABEL_CLASSES),
        so a reviewed frame labels a real class (None before a model is loaded)."""
        served = self.classes()
        if served is None or served != {ANOMALY_CLASS}:
            return served
        return served | frozenset(part_classes)

    def check_classes(self, rules: StationRules) -> None:
        """`ConfigError` (422) when `rules` name a class the served model does not detect."""
        current = self.current
        if current is not None:
            rules.check_classes(current.detector.names.values(), model=f"{current.name}@{current.version}")

    def load_check(self, entry: ModelVersion) -> None:
        """Raises unless `entry` loads and warms up as this service would run it."""
        self._load(entry)

    def following(self) -> None:
        """The production pointer names the served version again."""
        self._set_pointer_problem(None)

    def _set_pointer_problem(self, problem: str | None) -> None:
        self.pointer_problem = problem
        self.on_pointer(problem is None)

    def load_production(self) -> LoadedModel | None:
        name = self.settings.model_name
        try:
            pointed = self.registry.production_version(name)
            try:
                self.current = self._load(self.registry.production(name))
            except Exception as error:
                if pointed is None:  # no production version at all: nothing to fall back from
                    raise
                self.current = self._fallback(name, pointed, error)
            self.on_change(self.current)
            log.info("serving model %s", self.current.version, extra={"providers": self.current.detector.providers})
        except QCError as error:
            self.last_error = str(error)
            if self.settings.require_model:
                raise
            log.warning("no model loaded: %s", error)
        if self.settings.shadow_model:
            # A shadow only observes: one that cannot load is reported, never a reason to stop
            # serving production.
            try:
                self.shadow = self._load(self.registry.resolve(self.settings.shadow_model))
            except Exception as error:  # noqa: BLE001 - shadow never disturbs production
                self.last_error = f"shadow {self.settings.shadow_model} refused: {error}"
                log.error(self.last_error)
        return self.current

    def _fallback(self, name: str, broken: str, error: Exception) -> LoadedModel:
        """The newest earlier production version that loads, loudly; `ModelError` naming every
        version tried when none does."""
        pointer = self.registry.pointer(name) or {}
        tried = [f"{broken}: {error}"]
        for version in dict.fromkeys(reversed(pointer.get("history", []))):
            if version == broken:
                continue
            try:
                loaded = self._load(self.registry.get(name, version))
            except Exception as fallback_error:  # noqa: BLE001 - this one cannot load either: try the next
                tried.append(f"{version}: {fallback_error}")
                continue
            problem = (f"production pointer names {name}@{broken}, which cannot load ({error}); serving "
                       f"{loaded.version}, the newest earlier production version that loads. Promote a "
                       f"working version (qc models promote) or roll back (qc models rollback {name})")
            self.last_error = problem
            self._set_pointer_problem(problem)
            log.error(problem)
            return loaded
        raise ModelError(f"no production version of {name} loads ({'; '.join(tried)}); "
                         "add a working model and promote it (qc models add ... --promote)")

    async def prepare(self, version: str) -> LoadedModel:
        """Load and warm up `version` of the served model without switching to it."""
        return await self._load_checked(f"{self.settings.model_name}@{version}")

    async def _load_checked(self, ref: str) -> LoadedModel:
        """Load `ref` in a thread; any failure becomes a QCError (an HTTP 4xx) and `last_error`."""
        try:  # resolving reads and verifies the model file: off the event loop, like the load
            return await asyncio.to_thread(lambda: self._load(self.registry.resolve(ref)))
        except QCError as error:
            self.last_error = f"{ref} refused: {error}"
            log.error(self.last_error)
            raise
        except Exception as error:  # anything else a broken model does on load
            self.last_error = f"{ref} refused: {error}"
            log.error(self.last_error)
            raise ModelError(self.last_error) from error

    def activate(self, loaded: LoadedModel) -> None:
        """Switch to a prepared model: one assignment, so no frame sees half a swap."""
        previous, self.current = self.current, loaded
        self.last_error = None
        self._set_pointer_problem(None)
        self.on_change(loaded)
        log.info("swapped model %s -> %s", previous.version if previous else None, loaded.version)

    async def swap_to(self, version: str) -> LoadedModel:
        """Load `version` and switch to it; the old one serves meanwhile."""
        async with self.swap_lock:
            if self.current and self.current.version == version:
                return self.current
            loaded = await self.prepare(version)
            self.activate(loaded)
            return loaded

    async def set_shadow(self, ref: str | None) -> LoadedModel | None:
        if not ref:
            self.shadow = None
            return None
        self.shadow = await self._load_checked(ref)
        return self.shadow

    async def watch(self) -> None:
        """Follow the production pointer (promotions by the CLI or another process)."""
        name = self.settings.model_name
        refused: str | None = None
        while True:
            await asyncio.sleep(self.settings.model_poll_s)
            try:
                version = await asyncio.to_thread(self.registry.production_version, name)
            except QCError as error:
                self.last_error = str(error)
                continue
            if self.current and version == self.current.version and self.pointer_problem:
                self._set_pointer_problem(None)  # the pointer came back to what is served
            if not version or (self.current and version == self.current.version) or version == refused:
                continue
            try:
                await self.swap_to(version)
                refused = None
            except Exception as error:  # noqa: BLE001 - a broken version is reported; polling goes on
                refused = version  # do not retry a broken version every poll
                serving = self.current.version if self.current else "nothing"
                self._set_pointer_problem(
                    f"production pointer names {name}@{version}, which this service could not load "
                    f"({error}); still serving {serving}. Roll back (qc models rollback {name}) or "
                    "promote a working version")
