"""Where a batch tensor becomes raw outputs: the seam between the detector and an engine.

Example::

    from inspection.detect.backend import OrtBackend

    backend = OrtBackend.open("model.onnx", providers=["cpu"])
    print(backend.input.name, backend.input.shape, backend.output.dtype, backend.providers)
    raw = backend.run(tensor)            # NCHW float32 (or float16), one engine call

`Detector` holds an `InferenceBackend` and nothing else in the house touches an engine: the
ONNX Runtime session lives in `OrtBackend` only, so a remote engine (a Triton client) can
be a second backend with the same five members. A backend runs exactly the batch it is given;
chunking a batch for a static-batch model is the detector's job (`Detector.run_tensor`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inspection.detect import providers as _providers
from inspection.errors import ModelError

log = logging.getLogger("qc.detector")

_GPU_PROVIDERS = (_providers.TENSORRT, _providers.CUDA)


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: its name, element type as ONNX writes it ("float",
    "float16", "uint8", ...), and shape with None for a dynamic dimension."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @property
    def numpy_dtype(self) -> type[np.generic]:
        return np.float16 if self.dtype == "float16" else np.float32


class InferenceBackend(Protocol):
    input: TensorSpec
    output: TensorSpec  # the first output: the detection head
    metadata: dict[str, str]  # the model's custom metadata (names, imgsz, stride, qc's own)
    # GPU providers asked for that did not load (ORT falls back to the CPU without a word):
    # the service refuses to start on them, or reports them on /readyz and in metrics.
    missing_providers: list[str]

    @property
    def providers(self) -> list[str]:
        """What really runs the model, best first (e.g. CUDAExecutionProvider)."""
        ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output for one NCHW batch, in one engine call."""
        ...


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as error:  # neither extra installed
        raise ModelError(
            "ONNX Runtime is not installed: pip install 'qc[cpu]' (or 'qc[gpu]' on a CUDA machine)"
        ) from error
    return onnxruntime


def _spec(node: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in node.shape)
    return TensorSpec(node.name, node.type.removeprefix("tensor(").removesuffix(")"), shape)


class OrtBackend:
    """An ONNX Runtime session. Thread-safe, as ORT sessions are."""

    def __init__(self, session: Any, path: Path) -> None:
        self._session, self.path = session, path
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{path}: inputs {[list(i.shape) for i in inputs]}, "
                             f"{len(outputs)} outputs; expected one image input and an output")
        self.input, self.output = _spec(inputs[0]), _spec(outputs[0])
        self.raw_input_shape, self.raw_output_shape = list(inputs[0].shape), list(outputs[0].shape)
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)
        self.missing_providers: list[str] = []

    @classmethod
    def open(cls, path: str | Path, *, providers: Sequence[str] = ("auto",), threads: int = 0,
             cache_dir: Path | None = None, expected: str = "", spin: bool = True) -> OrtBackend:
        path = Path(path)
        ort = _import_ort()
        if not path.is_file():
            raise ModelError(f"{path}: no such model file; pass the path of an .onnx file")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: provider fallbacks are reported by us
        if threads:
            options.intra_op_num_threads = threads
        if not spin:
            # Idle intra-op threads sleep instead of spinning: they no longer take the cores
            # that decoding and recording need in the same process.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        chosen = _providers.resolve(list(providers), cache_dir=cache_dir)
        try:
            session = ort.InferenceSession(
                str(path),
                sess_options=options,
                providers=[name for name, _ in chosen],
                provider_options=[opts for _, opts in chosen],
            )
        except Exception as error:  # ORT raises its own pybind types for bad files
            raise ModelError(
                f"{path}: ONNX Runtime cannot load it ({_first_line(error)}); {expected}"
            ) from error
        backend = cls(session, path)
        backend.missing_providers = _report_fallback(
            path, requested=providers, chosen=[n for n, _ in chosen], running=session.get_providers())
        return backend

    @property
    def providers(self) -> list[str]:
        return self._session.get_providers()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self.input.name: batch})[0]


def _report_fallback(path: Path, *, requested: Sequence[str], chosen: list[str],
                     running: list[str]) -> list[str]:
    """ORT falls back without a word: a GPU provider named but not running is reported, and so
    is 'auto' in a GPU build ending up on the CPU alone (a TensorRT-less CUDA box is fine).
    Returns the missing providers, for the caller to act on."""
    named = [_providers.full_name(p) for p in requested if p.strip().lower() != "auto"]
    if named:
        missing = [p for p in named if p in _GPU_PROVIDERS and p not in running]
    elif not any(p in _GPU_PROVIDERS for p in running):
        missing = [n for n in chosen if n in _GPU_PROVIDERS]
    else:
        missing = []
    if missing:
        log.warning(
            "%s: %s requested but not available, running on %s; check that onnxruntime-gpu "
            "and the CUDA, cuDNN and TensorRT libraries it needs are installed and on the "
            "library path (or set QC_PROVIDERS=cpu)",
            path, ", ".join(missing), ", ".join(running),
        )
    return missing
