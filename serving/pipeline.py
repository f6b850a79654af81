"""The path of one frame: bytes in, recorded verdict out.

    decode + letterbox   (thread pool: off the event loop; at a station with a reference and a
                          reference model, the reference is aligned and the input composed here)
    micro-batch          (serving/batcher.py: one session.run for many frames)
    boxes + rules        (inspection/detect/postprocess.py, inspection/rules.py)
    store image, commit  (serving/committer.py: with the frames judged at the same time, one
                          transaction and one fsync per folder; the image file before the record)
    respond              (only now: an acknowledged verdict is on disk)

Example::

    record, created = await inspector.inspect(
        station="line1", product=None,                   # admitted in the decode thread (serving/judging.py)
        reserve=budget.reserve, data=jpeg, header=imaging.probe(jpeg),
        part_id="SN123", idempotency_key="frame-0001")
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from inspection.analytics.image_stats import image_stats
from inspection.detect import imaging
from inspection.detect.detector import Detector
from inspection.detect.preprocess import LetterboxInfo, to_tensor
from inspection.detect.reference import Aligned, align, compose
from inspection.detect.tiling import Tiling, cut, merge
from inspection.detections import Detections
from inspection.errors import DamagedImage
from inspection.rules import DAMAGED_IMAGE_RULE, DamagedFrames, Verdict, decide
from inspection.store.analytics import frame_columns
from inspection.store.images import ImageStorage
from inspection.store.products import ProductStore
from inspection.store.records import InspectionRecord, RecordStore
from inspection.store.references import StationReferences
from serving.batcher import BatchResult, MicroBatcher
from serving.committer import GroupCommitter, Write
from serving.judging import Judge, Judging, ReferenceRequired, require_reference
from serving.metrics import Metrics
from serving.model_manager import LoadedModel, ModelManager
from serving.references import ReferenceImages
from serving.settings import ServeSettings

log = logging.getLogger("qc.inspect")

Reserve = Callable[[int], AbstractContextManager[None]]  # a share of the decode budget, in pixels


@dataclass
class Frame:
    """A decoded frame, letterboxed for the model that was current when it arrived.

    It waits in the queue as uint8 pixels and becomes a float tensor only in its batch: a
    640x640 float tensor is four times the bytes, and 64 waiting frames would hold 300 MB.
    """

    image: np.ndarray  # decoded pixels (possibly reduced), kept in case the model changes size
    size: tuple[int, int]  # original (width, height)
    letterboxed: np.ndarray  # HWC BGR uint8 at the model's input size
    info: LetterboxInfo
    aligned: Aligned | None = None  # the station's reference warped onto the frame, if judged so
    reference_version: int | None = None
    origin: tuple[int, int] = (0, 0)  # where a tile lies in its frame (decoded pixels)
    tiles: list[Frame] | None = None  # a frame judged tile by tile: its tiles, each batched alone

    @property
    def alignment(self) -> tuple[float, float] | None:
        """(score, shift in original pixels) when judged against a reference."""
        if self.aligned is None:
            return None
        return self.aligned.score, self.aligned.shift_px * self.size[0] / self.image.shape[1]

    def network_input(self, detector: Detector) -> np.ndarray:
        """What `detector` sees of this frame: the frame, or frame and reference composed."""
        if not detector.needs_reference:
            return self.image
        if self.aligned is None:
            raise ReferenceRequired.after_swap()
        return compose(self.image, self.aligned.reference)

    @classmethod
    def prepare(cls, detector: Detector, image: np.ndarray, size: tuple[int, int], *,
                reference: np.ndarray | None = None, reference_version: int | None = None) -> Frame:
        """Letterbox `image` for `detector`; a reference model aligns `reference` first."""
        aligned = None
        network = image
        if detector.needs_reference and reference is not None:
            network, aligned = detector.reference_input(image, reference)
        letterboxed, info = detector.prepare(network, original_size=size)
        return cls(image=image, size=size, letterboxed=letterboxed, info=info, aligned=aligned,
                   reference_version=reference_version if aligned is not None else None)

    def again(self, detector: Detector) -> Frame:
        """This frame letterboxed for another model (a hot swap happened while it waited)."""
        letterboxed, info = detector.prepare(self.network_input(detector), original_size=self.size)
        return replace(self, letterboxed=letterboxed, info=info)

    @classmethod
    def decode(cls, detector: Detector, data: bytes, *, settings: ServeSettings,
               header: imaging.ImageHeader | None = None,
               reference: Callable[[tuple[int, int]], np.ndarray] | None = None,
               reference_version: int | None = None, tiling: Tiling | None = None) -> Frame:
        """An encoded image decoded (reduced as `settings.decode` says) and letterboxed; with
        `tiling`, decoded whole and cut into tiles, each letterboxed (`tiles`). `reference(hw)`
        gives the station's reference at the decoded frame's size, for a reference model."""
        image, size = detector.load_bytes(data, reduce=1 if tiling else settings.decode,
                                          max_pixels=settings.max_pixels, header=header)
        golden = reference(image.shape[:2]) if reference is not None and detector.needs_reference else None
        if tiling is None:
            return cls.prepare(detector, image, size, reference=golden, reference_version=reference_version)
        aligned = None if golden is None else align(image, golden, motion=detector.contract.motion)
        tiles = []
        for x, y, crop in cut(image, tiling):
            part = None if aligned is None else replace(
                aligned, reference=aligned.reference[y:y + crop.shape[0], x:x + crop.shape[1]])
            network = crop if part is None else compose(crop, part.reference)
            letterboxed, info = detector.prepare(network, original_size=(crop.shape[1], crop.shape[0]))
            tiles.append(Frame(image=crop, size=(crop.shape[1], crop.shape[0]), letterboxed=letterboxed,
                               info=info, aligned=part, origin=(x, y)))
        whole = tiles[0]
        return cls(image=image, size=size, letterboxed=whole.letterboxed, info=whole.info, aligned=aligned,
                   reference_version=reference_version if aligned is not None else None, tiles=tiles)


def decoded_pixels(detector: Detector, header: imaging.ImageHeader, settings: ServeSettings, *,
                   whole: bool = False) -> int:
    """What `Frame.decode` will allocate for this frame, in 3-byte pixels (a baseline JPEG
    decoded at 1/4 holds 1/16; a PNG twice its pixels; a tiled station's frame, `whole`, is
    decoded at full size; `ImageHeader.decode_cost`): what a request reserves from the decode
    budget before decoding."""
    if whole:
        return header.decode_cost(1)
    if settings.decode == "auto":
        factor = imaging.reduction_for(header, input_hw=detector.input_hw)
    else:
        factor = int(settings.decode)
    return header.decode_cost(factor)


@dataclass
class TensorFrame:
    """One image already in network form, as the v2 protocol's `images` input sends it: CHW,
    RGB, 0..1, letterboxed to the model's input size. It skips decode and letterbox, and shares
    the micro-batch with station frames."""

    tensor: np.ndarray  # (3, H, W) float32 or float16


class InputSizeChanged(Exception):
    """A hot swap brought a model with another input size while a `TensorFrame` was queued;
    pixels can be letterboxed again, a tensor cannot."""


def run_batch(model: LoadedModel, frames: list[Frame | TensorFrame], *, convert_ahead: bool = True) -> list:
    """The batcher's job: one `session.run` over the frames. A `Frame` gets (raw output row,
    LetterboxInfo), a `TensorFrame` its raw output row, or `InputSizeChanged` in its place. A
    frame prepared for a model of another input size (a hot swap happened while it waited) is
    letterboxed again from its pixels. `convert_ahead`: a static-batch model's next chunk is
    converted in another thread while the current one runs (see `_infer`)."""
    detector = model.detector
    expected = (3, *detector.input_hw)
    runnable: list[Frame | TensorFrame] = []
    results: list[Any] = []  # (output, info), an output, or InputSizeChanged, per frame
    for i, frame in enumerate(frames):
        if isinstance(frame, TensorFrame) and frame.tensor.shape != expected:
            results.append(InputSizeChanged(
                f"the model now takes {list(expected)} per image, not {list(frame.tensor.shape)} "
                "(it was swapped while this request waited); read the model metadata again"))
            continue
        if isinstance(frame, Frame) and (frame.letterboxed.shape[:2] != expected[1:]
                                         or (frame.aligned is not None) != detector.needs_reference):
            try:
                frames[i] = frame.again(detector)
            except ReferenceRequired as error:
                results.append(error)
                continue
        runnable.append(frames[i])
        results.append(None)  # filled below
    outputs = iter(_infer(detector, runnable, convert_ahead=convert_ahead) if runnable else [])
    for i, frame in enumerate(frames):
        if results[i] is None:
            output = next(outputs)
            results[i] = (output, frame.info) if isinstance(frame, Frame) else output
    return results


# Converts the next chunk of a batch while ONNX Runtime runs the current one. On 2 cores, with
# one inference worker, the conversion in the inference thread left the session idle for ~10%
# of the time under load (py-spy on bench/serving, 64 stations, static batch-1 model). With
# one inference worker per core there is no idle core to convert on, and the hand-off only
# costs (run_batch's `convert_ahead`, off when QC_INFERENCE_WORKERS > 1; BENCHMARKS.md, issue
# 16). So one thread: it serves the one inference worker.
_converter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="to-tensor")


def _tensor(frames: list[Frame | TensorFrame], shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray:
    """One NCHW tensor for the frames, filled in place (no stack of per-frame copies)."""
    tensor = np.empty((len(frames), *shape), np.float32)
    for i, frame in enumerate(frames):
        if isinstance(frame, TensorFrame):
            tensor[i] = frame.tensor
        else:
            to_tensor([frame.letterboxed], out=tensor[i : i + 1])
    return tensor.astype(dtype, copy=False)


def _infer(detector: Detector, frames: list[Frame | TensorFrame], *, convert_ahead: bool = True) -> np.ndarray:
    """Raw outputs for the frames. A dynamic-batch model takes them in one run; a static-batch
    model runs chunk by chunk (`Detector.chunks`: each is one engine call, so `run_tensor` does
    not split it again), each chunk converted ahead on `_converter` while the one before it
    runs (session.run releases the GIL), or here just before it without `convert_ahead`."""
    shape = (3, *detector.input_hw)
    chunks = detector.chunks(len(frames))
    if len(chunks) == 1:
        return detector.run_tensor(_tensor(frames, shape, detector.input_dtype))
    if not convert_ahead:
        return np.concatenate([detector.run_tensor(_tensor(frames[rows], shape, detector.input_dtype))
                               for rows in chunks])
    pending = [_converter.submit(_tensor, frames[rows], shape, detector.input_dtype) for rows in chunks]
    return np.concatenate([detector.run_tensor(future.result()) for future in pending])


def _detect_whole(detector: Detector, frame: Frame, conf: float, tiling: Tiling | None,
                  reference: np.ndarray | None = None) -> Detections:
    """`frame` judged by another model in one call (shadow mode), tiled as it was; a reference
    shadow model of a plain production model aligns the station's `reference` here."""
    if reference is not None and frame.aligned is None:
        frame = replace(frame, aligned=align(frame.image, reference, motion=detector.contract.motion))
    network = frame.network_input(detector)
    if tiling is None:
        return detector.predict_inputs([network], conf=conf, original_sizes=[frame.size])[0]
    return detector.predict_tiled_input(network, tiling, conf=conf, original_size=frame.size)


