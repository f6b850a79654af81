"""The ONNX defect detector: bytes or pixels in, `Detections` out, on GPU or CPU.

Example::

    from inspection.detect.detector import Detector

    detector = Detector("model.onnx", conf=0.25, iou=0.7)      # warms up on load
    detections = detector.predict([image_bgr])[0]                # Ultralytics-identical boxes
    detections = detector.predict_bytes(jpeg_bytes)              # decodes, reduced when it pays
    print(detector.providers, detector.names, detector.imgsz)

Loads any detection model exported by Ultralytics (`model.export(format="onnx")`) or by
`qc export`: the raw head `[B, 4 + nc, N]` (NMS here) or the end-to-end layout `[B, K, 6]`,
fp32 or fp16, static or dynamic batch. Nothing is written to disk on load, except TensorRT's
engine cache, and only into the `cache_dir` the caller names (QC_HOME in the service).

The serving micro-batcher uses the three stages separately: `prepare` (per image, in a thread
pool), `run` (one `session.run` for the batch), `decode` (per image).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inspection.detect import imaging
from inspection.detect import providers as _providers
from inspection.detect.model_info import ModelInfo, parse_metadata
from inspection.detect.postprocess import Layout, decode
from inspection.detect.preprocess import PAD_VALUE, LetterboxInfo, letterbox, to_tensor
from inspection.detections import Detections
from inspection.errors import ModelError

_EXPECTED = (
    "expected a detection model exported by `qc export` or Ultralytics "
    "`YOLO(...).export(format='onnx')`: one input [B, 3, H, W] and an output "
    "[B, 4 + classes, N] (raw head) or [B, K, 6] (end-to-end)"
)
_GPU_PROVIDERS = (_providers.TENSORRT, _providers.CUDA)

log = logging.getLogger("qc.detector")


def _import_ort():
    try:
        import onnxruntime
    except ImportError as error:  # neither extra installed
        raise ModelError(
            "ONNX Runtime is not installed: pip install 'qc[cpu]' (or 'qc[gpu]' on a CUDA machine)"
        ) from error
    return onnxruntime


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
        cache_dir: Path | None = None,
        warmup: bool = True,
    ) -> None:
        self.path = Path(path)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.session = self._open(providers=providers, threads=threads, cache_dir=cache_dir)
        try:
            self.info: ModelInfo = parse_metadata(self.session.get_modelmeta().custom_metadata_map)
        except ModelError as error:
            raise ModelError(f"{self.path}: {error}") from error
        if self.info.task != "detect":
            raise ModelError(f"{self.path}: a {self.info.task!r} model; {_EXPECTED}")
        self._read_io(imgsz)
        if warmup:
            self.warmup()

    # -- loading ---------------------------------------------------------------------------

    def _open(self, *, providers: Sequence[str], threads: int, cache_dir: Path | None):
        ort = _import_ort()
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such model file; pass the path of an .onnx file")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: provider fallbacks are reported by us
        if threads:
            options.intra_op_num_threads = threads
        chosen = _providers.resolve(list(providers), cache_dir=cache_dir)
        try:
            session = ort.InferenceSession(
                str(self.path),
                sess_options=options,
                providers=[name for name, _ in chosen],
                provider_options=[opts for _, opts in chosen],
            )
        except Exception as error:  # ORT raises its own pybind types for bad files
            raise ModelError(
                f"{self.path}: ONNX Runtime cannot load it ({_first_line(error)}); {_EXPECTED}"
            ) from error
        # ORT falls back without a word: a GPU provider named but not running is reported, and
        # so is 'auto' in a GPU build ending up on the CPU alone (a TensorRT-less CUDA box is fine).
        running = session.get_providers()
        named = [_providers.full_name(p) for p in providers if p.strip().lower() != "auto"]
        if named:
            missing = [p for p in named if p in _GPU_PROVIDERS and p not in running]
        elif not any(p in _GPU_PROVIDERS for p in running):
            missing = [n for n, _ in chosen if n in _GPU_PROVIDERS]
        else:
            missing = []
        if missing:
            log.warning(
                "%s: %s requested but not available, running on %s; check that onnxruntime-gpu "
                "and the CUDA, cuDNN and TensorRT libraries it needs are installed and on the "
                "library path (or set QC_PROVIDERS=cpu)",
                self.path, ", ".join(missing), ", ".join(running),
            )
        return session

    def _read_io(self, imgsz: int | tuple[int, int] | None) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
            shapes = [list(i.shape) for i in inputs]
            raise ModelError(f"{self.path}: inputs {shapes}; {_EXPECTED}")
        if not outputs or len(outputs[0].shape) != 3:
            raise ModelError(f"{self.path}: output {list(outputs[0].shape) if outputs else []}; {_EXPECTED}")
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        batch, _, height, width = inputs[0].shape
        self.batch: int | None = batch if isinstance(batch, int) and batch > 0 else None
        self.dynamic_size = not (isinstance(height, int) and isinstance(width, int))
        wanted = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz) if imgsz else None
        if not self.dynamic_size:
            if wanted and wanted != (height, width):
                raise ModelError(
                    f"{self.path}: the model takes {height}x{width} inputs, not "
                    f"{wanted[0]}x{wanted[1]}; drop --imgsz or export again with that size"
                )
            self.imgsz = (height, width)
        else:
            stride = self.info.stride
            if wanted and any(side % stride for side in wanted):
                h, w = (max(stride, round(side / stride) * stride) for side in wanted)
                nearest = h if h == w else f"{h}x{w}"
                raise ModelError(
                    f"{self.path}: imgsz {wanted[0]}x{wanted[1]} is not a multiple of the model's "
                    f"stride {stride}; use the nearest valid size, --imgsz {nearest}, or drop --imgsz"
                )
            self.imgsz = wanted or self.info.imgsz or (640, 640)
        self.names = self.info.names
        self.layout = self._layout(list(outputs[0].shape))

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
        h, w = self.imgsz
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
        return self.session.get_providers()

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
            new_shape=self.imgsz,
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
        chunk = self.batch or len(batch)
        outputs = []
        for start in range(0, len(batch), chunk):
            part = batch[start : start + chunk]
            real = len(part)
            if real < chunk:
                grey = np.full((chunk - real, *part.shape[1:]), PAD_VALUE / 255, part.dtype)
                part = np.concatenate([part, grey])
            outputs.append(self.session.run(None, {self.input_name: part})[0][:real])
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

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

    # -- conveniences ----------------------------------------------------------------------

    def predict(
        self,
        images: Sequence[np.ndarray],
        *,
        conf: float | None = None,
        iou: float | None = None,
        original_sizes: Sequence[tuple[int, int] | None] | None = None,
    ) -> list[Detections]:
        """Detections for BGR images (as `cv2.imread` gives them), one batch."""
        if not len(images):
            return []
        sizes = original_sizes or [None] * len(images)
        same_shapes = len({image.shape for image in images}) == 1
        prepared = [
            self.prepare(image, original_size=size, minimal=same_shapes)
            for image, size in zip(images, sizes)
        ]
        outputs = self.run([tensor for tensor, _ in prepared])
        return [
            self.decode(output, info, conf=conf, iou=iou)
            for output, (_, info) in zip(outputs, prepared)
        ]

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
            factor = imaging.reduction_for(header, input_size=(self.imgsz[1], self.imgsz[0]))
        else:
            factor = int(reduce) if str(reduce).isdigit() else reduce  # decode names a bad one
        image = imaging.decode(data, max_pixels=max_pixels, reduce=factor, header=header)
        return image, (header.width, header.height)

    def predict_bytes(
        self,
        data: bytes,
        *,
        conf: float | None = None,
        iou: float | None = None,
        reduce: int | str = "auto",
    ) -> Detections:
        image, size = self.load_bytes(data, reduce=reduce)
        return self.predict([image], conf=conf, iou=iou, original_sizes=[size])[0]
