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
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from inspection.detect import imaging
from inspection.errors import DamagedImage, ImageError, ImageTooLarge
from serving.deps import KeyDep, StateDep, StationKey
from serving.model_manager import LoadedModel
from serving.oip_codec import (
    DETECTIONS_OUTPUT,
    HEADER_LENGTH,
    IMAGE_INPUT,
    Accepted,
    InferRequest,
    OIPError,
    Tensor,
    bad_request,
    body_limit,
    datatype_of,
    encode_response,
    fraction_param,
    output_tensor,
    parse_request,
    read_body,
)
from serving.pipeline import Frame, InputSizeChanged, TensorFrame, decoded_pixels
from serving.state import AppState

log = logging.getLogger("qc.oip")

PLATFORM = "onnxruntime_onnx"
# The Ultralytics predict default. The service's detector reports boxes down to 0.01 for
# station rules to judge; a generic client without rules would drown in those.
DEFAULT_CONF = 0.25
_ONNX_TYPES = {"float": "FP32", "float16": "FP16", "double": "FP64", "uint8": "UINT8",
               "int8": "INT8", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}


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
            except ClientDisconnect:
                raise  # the client left mid-body: a 499 abort (serving/request_context.py), not a 500
            except Exception as error:  # noqa: BLE001 - every error answers in the protocol's shape
                return await error_response(request, error)

        return route


router = APIRouter(tags=["oip"], route_class=_V2Route)


# -- the served model and its tensors --------------------------------------------------------


def served_model(state: AppState, name: str, version: str | None = None) -> LoadedModel:
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


def model_tensors(model: LoadedModel) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs as the metadata route describes them.

    The batch dimension is -1 whatever the ONNX file says: the micro-batcher takes any number
    of rows and runs a static-batch model in chunks. Height and width are the size the service
    letterboxes to, which for a dynamic-size model is its configured size.
    """
    detector = model.detector
    spec_in, spec_out = detector.backend.input, detector.backend.output
    height, width = detector.input_hw
    inputs = [
        {"name": spec_in.name, "datatype": _ONNX_TYPES.get(spec_in.dtype, spec_in.dtype.upper()),
         "shape": [-1, 3, height, width]},
        {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
    ]
    outputs = [
        {"name": spec_out.name, "datatype": _ONNX_TYPES.get(spec_out.dtype, spec_out.dtype.upper()),
         "shape": [-1, *(-1 if d is None else d for d in spec_out.shape[1:])]},
        {"name": DETECTIONS_OUTPUT, "datatype": "BYTES", "shape": [-1]},
    ]
    return inputs, outputs


# -- routes ----------------------------------------------------------------------------------


@router.get("/v2/health/live")
def live() -> dict:
    """The process is up (no key: probes)."""
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(state: StateDep):
    """A model is loaded and the database is reachable (no key: probes)."""
    ok, body = await state.readiness()
    if ok:
        return {"ready": True, **body}
    reason = "no model loaded" if body["model"] is None else f"database {body['database']}"
    return JSONResponse({"ready": False, "error": f"not ready: {reason}", **body}, status_code=503)


@router.get("/v2")
def server_metadata(request: Request, key: KeyDep) -> dict:
    return {"name": "qc", "version": request.app.version, "extensions": ["binary_tensor_data"]}


def _metadata(state: AppState, name: str, version: str | None) -> dict:
    model = served_model(state, name, version)
    inputs, outputs = model_tensors(model)
    return {"name": model.name, "versions": [model.version], "platform": PLATFORM,
            "inputs": inputs, "outputs": outputs}


@router.get("/v2/models/{name}")
def model_metadata(name: str, state: StateDep, key: KeyDep) -> dict:
    return _metadata(state, name, None)


@router.get("/v2/models/{name}/versions/{version}")
def model_version_metadata(name: str, version: str, state: StateDep, key: KeyDep) -> dict:
    return _metadata(state, name, version)


@router.get("/v2/models/{name}/ready")
def model_ready(name: str, state: StateDep, key: KeyDep) -> dict:
    model = served_model(state, name)
    return {"name": model.name, "version": model.version, "ready": True}


@router.get("/v2/models/{name}/versions/{version}/ready")
def model_version_ready(name: str, version: str, state: StateDep, key: KeyDep) -> dict:
    model = served_model(state, name, version)
    return {"name": model.name, "version": model.version, "ready": True}


@router.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request, state: StateDep, key: StationKey) -> Response:
    """Raw tensors through the model, or encoded images to detections; JSON or binary."""
    with state.admission.admit(f"key:{key.id}"):  # one client's flood leaves the stations their share
        return await _infer(request, state, name, None)


@router.post("/v2/models/{name}/versions/{version}/infer")
async def infer_version(name: str, version: str, request: Request, state: StateDep,
                        key: StationKey) -> Response:
    with state.admission.admit(f"key:{key.id}"):
        return await _infer(request, state, name, version)


async def _infer(request: Request, state: AppState, name: str, version: str | None) -> Response:
    started = time.monotonic()
    settings = state.settings
    model = served_model(state, name, version)
    height, width = model.detector.input_hw
    accepted = Accepted(model.detector.input_name, height, width, settings.max_batch)
    body = await read_body(request, body_limit(settings, accepted), timeout_s=settings.body_timeout_s)
    # Parsing and encoding tens of MB of tensors takes ~0.5 s each in JSON: in threads, so the
    # event loop keeps serving the stations meanwhile.
    parsed = await asyncio.to_thread(parse_request, body, request.headers.get(HEADER_LENGTH), accepted)
    tensor = parsed.inputs[0]
    raw_name = model.detector.output_name
    wanted = _wanted_outputs(parsed, raw_name)
    conf = fraction_param(parsed.parameters, "conf", DEFAULT_CONF)
    iou = fraction_param(parsed.parameters, "iou", model.detector.iou)

    # Encoded images: every header read and the sum of their decoded pixels reserved before
    # one is decoded (eight 100 MP bombs in one 8.8 KB request were 3.7 GB of RSS).
    if tensor.name == IMAGE_INPUT and model.detector.needs_reference:
        raise OIPError(409, f"model {model.name}@{model.version} judges each frame against a station's "
                            "reference image, which this protocol cannot name: post frames to "
                            "/v1/stations/{station}/inspect, or send the composed input as a tensor")
    headers = _probe_images(state, tensor, model) if tensor.name == IMAGE_INPUT else []
    pixels = sum(decoded_pixels(model.detector, h, settings) for h in headers)
    with state.decode_budget.reserve(pixels):
        frames = await _frames(state, tensor, headers)
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

    header: dict[str, Any] = {"model_name": used.name, "model_version": used.version}
    if parsed.id is not None:
        header["id"] = parsed.id
    return await asyncio.to_thread(_response, header, used, results, wanted=wanted, raw_name=raw_name,
                                   batch_shape=tensor.shape[1:], conf=conf, iou=iou)


def _response(header: dict[str, Any], used: LoadedModel, results: list, *, wanted: dict[str, bool],
              raw_name: str, batch_shape: list[int], conf: float, iou: float) -> Response:
    parts = []
    if raw_name in wanted:
        rows = np.stack([r.output[0] if isinstance(r.output, tuple) else r.output for r in results])
        parts.append(output_tensor(raw_name, datatype_of(rows), list(rows.shape), rows,
                                   wanted[raw_name]))
    if DETECTIONS_OUTPUT in wanted:
        records = _detections(used, results, conf, iou)
        shape = [len(records), *batch_shape]  # as the images came: [B] or [B, 1]
        parts.append(output_tensor(DETECTIONS_OUTPUT, "BYTES", shape, records, wanted[DETECTIONS_OUTPUT]))
    return encode_response(header, parts)


def _wanted_outputs(parsed: InferRequest, raw_name: str) -> dict[str, bool]:
    """Output name -> binary. Tensors give the raw output; images also their detections
    (the default for them)."""
    name = parsed.inputs[0].name
    available = [raw_name] + ([DETECTIONS_OUTPUT] if name == IMAGE_INPUT else [])
    wanted = parsed.outputs or {available[-1]: parsed.binary_output}
    for output in wanted:
        if output not in available:
            raise bad_request(f"output {output!r} is not produced for input {name!r}; ask for "
                       f"{' or '.join(map(repr, available))}")
    return wanted


def _probe_images(state: AppState, tensor: Tensor, model: LoadedModel) -> list[imaging.ImageHeader]:
    """Each element's header, its size checked against QC_MAX_PIXELS (400/413 naming it)."""
    found = []
    for index, data in enumerate(tensor.value):
        try:
            header = imaging.probe(data)
            imaging.check_size(header, max_pixels=state.settings.max_pixels)
        except ImageError as error:
            reason = "too_many_pixels" if isinstance(error, ImageTooLarge) else "bad_image"
            state.metrics.rejected.labels(reason=reason).inc()
            raise type(error)(f"input {IMAGE_INPUT!r} element {index}: {error}") from error
        found.append(header)
    return found


