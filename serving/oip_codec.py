"""The wire format of the Open Inference Protocol v2: decoding infer requests (JSON and the
binary tensor data extension, gzip or deflate bodies) and encoding responses. The routes are
in serving/routers/oip.py; this module knows nothing of models or batching.

Example::

    parsed = parse_request(body, request.headers.get(HEADER_LENGTH), accepted)
    return encode_response(header, parts)
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
from fastapi import Request
from fastapi.responses import Response

from serving.bodies import read_limited

if TYPE_CHECKING:
    from serving.settings import ServeSettings

HEADER_LENGTH = "Inference-Header-Content-Length"
IMAGE_INPUT, DETECTIONS_OUTPUT = "image", "detections"
TENSOR_DATATYPES: dict[str, np.dtype] = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2"), "UINT8": np.dtype("u1")}


class OIPError(Exception):
    """A refusal on a /v2 route, answered as `{"error": message}`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


def bad_request(message: str) -> OIPError:
    return OIPError(400, message)


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
                raise bad_request(f"input {name!r}: datatype {datatype!r}; send FP32 or FP16 "
                           "(RGB in 0..1) or UINT8 (RGB in 0..255)")
            expected = [3, self.height, self.width]
            if len(shape) != 4 or shape[1:] != expected or not 1 <= shape[0] <= b:
                raise bad_request(f"input {name!r}: shape {shape}; expected "
                           f"[B, 3, {self.height}, {self.width}] with 1 <= B <= {b}: "
                           "letterboxed to the model's input size")
        elif name == IMAGE_INPUT:
            if datatype != "BYTES":
                raise bad_request(f"input {name!r}: datatype {datatype!r}; send BYTES "
                           "(encoded JPEG, PNG or BMP)")
            if len(shape) not in (1, 2) or not 1 <= shape[0] <= b or shape[1:] not in ([], [1]):
                raise bad_request(f"input {name!r}: shape {shape}; expected [B] or [B, 1] "
                           f"with 1 <= B <= {b}")
        else:
            raise bad_request(f"unknown input {name!r}: this model takes {self.tensor_name!r} "
                       f"(a [B, 3, {self.height}, {self.width}] tensor) or {IMAGE_INPUT!r} "
                       "(BYTES: encoded images)")


def _header_length(value: str | None, body: bytes) -> int:
    if value is None:
        return len(body)
    length = int(value) if value.strip().isascii() and value.strip().isdigit() else -1
    if not 0 < length <= len(body):
        raise bad_request(f"{HEADER_LENGTH}: {value!r} is not a JSON header length within the "
                   f"{len(body)}-byte body")
    return length


def _int_list(value: Any) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(type(v) is int and v >= 0 for v in value)