@dataclass(frozen=True)
class Asked:
    """What a frame's request asks: its station, the product it names, its Idempotency-Key."""

    station: str
    product: str | None
    idempotency_key: str | None


class Inspector:
    def __init__(self, *, settings: ServeSettings, store: RecordStore, images: ImageStorage,
                 manager: ModelManager, batcher: MicroBatcher[Frame | TensorFrame, LoadedModel],
                 metrics: Metrics, committer: GroupCommitter | None = None, judge: Judge | None = None) -> None:
        self.settings, self.store, self.images = settings, store, images
        self.judge = judge or Judge(store=store, products=ProductStore(store.db), manager=manager, settings=settings)
        self.references = ReferenceImages(StationReferences(store.db), images)
        self.manager, self.batcher, self.metrics = manager, batcher, metrics
        self.committer = committer or GroupCommitter(
            store=store, images=images, max_group=settings.commit_max_group,
            max_wait_ms=settings.commit_wait_ms, on_group=lambda n, _ms: metrics.commit_group.observe(n))
        self._shadow_tasks: set[asyncio.Task] = set()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        await self.batcher.start()
        await self.committer.start()

    async def close(self) -> None:
        """Finish every frame taken: the queued ones are inferred, then each frame still on its
        way to the committer is written, before the writer stops."""
        await self.batcher.close()
        await self._idle.wait()
        await self.committer.close()

    def _decode(self, data: bytes, header: imaging.ImageHeader, judging: Judging) -> Frame:
        detector = self.manager.loaded.detector
        reference_version = judging.reference_version
        require_reference(detector.needs_reference, judging)  # a hot swap since admission
        reference = None if reference_version is None else functools.partial(
            self._reference_at, judging.station.id, reference_version)
        return Frame.decode(detector, data, settings=self.settings, header=header, reference=reference,
                            reference_version=reference_version, tiling=judging.tiling)

    def _reference_at(self, station_id: str, version: int, frame_hw: tuple[int, int]) -> np.ndarray:
        return self.references.pixels(station_id, version, frame_hw=frame_hw)

    def _admit(self, asked: Asked, reserve: Reserve, hold: contextlib.ExitStack, data: bytes,
               header: imaging.ImageHeader) -> tuple[Judging | InspectionRecord, Frame | DamagedImage | None]:
        """The decode thread's work for one frame: its admission (serving/judging.py: the
        station's reads and checks), then its share of the decode budget (held in `hold` until
        the record is written), then the decode. An acknowledged frame sent again comes back as
        its record, undecoded."""
        admitted = self.judge.admit(asked.station, asked.idempotency_key, asked.product)
        if isinstance(admitted, InspectionRecord):
            return admitted, None
        pixels = decoded_pixels(self.manager.loaded.detector, header, self.settings,
                                whole=admitted.tiling is not None)
        hold.enter_context(reserve(pixels))
        try:
            return admitted, self._decode(data, header, admitted)
        except DamagedImage as error:
            return admitted, error

    async def inspect(
        self,
        *,
        station: str,
        reserve: Reserve,
        data: bytes,
        header: imaging.ImageHeader,
        product: str | None = None,
        part_id: str | None = None,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> tuple[InspectionRecord, bool]:
        """Judge one frame from `station` (as `product`, when the client names one) and commit
        its record. Its admission (`Judge.admit`) runs in the decode thread, before anything is
        decoded: it says what the frame is judged with (its station's rules, or the profile of
        the product on the line), returns the record of a frame already acknowledged under the
        same Idempotency-Key (answered again, not judged: `created` is False), or raises the
        refusal. `reserve(pixels)` holds the frame's share of the decode budget until its
        record is written.

        One thread hand-off for the reads and the decode: each hand-off cost the event loop a
        wake-up and ~0.3 CPU-ms in all (bench/serving, BENCHMARKS.md, issue 16)."""
        started = time.monotonic()
        self._in_flight += 1
        self._idle.clear()
        try:
            with contextlib.ExitStack() as hold:
                return await self._inspect(Asked(station, product, idempotency_key), reserve, hold, data=data,
                                           header=header, started=started, part_id=part_id,
                                           idempotency_key=idempotency_key, request_id=request_id)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _inspect(self, asked: Asked, reserve: Reserve,
                       hold: contextlib.ExitStack, *, data: bytes, header: imaging.ImageHeader, started: float,
                       part_id: str | None, idempotency_key: str | None,
                       request_id: str | None) -> tuple[InspectionRecord, bool]:
        admitted, frame = await asyncio.to_thread(self._admit, asked, reserve, hold, data, header)
        if isinstance(admitted, InspectionRecord):
            return admitted, False
        judging, station = admitted, admitted.station
        if isinstance(frame, DamagedImage):
            # Counted whatever the station chose; never judged as if the frame were whole.
            choice = judging.rules.damaged_image
            self.metrics.damaged.labels(station=station.id, outcome=choice.value).inc()
            if choice is not DamagedFrames.REVIEW:
                raise frame
            written, _ = await self.committer.submit(functools.partial(
                self._damaged, frame, judging=judging, header=header, data=data, started=started,
                part_id=part_id, idempotency_key=idempotency_key, request_id=request_id))
            if written.created:
                self.metrics.verdicts.labels(station=station.id, verdict=written.record.verdict).inc()
            return written.record, written.created
        assert frame is not None
        decoded = time.monotonic()
        deadline = started + self.settings.deadline_ms / 1000
        if frame.tiles:  # queued together, so they usually share a batch
            results = await self.batcher.submit_many(list(frame.tiles), deadline=deadline)
        else:
            results = [await self.batcher.submit(frame, deadline=deadline)]
        # Boxes and rules run in the committer's writer thread, just before the group is
        # written: NMS over a noisy frame is CPU work the event loop, which serves every
        # station, must not wait for, and one hand-over serves both.
        written, decision = await self.committer.submit(lambda: self._judge(
            results, judging=judging, header=header, data=data, frame=frame,
            timings={"decode_ms": (decoded - started) * 1000}, started=started,
            part_id=part_id, idempotency_key=idempotency_key, request_id=request_id))
        saved, created = written.record, written.created
        saved.timings["store_ms"] = written.store_ms
        saved.timings["group_size"] = written.group_size
        saved.timings["total_ms"] = (time.monotonic() - started) * 1000
        if created:
            self.metrics.verdicts.labels(station=station.id, verdict=saved.verdict).inc()
            for name in decision.kept.class_names:
                self.metrics.defects.labels(station=station.id, class_name=name).inc()
            self._maybe_shadow(saved, frame, judging)
        return saved, created

    def _judge(self, results: list[BatchResult[LoadedModel]], *, judging: Judging, header: imaging.ImageHeader,
               data: bytes, frame: Frame,
               timings: dict, started: float, part_id: str | None,
               idempotency_key: str | None, request_id: str | None) -> tuple[Write, object]:
        """A frame's boxes, verdict and record (in the committer's thread); its image bytes, as
        received, go with the record when they are kept: no re-encoding on the answer's path."""
        result = results[-1]
        model: LoadedModel = result.model
        post_start = time.monotonic()
        rules, station = judging.rules, judging.station
        if frame.tiles:
            found = [r.model.detector.decode(*r.output, conf=rules.lowest_conf) for r in results]
            detections = merge(found, [tile.origin for tile in frame.tiles], image_wh=frame.size,
                               scale=frame.size[0] / frame.image.shape[1], max_det=model.detector.max_det)
        else:
            output, info = result.output
            detections = model.detector.decode(output, info, conf=rules.lowest_conf)
        stats = image_stats(frame.image)  # ~1 ms (BENCHMARKS.md, plant analytics): quality gate, drift
        alignment = frame.alignment
        decision = decide(detections, rules, stats=stats, alignment=alignment[0] if alignment else None)
        post_end = time.monotonic()

        boxes = decision.kept.to_records()
        for box, area in zip(boxes, decision.areas, strict=True):
            box["area"] = round(float(area), 3)
        timings = {
            **timings,
            "queue_ms": result.queue_ms,
            "inference_ms": result.inference_ms,
            "postprocess_ms": (post_end - post_start) * 1000,
            "batch_size": result.batch_size,
            **({"tiles": len(frame.tiles)} if frame.tiles else {}),
            # Stored with the record: the time until it was judged. The answer adds the
            # group's writes (store_ms), the group's size and the total including them.
            "total_ms": (post_end - started) * 1000,
        }
        record = InspectionRecord(
            station_id=station.id, verdict=decision.verdict, rule=decision.rule, model_name=model.name,
            model_version=model.version, rules_version=station.rules_version,
            width=header.width, height=header.height, detections=boxes, timings=timings,
            part_id=part_id, idempotency_key=idempotency_key, image_format=header.format,
            request_id=request_id, **judging.product_columns(), **frame_columns(stats, detections),
            reference_version=frame.reference_version,
            alignment_score=round(alignment[0], 4) if alignment else None,
            alignment_shift=round(alignment[1], 2) if alignment else None,
        )
        keep = decision.verdict is not Verdict.PASS or random.random() < self.settings.pass_sample_rate
        return Write(record, data if keep else None, record.image_format or "jpeg"), decision

    def _damaged(self, error: DamagedImage, *, judging: Judging, header: imaging.ImageHeader,
                 data: bytes, started: float, part_id: str | None, idempotency_key: str | None,
                 request_id: str | None) -> tuple[Write, None]:
        """A damaged frame at a station whose rules say `damaged_image: review`: a REVIEW verdict
        without detections (the model never saw it), the frame kept for the person who reviews
        it, and written in the committer's group like any other (image first, then the record)."""
        model = self.manager.current
        elapsed = (time.monotonic() - started) * 1000
        record = InspectionRecord(
            station_id=judging.station.id, verdict=Verdict.REVIEW, rule=f"{DAMAGED_IMAGE_RULE}: {error}",
            model_name=model.name if model else "", model_version=model.version if model else "",
            rules_version=judging.station.rules_version, width=header.width, height=header.height,
            detections=[], timings={"decode_ms": elapsed, "total_ms": elapsed}, part_id=part_id,
            idempotency_key=idempotency_key, image_format=header.format, request_id=request_id,
            **judging.product_columns(),
        )
        return Write(record, data, header.format), None

    # -- shadow mode -----------------------------------------------------------------------

    def _maybe_shadow(self, record: InspectionRecord, frame: Frame, judging: Judging) -> None:
        shadow = self.manager.shadow
        if shadow is None or random.random() >= self.settings.shadow_rate:
            return
        task = asyncio.create_task(self._shadow(shadow, record, frame, judging))
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(self, shadow: LoadedModel, record: InspectionRecord, frame: Frame,
                      judging: Judging) -> None:
        station, rules = judging.station, judging.rules
        try:
            reference = None
            if shadow.detector.needs_reference and frame.aligned is None and judging.reference_version:
                reference = await asyncio.to_thread(self._reference_at, station.id, judging.reference_version,
                                                    frame.image.shape[:2])
            detections: Detections = await asyncio.to_thread(
                _detect_whole, shadow.detector, frame, rules.lowest_conf, judging.tiling, reference)
            decision = decide(detections, rules)
            await asyncio.to_thread(
                self.store.save_shadow, record.id, model_name=shadow.name, model_version=shadow.version,
                verdict=decision.verdict, detections=decision.kept.to_records())
            self.metrics.shadow.labels(agree=str(decision.verdict.value == record.verdict).lower()).inc()
        except Exception:  # shadow mode must never disturb production
            log.exception("shadow inference failed")

    async def drain_shadow(self) -> None:
        if self._shadow_tasks:
            await asyncio.gather(*self._shadow_tasks, return_exceptions=True)
