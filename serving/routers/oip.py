"""Open Inference Protocol v2 (KServe v2, Triton HTTP/REST): the served model for generic clients.

Example::

    import json
    import numpy as np
    import tritonclient.http as http

    client = http.InferenceServerClient("127.0.0.1:8000")
    auth = {"Authorization": "Bearer qc_..."}
    client.is_server_ready()                              # health: no key needed
    client.get_model_metadata("default", headers=auth)    # name = QC_MODEL_NAME

    # (a) the raw network tensor: letterboxed RGB in 0..1 -> the model's raw output
    images = http.InferInput("images", [1, 3, 640, 640], "FP32")
    images.set_data_from_numpy(tensor)                    # binary by default
    raw = client.infer("default", [images], headers=auth).as_numpy("output0")

    # (b) encoded JPEG/PNG/BMP frames -> detections, decoded as the inspect endpoint does
    image = http.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([jpeg_bytes], dtype=object))
    result = client.infer("default", [image], headers=auth, parameters={"conf": 0.25})
    json.loads(result.as_numpy("detections")[0])   # [{"class", "class_id", "confidence", "box"}]

Routes: /v2/health/live and /v2/health/ready need no key (probes); /v2, model metadata and
readiness need any key; infer needs a station or engineer key. Every refusal is
`{"error": message}`, the protocol's error shape, which tritonclient raises as its message.

Both directions speak the binary tensor data extension, tritonclient's default: with
`Inference-Header-Content-Length: N` the first N bytes of the body are the JSON header and the
rest the inputs' raw little-endian bytes in input order (BYTES elements each prefixed with
their uint32 length), each input giving its `parameters.binary_data_size`. Outputs come back
binary when asked (`outputs[i].parameters.binary_data` or `parameters.binary_data_output`).
Request bodies may be gzip or deflate compressed (tritonclient's request_compression_algorithm).

Inputs: `images` FP32 or FP16 [B, 3, H, W], RGB in 0..1 as the model takes it, or UINT8 in
0..255 (divided by 255 here; a quarter of the bytes); or `image` BYTES [B] (or [B, 1]). Request
parameters `conf` (default 0.25) and `iou` (default QC_IOU) filter the `detections`.

Inference goes through the micro-batcher, so OIP traffic shares `session.run` calls with the
stations. A request holds at most QC_MAX_BATCH images, as Triton refuses batches above a
model's max_batch_size. Only the production version is served: another version is 404.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import struct
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match

from inspection.errors import ImageError
from serving.auth import current_key, require
from serving.model_manager import LoadedModel
from serving.pipeline import Frame, InputSizeChanged, TensorFrame
from serving.routers.health import readiness
from serving.routers.inspect import read_limited

log = logging.getLogger("qc.oip")

HEADER_LENGTH = "Inference-Header-Content-Length"
IMAGE_INPUT, DETECTIONS_OUTPUT = "image", "detections"
PLATFORM = "onnxruntime_onnx"
# The Ultralytics predict default. The service's detector reports boxes down to 0.01 for
# station rules to judge; a generic client without rules would drown in those.
DEFAULT_CONF = 0.25
TENSOR_DATATYPES = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2"), "UINT8": np.dtype("u1")}
_ONNX_TYPES = {"float": "FP32", "float16": "FP16", "double": "FP64", "uint8": "UINT8",
               "int8": "INT8", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}


class OIPError(Exception):
    """A refusal on a /v2 route, answered as `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


def _bad(message: str) -> OIPError:
    return OIPError(400, message)


# -- errors in the protocol's shape ----------------------------------------------------------


async def error_response(request: Request, error: Exception) -> Response:
    """Any exception of a /v2 route as `{"error": ...}`. The app's own handlers (FastAPI's and
    serving/errors.py's) choose status, headers and metrics, as on every other route; only the
    body's shape changes, since tritonclient reads `error` and nothing else."""
    if isinstance(error, OIPError):
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=error.headers)
    handlers = request.app.exception_handlers
    handler = handlers.get(error.status_code) if isinstance(error, HTTPException) else None
    for kind in type(error).__mro__:
        handler = handler or handlers.get(kind)
    if handler is None:  # a bug: still in the protocol's shape, and logged with its traceback
        log.error("v2 request failed", exc_info=error)
        return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"},
                            status_code=500)
    response = handler(request, error)
    if inspect.isawaitable(response):
        response = await response
    try:
        detail = json.loads(response.body)["detail"]
    except (AttributeError, KeyError, TypeError, ValueError):
        detail = str(error)
    headers = {k: v for k, v in response.headers.items()
               if k.lower() not in ("content-length", "content-type")}
    message = detail if isinstance(detail, str) else json.dumps(detail)
    return JSONResponse({"error": message}, status_code=response.status_code, headers=headers)


class _V2Route(APIRoute):
    """Wraps dependencies and handler alike, so that a 401 from the auth dependency is in the
    v2 shape too (an app-wide exception handler would change the /v1 routes' shape)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as error:
                return await error_response(request, error)

        return route


router = APIRouter(tags=["oip"], route_class=_V2Route)


# -- the served model and its tensors --------------------------------------------------------


def served_model(request: Request, name: str, version: str | None = None) -> LoadedModel:
    state = request.app.state
    served = state.settings.model_name
    if name != served:
        raise OIPError(404, f"unknown model {name!r}: this server serves {served!r}")
    model = state.manager.current
    if model is None:
        raise OIPError(503, f"model {name!r} is not loaded; promote a version with "
                            "qc models promote", {"Retry-After": "5"})
    if version is not None and version != model.version:
        raise OIPError(404, f"version {version!r} of {name!r} is not served; "
                            f"this server serves {model.version!r} (the production version)")
    return model


def _dim(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else -1  # symbolic or unknown: dynamic


def _onnx_datatype(onnx_type: str) -> str:
    inner = onnx_type.removeprefix("tensor(").removesuffix(")")
    return _ONNX_TYPES.get(inner, inner.upper())


def model_tensors(model: LoadedModel) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs as the metadata route describes them.

    The batch dimension is -1 whatever the ONNX file says: the micro-batcher takes any number
    of rows and runs a static-batch model in chunks. Height and width are the size the service
    letterboxes to, which for a dynamic-size model is its configured size.
    """
    detector = model.detector
    session_input = detector.session.get_inputs()[0]
    session_output = detector.session.get_outputs()[0]
    height, width = detector.imgsz
    inputs = [
        {"name": detector.input_name, "datatype": _onnx_datatype(session_input.type),
         "shape": [-1, 3, height, width]},
        {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
    ]
    outputs = [
        {"name": session_output.name, "datatype": _onnx_datatype(session_output.type),
         "shape": [-1, *(_dim(d) for d in session_output.shape[1:])]},
        {"name": DETECTIONS_OUTPUT, "datatype": "BYTES", "shape": [-1]},
    ]
    return inputs, outputs


# -- request decoding ------------------------------------------------------------------------


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    value: Any  # np.ndarray of `shape`, or for BYTES a flat list of bytes


@dataclass
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: dict[str, bool] | None  # requested output -> binary; None: the defaults
    binary_output: bool
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Accepted:
    """What this model accepts: the tensor input's name and size; the most images per request."""

    tensor_name: str
    height: int
    width: int
    max_batch: int

    def check(self, name: str, datatype: str, shape: list[int]) -> None:
        b = self.max_batch
        if name == self.tensor_name:
            if datatype not in TENSOR_DATATYPES:
                raise _bad(f"input {name!r}: datatype {datatype!r}; send FP32 or FP16 "
                           "(RGB in 0..1) or UINT8 (RGB in 0..255)")
            expected = [3, self.height, self.width]
            if len(shape) != 4 or shape[1:] != expected or not 1 <= shape[0] <= b:
                raise _bad(f"input {name!r}: shape {shape}; expected "
                           f"[B, 3, {self.height}, {self.width}] with 1 <= B <= {b}: "
                           "letterboxed to the model's input size")
        elif name == IMAGE_INPUT:
            if datatype != "BYTES":
                raise _bad(f"input {name!r}: datatype {datatype!r}; send BYTES "
                           "(encoded JPEG, PNG or BMP)")
            if len(shape) not in (1, 2) or not 1 <= shape[0] <= b or shape[1:] not in ([], [1]):
                raise _bad(f"input {name!r}: shape {shape}; expected [B] or [B, 1] "
                           f"with 1 <= B <= {b}")
        else:
            raise _bad(f"unknown input {name!r}: this model takes {self.tensor_name!r} "
                       f"(a [B, 3, {self.height}, {self.width}] tensor) or {IMAGE_INPUT!r} "
                       "(BYTES: encoded images)")


def _header_length(value: str | None, body: bytes) -> int:
    if value is None:
        return len(body)
    length = int(value) if value.strip().isascii() and value.strip().isdigit() else -1
    if not 0 < length <= len(body):
        raise _bad(f"{HEADER_LENGTH}: {value!r} is not a JSON header length within the "
                   f"{len(body)}-byte body")
    return length


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)


def parse_request(body: bytes, header_length: str | None, accepted: Accepted) -> InferRequest:
    """Header JSON and tensors of an infer request, every input checked against `accepted`."""
    split = _header_length(header_length, body)
    try:
        doc = json.loads(body[:split])
    except (ValueError, RecursionError) as error:  # RecursionError: nested beyond reason
        raise _bad(f"malformed JSON in the inference request header: {error}") from error
    if not isinstance(doc, dict):
        raise _bad("the inference request must be a JSON object with an 'inputs' list")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("the inference request needs 'inputs': a non-empty list of tensors")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _bad(f"'id' must be a string, not {type(request_id).__name__}")
    binary, offset, tensors = body[split:], 0, []
    for index, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise _bad(f"inputs[{index}] must be an object with name, shape, datatype and data")
        name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
        if not isinstance(name, str):
            raise _bad(f"inputs[{index}] has no 'name'")
        if not isinstance(datatype, str):
            raise _bad(f"input {name!r} has no 'datatype'")
        if not _int_list(shape):
            raise _bad(f"input {name!r}: 'shape' must be a list of non-negative integers, "
                       f"not {shape!r}")
        if any(t.name == name for t in tensors):
            raise _bad(f"input {name!r} is given twice")
        accepted.check(name, datatype, shape)
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise _bad(f"input {name!r}: 'parameters' must be an object")
        size = parameters.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise _bad(f"input {name!r}: binary_data_size must be a non-negative integer, "
                           f"not {size!r}")
            if "data" in spec:
                raise _bad(f"input {name!r} has both 'data' and binary_data_size; send one")
            raw = binary[offset : offset + size]
            if len(raw) < size:
                raise _bad(f"input {name!r}: binary_data_size is {size} but only {len(raw)} "
                           f"bytes of binary data remain after the {split}-byte JSON header "
                           f"(its length is the {HEADER_LENGTH} header)")
            offset += size
            value = _from_binary(name, datatype, shape, raw)
        elif "data" in spec:
            value = _from_json(name, datatype, shape, spec["data"])
        else:
            raise _bad(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
        tensors.append(Tensor(name, datatype, shape, value))
    if offset != len(binary):
        raise _bad(f"the body holds {len(binary)} bytes of binary data but the inputs' "
                   f"binary_data_size add up to {offset}")
    if len(tensors) > 1:
        raise _bad(f"send one input, {accepted.tensor_name!r} or {IMAGE_INPUT!r}, not "
                   f"{[t.name for t in tensors]}")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _bad("'parameters' must be an object")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise _bad(f"parameters.binary_data_output must be true or false, not {binary_output!r}")
    return InferRequest(request_id, tensors, _requested_outputs(doc.get("outputs"), binary_output),
                        binary_output, parameters)


def _requested_outputs(outputs: Any, binary_default: bool) -> dict[str, bool] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise _bad("'outputs' must be a list of {name, parameters}")
    requested: dict[str, bool] = {}
    for index, spec in enumerate(outputs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _bad(f"outputs[{index}] must be an object with a 'name'")
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise _bad(f"output {spec['name']!r}: 'parameters' must be an object")
        if parameters.get("classification"):
            raise _bad(f"output {spec['name']!r}: the classification extension is not supported")
        binary = parameters.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise _bad(f"output {spec['name']!r}: binary_data must be true or false, "
                       f"not {binary!r}")
        requested[spec["name"]] = binary
    return requested


def _count(shape: list[int]) -> int:
    return math.prod(shape)


def _from_binary(name: str, datatype: str, shape: list[int], raw: bytes) -> Any:
    if datatype == "BYTES":
        return _split_bytes(name, raw, _count(shape))
    dtype = TENSOR_DATATYPES[datatype]
    needed = _count(shape) * dtype.itemsize
    if len(raw) != needed:
        raise _bad(f"input {name!r}: shape {shape} of {datatype} is {needed} bytes but its "
                   f"binary_data_size is {len(raw)}")
    return np.frombuffer(raw, dtype).reshape(shape)


def _split_bytes(name: str, raw: bytes, count: int) -> list[bytes]:
    """BYTES elements on the wire: each a little-endian uint32 length, then that many bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _bad(f"input {name!r}: BYTES data cut short inside an element's 4-byte length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _bad(f"input {name!r}: BYTES element {len(items)} says {length} bytes but only "
                       f"{len(raw) - offset} remain")
        items.append(raw[offset : offset + length])
        offset += length
    if len(items) != count:
        raise _bad(f"input {name!r}: shape holds {count} elements but the BYTES data has "
                   f"{len(items)}")
    return items


def _flatten(data: Any) -> list:
    if not isinstance(data, list):
        return [data]
    return [item for part in data for item in _flatten(part)]


def _from_json(name: str, datatype: str, shape: list[int], data: Any) -> Any:
    if not isinstance(data, list):
        raise _bad(f"input {name!r}: 'data' must be a list (flat or nested, row-major)")
    count = _count(shape)
    if datatype == "BYTES":
        try:
            items = _flatten(data)
        except RecursionError as error:
            raise _bad(f"input {name!r}: 'data' is nested too deeply") from error
        if not all(isinstance(item, str) for item in items):
            raise _bad(f"input {name!r}: BYTES data in JSON must be strings; send encoded images "
                       "as binary data (tritonclient's default)")
        if len(items) != count:
            raise _bad(f"input {name!r}: shape {shape} holds {count} elements but data has "
                       f"{len(items)}")
        return [item.encode("utf-8", "surrogatepass") for item in items]  # "\ud800" is valid JSON
    try:
        values = np.asarray(data, dtype=np.float64).reshape(-1)  # nested lists are row-major
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        raise _bad(f"input {name!r}: data must be numbers in (nested) lists ({error})") from error
    if values.size != count:
        raise _bad(f"input {name!r}: shape {shape} holds {count} values but data has {values.size}")
    if not np.isfinite(values).all():
        raise _bad(f"input {name!r}: data holds non-numbers (null, NaN or infinity)")
    if datatype == "UINT8" and ((values < 0) | (values > 255) | (values != np.round(values))).any():
        raise _bad(f"input {name!r}: UINT8 data must be whole numbers in 0..255")
    return values.astype(TENSOR_DATATYPES[datatype]).reshape(shape)


def _fraction(parameters: dict, key: str, default: float) -> float:
    value = parameters.get(key, default)
    if type(value) not in (int, float) or not 0 <= value <= 1:
        raise _bad(f"parameters.{key} must be a number in 0..1, not {value!r}")
    return float(value)


async def _read_body(request: Request, limit: int) -> bytes:
    body = await read_limited(request, limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise OIPError(415, f"Content-Encoding {encoding!r}: send gzip, deflate or none")
    # tritonclient's "deflate" is zlib-wrapped; the limit holds for the decompressed size.
    inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise _bad(f"body is not valid {encoding} data: {error}") from error
    if len(plain) > limit:
        raise OIPError(413, f"decompressed body is over the limit of {limit:,} bytes")
    if not inflater.eof:
        raise _bad(f"{encoding} body is cut short")
    return plain


def _body_limit(settings, accepted: Accepted) -> int:
    # A full batch of FP32 tensors at 640 is 39 MB, over the 32 MB default for one frame.
    full_batch = accepted.max_batch * 3 * accepted.height * accepted.width * 4
    return max(settings.max_body_bytes, full_batch + (1 << 20))


# -- response encoding -----------------------------------------------------------------------


def _datatype_of(array: np.ndarray) -> str:
    return {np.dtype("float32"): "FP32", np.dtype("float16"): "FP16"}.get(array.dtype, "FP32")


def _output(name: str, datatype: str, shape: list[int], value: Any,
            binary: bool) -> tuple[dict, bytes]:
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if datatype == "BYTES":
        if binary:
            raw = b"".join(struct.pack("<I", len(item)) + item for item in value)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            return tensor, raw
        tensor["data"] = [item.decode() for item in value]
        return tensor, b""
    if datatype == "FP32":
        value = value.astype("<f4", copy=False)
    if binary:
        raw = np.ascontiguousarray(value).tobytes()
        tensor["parameters"] = {"binary_data_size": len(raw)}
        return tensor, raw
    tensor["data"] = value.reshape(-1).tolist()
    return tensor, b""


def encode_response(header: dict, parts: list[tuple[dict, bytes]]) -> Response:
    header["outputs"] = [tensor for tensor, _ in parts]
    text = json.dumps(header, separators=(",", ":")).encode()
    binary = b"".join(raw for _, raw in parts)
    if not any("parameters" in tensor for tensor, _ in parts):
        return Response(text, media_type="application/json")
    return Response(text + binary, media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(text))})


# -- routes ----------------------------------------------------------------------------------


@router.get("/v2/health/live")
def live() -> dict:
    """The process is up (no key: probes)."""
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request):
    """A model is loaded and the database is reachable (no key: probes)."""
    ok, body = await readiness(request)
    if ok:
        return {"ready": True, **body}
    reason = "no model loaded" if body["model"] is None else f"database {body['database']}"
    return JSONResponse({"ready": False, "error": f"not ready: {reason}", **body}, status_code=503)


@router.get("/v2", dependencies=[Depends(current_key)])
def server_metadata(request: Request) -> dict:
    return {"name": "qc", "version": request.app.version, "extensions": ["binary_tensor_data"]}


def _metadata(request: Request, name: str, version: str | None) -> dict:
    model = served_model(request, name, version)
    inputs, outputs = model_tensors(model)
    return {"name": model.name, "versions": [model.version], "platform": PLATFORM,
            "inputs": inputs, "outputs": outputs}


@router.get("/v2/models/{name}", dependencies=[Depends(current_key)])
def model_metadata(name: str, request: Request) -> dict:
    return _metadata(request, name, None)


@router.get("/v2/models/{name}/versions/{version}", dependencies=[Depends(current_key)])
def model_version_metadata(name: str, version: str, request: Request) -> dict:
    return _metadata(request, name, version)


@router.get("/v2/models/{name}/ready", dependencies=[Depends(current_key)])
def model_ready(name: str, request: Request) -> dict:
    model = served_model(request, name)
    return {"name": model.name, "version": model.version, "ready": True}


@router.get("/v2/models/{name}/versions/{version}/ready", dependencies=[Depends(current_key)])
def model_version_ready(name: str, version: str, request: Request) -> dict:
    model = served_model(request, name, version)
    return {"name": model.name, "version": model.version, "ready": True}


@router.post("/v2/models/{name}/infer", dependencies=[Depends(require("station", "engineer"))])
async def infer(name: str, request: Request) -> Response:
    """Raw tensors through the model, or encoded images to detections; JSON or binary."""
    return await _infer(request, name, None)


@router.post("/v2/models/{name}/versions/{version}/infer",
             dependencies=[Depends(require("station", "engineer"))])
async def infer_version(name: str, version: str, request: Request) -> Response:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    started = time.monotonic()
    state = request.app.state
    settings = state.settings
    model = served_model(request, name, version)
    height, width = model.detector.imgsz
    accepted = Accepted(model.detector.input_name, height, width, settings.max_batch)
    body = await _read_body(request, _body_limit(settings, accepted))
    parsed = parse_request(body, request.headers.get(HEADER_LENGTH), accepted)
    tensor = parsed.inputs[0]
    raw_name = model.detector.session.get_outputs()[0].name
    wanted = _wanted_outputs(parsed, raw_name)
    conf = _fraction(parsed.parameters, "conf", DEFAULT_CONF)
    iou = _fraction(parsed.parameters, "iou", model.detector.iou)

    frames = await _frames(state, tensor)
    try:
        results = await state.batcher.submit_many(
            frames, deadline=started + settings.deadline_ms / 1000)
    except InputSizeChanged as error:
        raise OIPError(409, str(error)) from error
    ran = {result.model.version for result in results}
    if len(ran) > 1 or (version is not None and version not in ran):
        raise OIPError(409, f"the model was swapped to {results[-1].model.version!r} while this "
                            "request waited; send it again")
    used: LoadedModel = results[0].model

    parts = []
    if raw_name in wanted:
        rows = np.stack([r.output[0] if isinstance(r.output, tuple) else r.output for r in results])
        parts.append(_output(raw_name, _datatype_of(rows), list(rows.shape), rows,
                             wanted[raw_name]))
    if DETECTIONS_OUTPUT in wanted:
        records = await asyncio.to_thread(_detections, used, results, conf, iou)
        shape = [len(records)] + tensor.shape[1:]  # as the images came: [B] or [B, 1]
        parts.append(_output(DETECTIONS_OUTPUT, "BYTES", shape, records, wanted[DETECTIONS_OUTPUT]))
    header: dict[str, Any] = {"model_name": used.name, "model_version": used.version}
    if parsed.id is not None:
        header["id"] = parsed.id
    return encode_response(header, parts)


def _wanted_outputs(parsed: InferRequest, raw_name: str) -> dict[str, bool]:
    """Output name -> binary. Tensors give the raw output; images also their detections
    (the default for them)."""
    name = parsed.inputs[0].name
    available = [raw_name] + ([DETECTIONS_OUTPUT] if name == IMAGE_INPUT else [])
    wanted = parsed.outputs or {available[-1]: parsed.binary_output}
    for output in wanted:
        if output not in available:
            raise _bad(f"output {output!r} is not produced for input {name!r}; ask for "
                       f"{' or '.join(map(repr, available))}")
    return wanted


async def _frames(state, tensor: Tensor) -> list[Frame | TensorFrame]:
    if tensor.name == IMAGE_INPUT:
        return list(await asyncio.gather(*(asyncio.to_thread(_decode_image, state, index, data)
                                           for index, data in enumerate(tensor.value))))
    pixels = tensor.value
    if tensor.datatype == "UINT8":  # RGB in 0..255: a quarter of the bytes of FP32
        pixels = pixels.astype(np.float32) / np.float32(255)
    return [TensorFrame(np.ascontiguousarray(row)) for row in pixels]


def _decode_image(state, index: int, data: bytes) -> Frame:
    """One encoded image to a letterboxed frame, as the inspect endpoint decodes stations'."""
    detector = state.manager.current.detector
    settings = state.settings
    try:
        image, size = detector.load_bytes(data, reduce=settings.decode,
                                          max_pixels=settings.max_pixels)
    except ImageError as error:
        state.metrics.rejected.labels(reason="bad_image").inc()
        raise type(error)(f"input {IMAGE_INPUT!r} element {index}: {error}") from error
    tensor, info = detector.prepare(image, original_size=size)
    return Frame(image=image, size=size, tensor=tensor, info=info)


def _detections(model: LoadedModel, results: list, conf: float, iou: float) -> list[bytes]:
    encoded = []
    for result in results:
        output, info = result.output
        detections = model.detector.decode(output, info, conf=conf, iou=iou)
        encoded.append(json.dumps(detections.to_records(), separators=(",", ":")).encode())
    return encoded


@router.api_route("/v2/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"],
                  include_in_schema=False)
def unknown_route(rest: str, request: Request) -> Response:
    """Anything else under /v2 (repository, config, statistics): refused in the v2 shape."""
    allowed = sorted({method for route in router.routes if route.path != "/v2/{rest:path}"
                      and route.matches(request.scope)[0] is Match.PARTIAL
                      for method in getattr(route, "methods", ())})
    if allowed:
        raise OIPError(405, f"{request.method} is not allowed on /v2/{rest}; "
                            f"use {', '.join(allowed)}", {"Allow": ", ".join(allowed)})
    raise OIPError(404, f"no v2 route /v2/{rest}: this server implements health, server and model "
                        "metadata, model readiness and infer")