def parse_request(body: bytes, header_length: str | None, accepted: Accepted) -> InferRequest:
    """Header JSON and tensors of an infer request, every input checked against `accepted`."""
    split = _header_length(header_length, body)
    try:
        doc = json.loads(body[:split])
    except (ValueError, RecursionError) as error:  # RecursionError: nested beyond reason
        raise bad_request(f"malformed JSON in the inference request header: {error}") from error
    if not isinstance(doc, dict):
        raise bad_request("the inference request must be a JSON object with an 'inputs' list")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad_request("the inference request needs 'inputs': a non-empty list of tensors")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request(f"'id' must be a string, not {type(request_id).__name__}")
    binary, offset = body[split:], 0
    tensors: list[Tensor] = []
    for index, spec in enumerate(inputs):
        if not isinstance(spec, dict):
            raise bad_request(f"inputs[{index}] must be an object with name, shape, datatype and data")
        name, datatype, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
        if not isinstance(name, str):
            raise bad_request(f"inputs[{index}] has no 'name'")
        if not isinstance(datatype, str):
            raise bad_request(f"input {name!r} has no 'datatype'")
        if not _int_list(shape):
            raise bad_request(f"input {name!r}: 'shape' must be a list of non-negative integers, "
                       f"not {shape!r}")
        if any(t.name == name for t in tensors):
            raise bad_request(f"input {name!r} is given twice")
        accepted.check(name, datatype, shape)
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise bad_request(f"input {name!r}: 'parameters' must be an object")
        size = parameters.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise bad_request(f"input {name!r}: binary_data_size must be a non-negative integer, "
                           f"not {size!r}")
            if "data" in spec:
                raise bad_request(f"input {name!r} has both 'data' and binary_data_size; send one")
            raw = binary[offset : offset + size]
            if len(raw) < size:
                raise bad_request(f"input {name!r}: binary_data_size is {size} but only {len(raw)} "
                           f"bytes of binary data remain after the {split}-byte JSON header "
                           f"(its length is the {HEADER_LENGTH} header)")
            offset += size
            value = _from_binary(name, datatype, shape, raw)
        elif "data" in spec:
            value = _from_json(name, datatype, shape, spec["data"])
        else:
            raise bad_request(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
        tensors.append(Tensor(name, datatype, shape, value))
    if offset != len(binary):
        raise bad_request(f"the body holds {len(binary)} bytes of binary data but the inputs' "
                   f"binary_data_size add up to {offset}")
    if len(tensors) > 1:
        raise bad_request(f"send one input, {accepted.tensor_name!r} or {IMAGE_INPUT!r}, not "
                   f"{[t.name for t in tensors]}")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise bad_request("'parameters' must be an object")
    binary_output = parameters.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise bad_request(f"parameters.binary_data_output must be true or false, not {binary_output!r}")
    return InferRequest(request_id, tensors, _requested_outputs(doc.get("outputs"), binary_output),
                        binary_output, parameters)


def _requested_outputs(outputs: Any, binary_default: bool) -> dict[str, bool] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise bad_request("'outputs' must be a list of {name, parameters}")
    requested: dict[str, bool] = {}
    for index, spec in enumerate(outputs):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise bad_request(f"outputs[{index}] must be an object with a 'name'")
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise bad_request(f"output {spec['name']!r}: 'parameters' must be an object")
        if parameters.get("classification"):
            raise bad_request(f"output {spec['name']!r}: the classification extension is not supported")
        binary = parameters.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise bad_request(f"output {spec['name']!r}: binary_data must be true or false, "
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
        raise bad_request(f"input {name!r}: shape {shape} of {datatype} is {needed} bytes but its "
                   f"binary_data_size is {len(raw)}")
    return np.frombuffer(raw, dtype).reshape(shape)


def _split_bytes(name: str, raw: bytes, count: int) -> list[bytes]:
    """BYTES elements on the wire: each a little-endian uint32 length, then that many bytes."""
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise bad_request(f"input {name!r}: BYTES data cut short inside an element's 4-byte length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise bad_request(f"input {name!r}: BYTES element {len(items)} says {length} bytes but only "
                       f"{len(raw) - offset} remain")
        items.append(raw[offset : offset + length])
        offset += length
    if len(items) != count:
        raise bad_request(f"input {name!r}: shape holds {count} elements but the BYTES data has "
                   f"{len(items)}")
    return items


def _flatten(data: Any) -> list:
    if not isinstance(data, list):
        return [data]
    return [item for part in data for item in _flatten(part)]


def _from_json(name: str, datatype: str, shape: list[int], data: Any) -> Any:
    if not isinstance(data, list):
        raise bad_request(f"input {name!r}: 'data' must be a list (flat or nested, row-major)")
    count = _count(shape)
    if datatype == "BYTES":
        try:
            items = _flatten(data)
        except RecursionError as error:
            raise bad_request(f"input {name!r}: 'data' is nested too deeply") from error
        if not all(isinstance(item, str) for item in items):
            raise bad_request(f"input {name!r}: BYTES data in JSON must be strings; send encoded images "
                       "as binary data (tritonclient's default)")
        if len(items) != count:
            raise bad_request(f"input {name!r}: shape {shape} holds {count} elements but data has "
                       f"{len(items)}")
        return [item.encode("utf-8", "surrogatepass") for item in items]  # "\ud800" is valid JSON
    try:
        values = np.asarray(data, dtype=np.float64).reshape(-1)  # nested lists are row-major
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        raise bad_request(f"input {name!r}: data must be numbers in (nested) lists ({error})") from error
    if values.size != count:
        raise bad_request(f"input {name!r}: shape {shape} holds {count} values but data has {values.size}")
    if not np.isfinite(values).all():
        raise bad_request(f"input {name!r}: data holds non-numbers (null, NaN or infinity)")
    if datatype == "UINT8" and ((values < 0) | (values > 255) | (values != np.round(values))).any():
        raise bad_request(f"input {name!r}: UINT8 data must be whole numbers in 0..255")
    return values.astype(TENSOR_DATATYPES[datatype]).reshape(shape)


def fraction_param(parameters: dict, key: str, default: float) -> float:
    value = parameters.get(key, default)
    if type(value) not in (int, float) or not 0 <= value <= 1:
        raise bad_request(f"parameters.{key} must be a number in 0..1, not {value!r}")
    return float(value)


async def read_body(request: Request, limit: int, *, timeout_s: float | None = None) -> bytes:
    body = await read_limited(request, limit, timeout_s=timeout_s)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise OIPError(415, f"Content-Encoding {encoding!r}: send gzip, deflate or none")
    return await asyncio.to_thread(_inflate, body, encoding=encoding, limit=limit)  # tens of MB: off the loop


def _inflate(body: bytes, *, encoding: str, limit: int) -> bytes:
    # tritonclient's "deflate" is zlib-wrapped; the limit holds for the decompressed size.
    inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise bad_request(f"body is not valid {encoding} data: {error}") from error
    if len(plain) > limit:
        raise OIPError(413, f"decompressed body is over the limit of {limit:,} bytes")
    if not inflater.eof:
        raise bad_request(f"{encoding} body is cut short")
    return plain


def body_limit(settings: ServeSettings, accepted: Accepted) -> int:
    # A full batch of FP32 tensors at 640 is 39 MB, over the 32 MB default for one frame.
    full_batch = accepted.max_batch * 3 * accepted.height * accepted.width * 4
    return max(settings.max_body_bytes, full_batch + (1 << 20))


# -- response encoding -----------------------------------------------------------------------


def datatype_of(array: np.ndarray) -> str:
    return {np.dtype("float32"): "FP32", np.dtype("float16"): "FP16"}.get(array.dtype, "FP32")


def output_tensor(name: str, datatype: str, shape: list[int], value: Any,
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
