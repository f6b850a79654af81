"""A frame's admission: what it is judged with, or why it is refused, before anything is decoded.

Example::

    judge = Judge(store=RecordStore(db), products=ProductStore(db), manager=manager, settings=settings)
    admitted = judge.admit("line1", idempotency_key="frame-0001", asked="pcb-a")
    if isinstance(admitted, InspectionRecord):   # sent again: answered with its record
        ...
    admitted.rules, admitted.reference_version, admitted.tiling

In order: the station exists (404), a frame sent again under an Idempotency-Key already
answered gets its record back (even if the station is off now, or its product gone), the
station is enabled (409), the product it is judged with (the X-Product header, else the
station's current product, else none) has a profile there (404), is enabled and names no model
but the one served (409), a model is loaded (503), and a reference model has a reference to
judge the frame against (409). The reads run in the decode thread (serving/pipeline.py's
`Inspector.inspect`), never on the event loop; the HTTP route only translates.

The one check that a reference model has a reference is `require_reference`: at admission, and
again when a hot swap brings a reference model while a frame waits (`ReferenceRequired`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from inspection.detect.tiling import Tiling
from inspection.errors import Conflict
from inspection.rules import StationRules
from inspection.store.products import Product, ProductStore
from inspection.store.records import InspectionRecord, RecordStore, Station
from serving.model_manager import ModelManager
from serving.settings import ServeSettings


class ReferenceRequired(Conflict):
    """A reference model (one that judges a frame against the station's golden part) has no
    reference to judge this frame against."""

    @classmethod
    def at_station(cls, station_id: str) -> ReferenceRequired:
        return cls(f"station {station_id} has no reference image and the model in production judges "
                   f"frames against one; register it with qc stations reference {station_id} GOLDEN.png "
                   f"(PUT /v1/stations/{station_id}/reference), or promote a plain model")

    @classmethod
    def after_swap(cls) -> ReferenceRequired:
        """A hot swap brought a reference model while a frame from a station without a
        reference was queued: there is nothing to compose its input from."""
        return cls("the model now judges frames against a reference image and this station has none "
                   "(the model was swapped while the frame waited); register one with qc stations reference")


@dataclass(frozen=True)
class Judging:
    """What a frame is judged with: its station, and the product on the line if any (whose
    profile's rules, when it has its own, replace the station's)."""

    station: Station
    product: Product | None = None

    @property
    def rules(self) -> StationRules:
        if self.product is None:
            return self.station.rules
        return self.product.profile.rules_or(self.station.rules)

    @property
    def reference_version(self) -> int | None:
        """The station reference a reference model judges the frame against: the product's
        golden part when its profile names one, else the station's current reference."""
        if self.product is not None and self.product.profile.reference is not None:
            return self.product.profile.reference
        return self.station.reference_version

    @property
    def tiling(self) -> Tiling | None:
        return self.rules.tiling.tiling() if self.rules.tiling else None

    def product_columns(self) -> dict[str, Any]:
        """The record's product and profile version (None for both without a product)."""
        if self.product is None:
            return {"product": None, "product_version": None}
        return {"product": self.product.name, "product_version": self.product.version}


def require_reference(needs_reference: bool, judging: Judging) -> None:
    """The one refusal of a frame a reference model cannot judge: its station (or product) has
    no reference image."""
    if needs_reference and judging.reference_version is None:
        raise ReferenceRequired.at_station(judging.station.id)


class Judge:
    """Admits frames for the service: the stores it reads, the model it judges with."""

    def __init__(self, *, store: RecordStore, products: ProductStore, manager: ModelManager,
                 settings: ServeSettings) -> None:
        self.store, self.products, self.manager, self.settings = store, products, manager, settings

    def product(self, station: Station, asked: str | None) -> Product | None:
        """The product profile a frame is judged with: `asked` (the X-Product header), else the
        station's current one, else none. NotFound (404) for a product without a profile
        (naming how to make one); Conflict (409) for a profile naming a model this service does
        not judge with."""
        name = asked or station.product
        if name is None:
            return None
        product = self.products.profile(station.id, name)
        model, served = product.profile.model, self.settings.model_name
        if model is not None and model != served:
            raise Conflict(
                f"product {name} at station {station.id} must be judged by model {model} (profile "
                f"v{product.version}), but this service judges with {served} (QC_MODEL_NAME); send the frame "
                f"to a service serving {model}, or save a profile without that model "
                f"(PUT /v1/stations/{station.id}/products/{name})")
        return product

    def admit(self, station_id: str, idempotency_key: str | None, asked: str | None) -> Judging | InspectionRecord:
        """What a frame is judged with, the record of a frame already acknowledged under the
        same Idempotency-Key, or the refusal (module docstring). Reads the database: call it
        off the event loop."""
        found, existing = self.store.admission(station_id, idempotency_key)
        if existing is not None:
            return existing
        if not found.rules.enabled:
            raise Conflict(f"station {station_id} is disabled; enable it in its rules")
        product = self.product(found, asked)
        if product is not None and not product.profile.rules_or(found.rules).enabled:
            raise Conflict(f"product {product.name} is disabled at station {station_id}; enable it "
                           f"in its profile (PUT /v1/stations/{station_id}/products/{product.name})")
        current = self.manager.current
        if current is None:
            raise HTTPException(503, "no model loaded; promote one with qc models promote",
                                headers={"Retry-After": "5"})
        judging = Judging(found, product)
        require_reference(current.detector.needs_reference, judging)
        return judging