async def _frames(state: AppState, tensor: Tensor, headers: list[imaging.ImageHeader]
                  ) -> list[Frame | TensorFrame]:
    if tensor.name == IMAGE_INPUT:
        pairs = enumerate(zip(tensor.value, headers, strict=True))
        return list(await asyncio.gather(*(asyncio.to_thread(_decode_image, state, index, data, header)
                                           for index, (data, header) in pairs)))
    return await asyncio.to_thread(_tensor_frames, tensor)


def _tensor_frames(tensor: Tensor) -> list[Frame | TensorFrame]:
    pixels = tensor.value
    if tensor.datatype == "UINT8":  # RGB in 0..255: a quarter of the bytes of FP32
        pixels = pixels.astype(np.float32) / np.float32(255)
    return [TensorFrame(np.ascontiguousarray(row)) for row in pixels]


def _decode_image(state: AppState, index: int, data: bytes, header: imaging.ImageHeader) -> Frame:
    """One encoded image to a letterboxed frame, as the inspect endpoint decodes stations'.
    A damaged one is refused (400): the protocol has no station rules to judge it REVIEW."""
    try:
        return Frame.decode(state.manager.loaded.detector, data, settings=state.settings, header=header)
    except ImageError as error:
        state.metrics.rejected.labels(reason="damaged_image" if isinstance(error, DamagedImage)
                                      else "bad_image").inc()
        raise type(error)(f"input {IMAGE_INPUT!r} element {index}: {error}") from error


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
    allowed = sorted({method for route in router.routes if getattr(route, "path", None) != "/v2/{rest:path}"
                      and route.matches(request.scope)[0] is Match.PARTIAL
                      for method in getattr(route, "methods", ())})
    if allowed:
        raise OIPError(405, f"{request.method} is not allowed on /v2/{rest}; "
                            f"use {', '.join(allowed)}", {"Allow": ", ".join(allowed)})
    raise OIPError(404, f"no v2 route /v2/{rest}: this server implements health, server and model "
                        "metadata, model readiness and infer")
