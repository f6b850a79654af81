"""The ONNX defect detector: bytes or pixels in, `Detections` out, on GPU or CPU.

Example::

    from inspection.detect.detector import Detector

    detector = Detector("model.onnx", conf=0.25, iou=0.7)      # warms up on load
    detections = detector.predict([image_bgr])[0]                # Ultralytics-identical boxes
    detections = detector.predict_bytes(jpeg_bytes)              # decodes, reduced when it pays
    print(detector.providers, detector.names, detector.input_hw)

    reference_model = Detector("pcb-reference.onnx")             # exported with reference: true
    detections = reference_model.predict([frame], references=[golden])[0]

Loads any detection model exported by Ultralytics (`model.export(format="onnx")`) or by
`qc export`: the raw head `[B, 4 + nc, N]` (NMS here) or the end-to-end layout `[B, K, 6]`,
fp32 or fp16, static or dynamic batch. Nothing is written to disk on load, except TensorRT's
engine cache, and only into the `cache_dir` the caller names (QC_HOME in the service).

A model whose metadata holds a reference `InputContract` (`qc_input`, written by `qc export`)
judges each frame against its golden part: `predict` aligns the reference onto the frame and
composes the input (inspection/detect/reference.py); without a reference it refuses, naming the
fix. A plain model ignores references. A good-only model (`.qcgood`, inspection/detect/goodonly.py)
loads too, through its own backend (inspection/detect/goodonly_backend.py): one class,
`anomaly`, judged against the golden part the file holds.

The serving micro-batcher uses the three stages separately: `prepare` (per image, in a thread
pool), `run` (one `session.run` for the batch), `decode` (per image).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inspection.detect import imaging
from inspection.detect.backend import InferenceBackend, OrtBackend
from inspection.detect.goodonly import is_goodonly_file
from inspection.detect.model_info import ModelInfo, parse_metadata
from inspection.detect.postprocess import Layout, decode
from inspection.detect.preprocess import PAD_VALUE, LetterboxInfo, letterbox, to_tensor
from inspection.detect.reference import Aligned, InputContract, align, compose, fit_reference
from inspection.detect.tiling import Tiling, cut, merge
from inspection.detections import Detections
from inspection.errors import ModelError

_EXPECTED = (
    "expected a detection model exported by `qc export` or Ultralytics "
    "`YOLO(...).export(format='onnx')`: one input [B, 3, H, W] and an output "
    "[B, 4 + classes, N] (raw head) or [B, K, 6] (end-to-end)"
)
log = logging.getLogger("qc.detector")


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


class Detector:
    """An ONNX detection model ready to run. Thread-safe: ONNX Runtime sessions are."""

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] = ("auto",),
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz: int | tuple[int, int] | None = None,
        max_det: int = 300,
        threads: int = 0,
        spin: bool = True,
        cache_dir: Path | None = None,
        warmup: bool = True,
        backend: InferenceBackend | None = None,
    ) -> None:
        self.path = Path(path)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        # A remote engine (inspection/detect/triton.py) comes made; a good-only model
        # (.qcgood) runs in this process (inspection/detect/goodonly_backend.py); else ONNX
        # Runtime, here.
        if backend is None and is_goodonly_file(self.path):
            from inspection.detect.goodonly_backend import GoodOnlyBackend

            backend = GoodOnlyBackend.open(self.path)
        self.backend: InferenceBackend = backend or OrtBackend.open(
            self.path, providers=providers, threads=threads, spin=spin, cache_dir=cache_dir,
            expected=_EXPECTED)
        try:
            self.info: ModelInfo = parse_metadata(self.backend.metadata)
        except ModelError as error:
            raise ModelError(f"{self.path}: {error}") from error
        if self.info.task != "detect":
            raise ModelError(f"{self.path}: a {self.info.task!r} model; {_EXPECTED}")
        try:
            self.contract = InputContract.from_metadata(self.info.qc.get("input"))
        except ModelError as error:
            raise ModelError(f"{self.path}: {error}") from error
        self._read_io(imgsz)
        if warmup:
            self.warmup()

    # -- loading ---------------------------------------------------------------------------

    def _read_io(self, imgsz: int | tuple[int, int] | None) -> None:
        spec, output = self.backend.input, self.backend.output
        if len(spec.shape) != 4 or spec.shape[1] not in (3, None):
            raise ModelError(f"{self.path}: inputs {[list(spec.shape)]}; {_EXPECTED}")
        if len(output.shape) != 3:
            raise ModelError(f"{self.path}: output {list(output.shape)}; {_EXPECTED}")
        self.input_name, self.output_name = spec.name, output.name
        self.input_dtype = spec.numpy_dtype
        batch, _, height, width = spec.shape
        self.batch: int | None = batch if isinstance(batch, int) and batch > 0 else None
        self.dynamic_size = not (isinstance(height, int) and isinstance(width, int))
        wanted: tuple[int, int] | None = (
            (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1])) if imgsz else None)
        self.input_hw: tuple[int, int]
        if isinstance(height, int) and isinstance(width, int):
            if wanted and wanted != (height, width):
                raise ModelError(
                    f"{self.path}: the model takes {height}x{width} inputs, not "
                    f"{wanted[0]}x{wanted[1]}; drop --imgsz or export again with that size"
                )
            self.input_hw = (height, width)
        else:
            stride = self.info.stride
            if wanted and any(side % stride for side in wanted):
                h, w = (max(stride, round(side / stride) * stride) for side in wanted)
                nearest = h if h == w else f"{h}x{w}"
                raise ModelError(
                    f"{self.path}: imgsz {wanted[0]}x{wanted[1]} is not a multiple of the model's "
                    f"stride {stride}; use the nearest valid size, --imgsz {nearest}, or drop --imgsz"
                )
            self.input_hw = wanted or self.info.input_hw or (640, 640)
        self.names = self.info.names
        self.layout = self._layout(list(output.shape))

    def _layout(self, shape: list) -> Layout:
        nc = len(self.names) if self.names else None
        if self.info.end2end:
            return Layout.END2END
        if nc is not None and shape[1] == 4 + nc:
            return Layout.RAW
        if shape[2] == 6:
            return Layout.END2END
        if nc is None and isinstance(shape[1], int) and shape[1] > 4:
            self.names = {i: f"class{i}" for i in range(shape[1] - 4)}  # no metadata: numbered
            return Layout.RAW
        raise ModelError(
            f"{self.path}: unknown output layout {shape} for {nc} classes; {_EXPECTED}"
        )

    def warmup(self) -> None:
        """Run once on a blank frame: the first `session.run` allocates and tunes kernels."""
        h, w = self.input_hw
        blank = np.full((h, w, 3), 114, np.uint8)
        try:
            output = self.run([blank])
        except ModelError:
            raise
        except Exception as error:  # ORT's own types: out of memory, a provider that fails, ...
            raise ModelError(
                f"{self.path}: cannot run here ({_first_line(error)}); on a GPU check the "
                "CUDA/TensorRT libraries and free memory, or try --providers cpu "
                "(QC_PROVIDERS=cpu); otherwise export the model again with qc export"
            ) from error
        if self.layout is Layout.RAW and output.shape[1] != 4 + len(self.names):
            raise ModelError(f"{self.path}: output {list(output.shape)}; {_EXPECTED}")

    @property
    def providers(self) -> list[str]:
        """The execution providers that really run, best first."""
        return self.backend.providers

    # -- the three stages ------------------------------------------------------------------

    def prepare(
        self,
        image: np.ndarray,
        *,
        original_size: tuple[int, int] | None = None,
        minimal: bool = False,
    ) -> tuple[np.ndarray, LetterboxInfo]:
        """Letterbox one BGR image to the network input. Pure, cheap, thread-safe.

        `minimal` pads only to a stride multiple, for a model with dynamic height and width
        (as Ultralytics does when all images of a call share one shape); a batch of such
        images must then share one shape.
        """
        return letterbox(
            image,
            new_shape=self.input_hw,
            stride=self.info.stride,
            auto=minimal and self.dynamic_size,
            original_size=original_size,
        )

    def run(self, prepared: Sequence[np.ndarray]) -> np.ndarray:
        """Raw outputs, one row per letterboxed BGR uint8 image (see `run_tensor`)."""
        return self.run_tensor(to_tensor(list(prepared), dtype=self.input_dtype))

    def run_tensor(self, batch: np.ndarray) -> np.ndarray:
        """Raw outputs for an NCHW tensor (RGB, 0..1), one `session.run` per chunk.

        A dynamic-batch model runs the whole batch at once. A static-batch model runs in
        chunks of its batch size, the last chunk padded with grey rows.
        """
        batch = batch.astype(self.input_dtype, copy=False)
        outputs = []
        for rows in self.chunks(len(batch)):
            part = batch[rows]
            real, chunk = len(part), self.batch or len(part)
            if real < chunk:
                grey = np.full((chunk - real, *part.shape[1:]), PAD_VALUE / 255, part.dtype)
                part = np.concatenate([part, grey])
            outputs.append(self.backend.run(part)[:real])
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def chunks(self, n: int) -> list[slice]:
        """The rows of an n-image batch that one engine call takes: all of them for a
        dynamic-batch model, `batch` at a time for a static one (the last chunk padded)."""
        size = self.batch or max(n, 1)
        return [slice(start, start + size) for start in range(0, n, size)]

    def decode(
        self,
        output: np.ndarray,
        info: LetterboxInfo,
        *,
        conf: float | None = None,
        iou: float | None = None,
    ) -> Detections:
        """Detections in original pixels from one image's output row."""
        return decode(
            output,
            info,
            layout=self.layout,
            names=self.names,
            conf=self.conf if conf is None else conf,
            iou=self.iou if iou is None else iou,
            max_det=self.max_det,
        )

    # -- reference models ------------------------------------------------------------------

    @property
    def needs_reference(self) -> bool:
        return self.contract.reference

    def reference_input(self, frame: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, Aligned]:
        """The network's image for `frame` judged against `reference`, and how they aligned."""
        aligned = align(frame, reference, motion=self.contract.motion)
        return compose(frame, aligned.reference), aligned

    def _inputs(self, images: Sequence[np.ndarray],
                references: Sequence[np.ndarray | None] | None) -> list[np.ndarray]:
        if not self.needs_reference:
            return list(images)  # a plain model ignores references
        if references is None or len(references) != len(images) or any(r is None for r in references):
            raise ModelError(
                f"{self.path} judges each frame against a reference image (exported from a "
                "reference recipe) and was given none; pass the golden part (qc predict "
                "--reference, a station's registered reference), or use a plain model"
            )
        return [self.reference_input(image, reference)[0]
                for image, reference in zip(images, references, strict=True) if reference is not None]

    # -- conveniences ----------------------------------------------------------------------

    def predict(
        self,
        images: Sequence[np.ndarray],
        *,
        conf: float | None = None,
        iou: float | None = None,
        original_sizes: Sequence[tuple[int, int] | None] | None = None,
        references: Sequence[np.ndarray | None] | None = None,
    ) -> list[Detections]:
        """Detections for BGR images (as `cv2.imread` gives them), one batch; `references`,
        one golden part per image, for a reference model."""
        if not len(images):
            return []
        return self.predict_inputs(self._inputs(images, references), conf=conf, iou=iou,
                                   original_sizes=original_sizes)

    def predict_inputs(
        self,
        inputs: Sequence[np.ndarray],
        *,
        conf: float | None = None,
        iou: float | None = None,
        original_sizes: Sequence[tuple[int, int] | None] | None = None,
    ) -> list[Detections]:
        """Detections for the network's images as they are: frames for a plain model, or
        what `reference_input` composed for a reference model."""
        if not len(inputs):
            return []
        sizes = original_sizes or [None] * len(inputs)
        same_shapes = len({image.shape for image in inputs}) == 1
        prepared = [
            self.prepare(image, original_size=size, minimal=same_shapes)
            for image, size in zip(inputs, sizes, strict=True)
        ]
        outputs = self.run([tensor for tensor, _ in prepared])
        return [
            self.decode(output, info, conf=conf, iou=iou)
            for output, (_, info) in zip(outputs, prepared, strict=True)
        ]

    def predict_tiled(
        self,
        image: np.ndarray,
        tiling: Tiling,
        *,
        conf: float | None = None,
        iou: float | None = None,
        original_size: tuple[int, int] | None = None,
        reference: np.ndarray | None = None,
    ) -> Detections:
        """Detections for one large frame judged tile by tile (inspection/detect/tiling.py):
        the frame (composed with its aligned reference, for a reference model) is cut into
        overlapping tiles, run as one batch, and the boxes merged in frame pixels."""
        network = self._inputs([image], None if reference is None else [reference])[0]
        return self.predict_tiled_input(network, tiling, conf=conf, iou=iou, original_size=original_size)

    def predict_tiled_input(
        self,
        network: np.ndarray,
        tiling: Tiling,
        *,
        conf: float | None = None,
        iou: float | None = None,
        original_size: tuple[int, int] | None = None,
    ) -> Detections:
        """`predict_tiled` for the network's image as it is (see `predict_inputs`)."""
        tiles = cut(network, tiling)
        found = self.predict_inputs([crop for _, _, crop in tiles], conf=conf, iou=iou)
        width, height = original_size or (network.shape[1], network.shape[0])
        return merge(found, [(x, y) for x, y, _ in tiles], image_wh=(width, height),
                     scale=width / network.shape[1], max_det=self.max_det)

    def load_bytes(
        self,
        data: bytes,
        *,
        reduce: int | str = "auto",
        max_pixels: int = imaging.DEFAULT_MAX_PIXELS,
        header: imaging.ImageHeader | None = None,
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """Decode an encoded frame for this model: (pixels, original (width, height)).

        `reduce="auto"` decodes a JPEG at 1/2, 1/4 or 1/8 size when the network would shrink
        it at least that much anyway (imaging.reduction_for); 1, 2, 4 or 8 (or "1"...) force
        a factor. `header` is the frame's `imaging.probe`, when the caller has it already.
        """
        header = header or imaging.probe(data)
        if reduce == "auto":
            factor = imaging.reduction_for(header, input_hw=self.input_hw)
        else:
            factor = int(reduce) if str(reduce).isdigit() else reduce  # type: ignore[assignment]  # decode names a bad one
        image = imaging.decode(data, max_pixels=max_pixels, reduce=factor, header=header)
        return image, (header.width, header.height)

    def predict_bytes(
        self,
        data: bytes,
        *,
        conf: float | None = None,
        iou: float | None = None,
        reduce: int | str = "auto",
        reference: np.ndarray | None = None,
    ) -> Detections:
        image, size = self.load_bytes(data, reduce=reduce)
        if reference is not None:  # a frame decoded at 1/2 or 1/4 is judged against a reference shrunk alike
            reference = fit_reference(reference, image.shape[:2])
        return self.predict([image], conf=conf, iou=iou, original_sizes=[size],
                            references=None if reference is None else [reference])[0]
