"""The anomaly map of an inspection judged by a good-only model, for the review page.

Example::

    maps = AnomalyMaps(registry)
    png = maps.for_record(record, images, budget=budget, max_side=2048, max_pixels=settings.max_pixels)
    # a transparent PNG the frame's size (at most max_side): warm where the frame is unlike good

Served by `GET /v1/inspections/{id}/anomaly.png` (keys) and `/review/anomaly/{id}` (the review
page's session), which the page lays over the frame (serving/pages/static/anomaly.js).

Nothing is stored at judging time: the map is computed again from the stored frame and the
good-only model version that judged it (the record names it; a registry version never
changes), ~20 ms a frame, only when a person asks. The models are kept once loaded, a few at a
time. A frame judged by an ONNX model (supervised, or a learned good-only detector) has no map:
`NotFound` says so.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import cv2
from fastapi import HTTPException

from inspection.detect import imaging
from inspection.detect.goodonly import GoodOnlyModel, heat
from inspection.errors import ImageError, ImageTooLarge, NotFound
from inspection.models.registry import Registry
from inspection.store.images import ImageStorage
from inspection.store.records import InspectionRecord
from serving.decode_budget import DecodeBudget

# Good-only models kept loaded (a few MB each: the golden and the band's two edges).
MAX_MODELS = 4


class AnomalyMaps:
    def __init__(self, registry: Registry, *, max_models: int = MAX_MODELS) -> None:
        self.registry, self.max_models = registry, max_models
        self._models: OrderedDict[tuple[str, str], GoodOnlyModel] = OrderedDict()
        self._lock = threading.Lock()

    def model(self, record: InspectionRecord) -> GoodOnlyModel:
        """The good-only model that judged `record`; `NotFound` when it was none."""
        key = (record.model_name, record.model_version)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        judged_by = f"{record.model_name}@{record.model_version}" if record.model_name else "no model"
        try:
            entry = self.registry.get(record.model_name, record.model_version) if record.model_name else None
        except NotFound:
            entry = None
        if entry is None or not entry.goodonly:
            raise NotFound(f"inspection {record.id} was judged by {judged_by}, not by a good-only model in this "
                           "registry: it has no anomaly map (its boxes are at /image?boxes=true)")
        model = GoodOnlyModel.load(entry.model_path)
        with self._lock:
            self._models[key] = model
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
        return model

    def png(self, record: InspectionRecord, data: bytes, *, max_side: int, max_pixels: int,
            reduce: int = 1) -> bytes:
        """The record's anomaly map over its frame `data`: a BGRA PNG at most `max_side`
        pixels on its longer side, transparent where the frame looks good."""
        model = self.model(record)
        frame = imaging.decode(data, reduce=reduce, max_pixels=max_pixels)
        judged = model.predict(frame)
        layer = heat(judged.anomaly, threshold=model.threshold)
        height, width = layer.shape[:2]
        scale = min(1.0, max_side / max(width, height))
        if scale < 1.0:
            layer = cv2.resize(layer, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
        _, encoded = cv2.imencode(".png", layer)
        return encoded.tobytes()

    def for_record(self, record: InspectionRecord, images: ImageStorage, *, budget: DecodeBudget, max_side: int,
                   max_pixels: int, reduction: Callable[[imaging.ImageHeader], int] = lambda header: 1) -> bytes:
        """`png` for a stored inspection: 404 when its image was not kept or no good-only model
        judged it (before its image is read), the frame decoded within the decode `budget`
        (503 when others hold it) at `reduction(header)`."""
        if record.image_sha256 is None:
            raise NotFound(f"inspection {record.id} has no stored image (PASS frames are sampled)")
        self.model(record)
        data = images.read(record.image_sha256, record.image_format)
        try:
            header = imaging.probe(data)
            reduce = reduction(header)
            with budget.reserve(header.decode_cost(reduce)):
                return self.png(record, data, max_side=max_side, max_pixels=max_pixels, reduce=reduce)
        except ImageTooLarge:
            raise
        except ImageError as error:  # damaged since it was stored, or not the model's camera view
            raise HTTPException(500, f"no anomaly map for inspection {record.id}: {error}") from error
