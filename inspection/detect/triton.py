"""A remote inference engine: NVIDIA Triton (or any Open Inference Protocol server) as a backend.

Example::

    from inspection.detect.detector import Detector
    from inspection.detect.onnx_file import read_metadata
    from inspection.detect.triton import TritonBackend

    backend = TritonBackend.open("triton.plant:8000", "pcb", version="3",
                                 metadata=read_metadata("models/pcb/v3/model.onnx"))
    detector = Detector("models/pcb/v3/model.onnx", backend=backend)   # same boxes, remote engine

The detector letterboxes and decodes here; only the network runs on the server, through
tritonclient's HTTP client (binary tensors both ways). The service selects it with
`QC_BACKEND=triton`, `QC_TRITON_URL` and, for a server behind auth (qc's own /v2 routes),
`QC_TRITON_KEY`. Its model repository is written by `qc models triton` (inspection/models/
triton_repo.py), one Triton version per registry version, so a promote in qc asks Triton for
the version it already holds.

`metadata` (class names, imgsz, stride) comes from the ONNX file when the caller has it (the
service has the registry's copy) or else from the model config's `parameters`, which the
repository writer fills with the same keys. tritonclient is imported here and nowhere else in
`inspection`: the core installs without it (extra `triton`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from inspection.detect.backend import TensorSpec
from inspection.errors import ModelError

# Open Inference Protocol datatypes and the ONNX element types TensorSpec holds.
_ONNX_TYPE = {"FP32": "float", "FP16": "float16", "FP64": "double", "UINT8": "uint8",
              "INT8": "int8", "INT32": "int32", "INT64": "int64", "BOOL": "bool"}
_WIRE_TYPE = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16"}


def _import_http() -> tuple[Any, type[Exception]]:  # tritonclient is untyped
    try:
        from tritonclient import http
        from tritonclient.utils import InferenceServerException
    except ImportError as error:
        raise ModelError("QC_BACKEND=triton needs tritonclient: pip install 'qc[triton]'") from error
    return http, InferenceServerException


def _spec(tensor: Mapping) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in tensor["shape"])
    return TensorSpec(tensor["name"], _ONNX_TYPE.get(tensor["datatype"], tensor["datatype"].lower()), shape)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__


def _split_url(url: str) -> tuple[str, bool]:
    """tritonclient takes host:port[/base]; `https://` turns TLS on (a proxy in front)."""
    for scheme, ssl in (("https://", True), ("http://", False)):
        if url.startswith(scheme):
            return url[len(scheme):].rstrip("/"), ssl
    return url.rstrip("/"), False


class TritonBackend:
    """A model on a Triton (or qc /v2) server. Thread-safe: one HTTP client per thread, as
    tritonclient's clients are not."""

    def __init__(self, url: str, model: str, *, version: str = "", key: str = "",
                 timeout_s: float = 30.0, metadata: Mapping[str, str] | None = None) -> None:
        self.url, self.model, self.version = url, model, version
        self.missing_providers: list[str] = []  # the server chooses its own devices
        self._address, self._ssl = _split_url(url)
        self._timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._local = threading.local()
        self._http, self._error = _import_http()
        described = self._call("get_model_metadata", model, model_version=version)
        inputs = [t for t in described.get("inputs", []) if t["datatype"] != "BYTES"]
        outputs = [t for t in described.get("outputs", []) if t["datatype"] != "BYTES"]
        if len(inputs) != 1 or not outputs:
            raise ModelError(f"{self.where}: inputs {inputs}, outputs {outputs}; expected one image "
                             "tensor input and an output (a model written by qc models triton)")
        self.input, self.output = _spec(inputs[0]), _spec(outputs[0])
        self.platform = str(described.get("platform", ""))
        self.metadata: dict[str, str] = dict(metadata) if metadata is not None else self._config_metadata()

    @classmethod
    def open(cls, url: str, model: str, **options: Any) -> TritonBackend:
        """Connect and read the model's tensors; a server that is down or lacks the model is
        a ModelError that names it."""
        return cls(url, model, **options)

    @property
    def where(self) -> str:
        return f"triton {self.url} model {self.model!r}" + (f" version {self.version}" if self.version else "")

    @property
    def providers(self) -> list[str]:
        # What runs the model is the server's business; name it so /readyz and metrics show it.
        return [f"triton:{self.url}/{self.model}" + (f"/{self.version}" if self.version else "")]

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._http.InferenceServerClient(
                self._address, ssl=self._ssl, connection_timeout=self._timeout_s,
                network_timeout=self._timeout_s)
            self._local.client = client
        return client

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._client(), method)(*args, headers=self._headers, **kwargs)
        except self._error as error:
            raise ModelError(f"{self.where}: {_first_line(error)}; check QC_TRITON_URL, that the "
                             "server holds this model and version (qc models triton), and "
                             "QC_TRITON_KEY") from error
        except OSError as error:  # refused, reset, unresolvable, timed out
            raise ModelError(f"{self.where}: cannot reach it ({_first_line(error)}); check "
                             "QC_TRITON_URL and that the server is up") from error

    def _config_metadata(self) -> dict[str, str]:
        """The `parameters` of the model config, where `qc models triton` writes the ONNX
        metadata. A server without the config route (qc's own /v2) gives none."""
        try:
            config = self._client().get_model_config(self.model, self.version, headers=self._headers)
        except (self._error, OSError):
            return {}
        parameters = config.get("parameters") or {}
        return {key: str(value.get("string_value", "")) for key, value in parameters.items()}

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch)
        tensor = self._http.InferInput(self.input.name, list(batch.shape),
                                       _WIRE_TYPE.get(batch.dtype, "FP32"))
        tensor.set_data_from_numpy(batch, binary_data=True)
        wanted = [self._http.InferRequestedOutput(self.output.name, binary_data=True)]
        result = self._call("infer", self.model, [tensor], model_version=self.version, outputs=wanted)
        output = result.as_numpy(self.output.name)
        if output is None or len(output) != len(batch):
            raise ModelError(f"{self.where}: answered {None if output is None else output.shape} "
                             f"for a batch of {len(batch)}")
        return output
