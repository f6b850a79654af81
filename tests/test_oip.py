"""The Open Inference Protocol v2 routes, spoken to by the real `tritonclient.http` over a real
socket: a uvicorn server on 127.0.0.1 serves an untrained YOLO26n exported at 160 (a few
seconds, no network), and every raw output is checked against the ONNX session itself.

Malformed requests go in by hand (httpx), since tritonclient would refuse to build them; each
must be a 400 with `{"error": ...}` naming the problem, never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnxruntime as ort
import pytest

MODEL = "default"


@dataclass(frozen=True)
class Served:
    url: str  # host:port, as tritonclient takes it
    model_path: Path
    keys: dict[str, str]  # role -> token

    def auth(self, role: str = "engineer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=f"http://{self.url}", timeout=30)


def export_untrained(settings) -> Path:
    """An untrained YOLO26n at 160 from its yaml: raw head [1, 84, 525], static batch 1."""
    from training.ultralytics_env import load_ultralytics

    ultralytics = load_ultralytics(settings)
    model = ultralytics.YOLO("yolo26n.yaml")
    return Path(model.export(format="onnx", imgsz=160, device="cpu", verbose=False)).resolve()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import uvicorn

    from inspection.models.registry import Registry
    from inspection.rules import StationRules
    from inspection.store.database import Database
    from inspection.store.keys import KeyStore
    from inspection.store.records import RecordStore
    from serving.app import create_app
    from serving.settings import ServeSettings

    home = tmp_path_factory.mktemp("oip-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QC_HOME", str(home))
        env.delenv("QC_DATABASE_URL", raising=False)
        env.delenv("QC_CONFIG", raising=False)
        settings = ServeSettings(home=home, model_poll_s=3600)
        with pytest.MonkeyPatch.context() as cwd:
            cwd.chdir(tmp_path_factory.mktemp("oip-export"))  # Ultralytics exports into the cwd
            exported = export_untrained(settings)
        registry = Registry(settings.models_dir)
        entry = registry.add(MODEL, exported)
        registry.set_production(MODEL, entry.version)
        db = Database.from_settings(settings)
        RecordStore(db).add_station("line-1", rules=StationRules())
        keys = KeyStore(db)
        tokens = {role: keys.create(role=role, stations=["line-1"] if role == "station" else None)
                  for role in ("station", "reviewer", "engineer")}
        db.dispose()

        server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # a free port, held from here on: no race with others
        port = sock.getsockname()[1]
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        until = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < until, "the server did not start"
            time.sleep(0.05)
        try:
            yield Served(f"127.0.0.1:{port}", entry.model_path, tokens)
        finally:
            server.should_exit = True
            thread.join(30)
            sock.close()


@pytest.fixture(scope="module")
def client(served):
    from tritonclient import http

    client = http.InferenceServerClient(url=served.url, network_timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="module")
def session(served):
    return ort.InferenceSession(str(served.model_path), providers=["CPUExecutionProvider"])


def run_session(session, tensor: np.ndarray) -> np.ndarray:
    # The export has a static batch of 1: run row by row, as the service does.
    return np.concatenate([session.run(None, {"images": row[None]})[0] for row in tensor])


def letterboxed(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 3, 160, 160), dtype=np.float32)


def encoded(kind: str, size=(240, 320), seed: int = 1) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    cv2.rectangle(image, (40, 40), (140, 110), (0, 0, 255), -1)
    ok, data = cv2.imencode(f".{kind}", image)
    assert ok
    return data.tobytes()


# -- health and metadata ---------------------------------------------------------------------


def test_health_probes_answer_without_a_key(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_server_metadata_names_qc_and_the_binary_extension(client, served):
    metadata = client.get_server_metadata(headers=served.auth("reviewer"))
    assert metadata["name"] == "qc"
    assert metadata["version"]
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_describes_the_onnx_session(client, served, session):
    metadata = client.get_model_metadata(MODEL, headers=served.auth("reviewer"))
    assert metadata["name"] == MODEL
    assert metadata["versions"] == ["v1"]
    assert metadata["platform"] == "onnxruntime_onnx"
    raw_in, raw_out = session.get_inputs()[0], session.get_outputs()[0]
    inputs = {tensor["name"]: tensor for tensor in metadata["inputs"]}
    outputs = {tensor["name"]: tensor for tensor in metadata["outputs"]}
    # The batch is -1: the micro-batcher takes any number of rows, even for a static-batch file.
    assert inputs[raw_in.name] == {"name": "images", "datatype": "FP32", "shape": [-1, 3, 160, 160]}
    assert outputs[raw_out.name] == {"name": "output0", "datatype": "FP32",
                                     "shape": [-1, *raw_out.shape[1:]]}
    assert inputs["image"]["datatype"] == outputs["detections"]["datatype"] == "BYTES"
    assert client.get_model_metadata(MODEL, "v1", headers=served.auth()) == metadata


def test_model_is_ready_in_its_production_version_only(client, served):
    headers = served.auth("station")
    assert client.is_model_ready(MODEL, headers=headers)
    assert client.is_model_ready(MODEL, "v1", headers=headers)
    assert not client.is_model_ready(MODEL, "v2", headers=headers)
    assert not client.is_model_ready("pcb", headers=headers)


# -- infer: raw tensors ----------------------------------------------------------------------


def test_binary_infer_returns_what_the_onnx_session_returns(client, served, session):
    from tritonclient import http

    tensor = letterboxed(3)
    images = http.InferInput("images", list(tensor.shape), "FP32")
    images.set_data_from_numpy(tensor)  # binary, tritonclient's default
    result = client.infer(MODEL, [images], headers=served.auth("station"), request_id="frame-7")
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == "v1"
    assert response["id"] == "frame-7"
    assert "binary_data_size" in result.get_output("output0")["parameters"]  # came back binary
    output = result.as_numpy("output0")
    assert output.shape == (3, 84, 525) and output.dtype == np.float32
    np.testing.assert_allclose(output, run_session(session, tensor), rtol=1e-4, atol=1e-4)


def test_json_infer_returns_what_the_onnx_session_returns(client, served, session):
    from tritonclient import http

    tensor = letterboxed(1, seed=5)
    images = http.InferInput("images", list(tensor.shape), "FP32")
    images.set_data_from_numpy(tensor, binary_data=False)
    wanted = http.InferRequestedOutput("output0", binary_data=False)
    result = client.infer(MODEL, [images], outputs=[wanted], headers=served.auth())
    assert "data" in result.get_output("output0")  # a JSON list, not binary
    np.testing.assert_allclose(result.as_numpy("output0"), run_session(session, tensor),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("datatype", ["FP16", "UINT8"])
def test_fp16_and_uint8_tensors_are_taken_too(client, served, session, datatype):
    from tritonclient import http

    tensor = letterboxed(2, seed=9)
    if datatype == "FP16":
        sent = tensor.astype(np.float16)
        expected = sent.astype(np.float32)
    else:  # RGB in 0..255: the service divides by 255
        sent = np.round(tensor * 255).astype(np.uint8)
        expected = sent.astype(np.float32) / np.float32(255)
    images = http.InferInput("images", list(sent.shape), datatype)
    images.set_data_from_numpy(sent)
    result = client.infer(MODEL, [images], headers=served.auth())
    np.testing.assert_allclose(result.as_numpy("output0"), run_session(session, expected),
                               rtol=1e-4, atol=1e-4)


def test_a_version_can_be_named_and_only_the_production_one_runs(client, served):
    from tritonclient import http
    from tritonclient.utils import InferenceServerException

    images = http.InferInput("images", [1, 3, 160, 160], "FP32")
    images.set_data_from_numpy(letterboxed(1))
    result = client.infer(MODEL, [images], model_version="v1", headers=served.auth())
    assert result.get_response()["model_version"] == "v1"
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, [images], model_version="v7", headers=served.auth())
    assert refused.value.status() == "404" and "v7" in refused.value.message()


# -- infer: encoded images -------------------------------------------------------------------


def test_encoded_images_come_back_as_detections_decoded_like_the_detector_does(
    client, served, session
):
    from tritonclient import http

    from inspection.detect.detector import Detector

    frames = [encoded("jpg"), encoded("png", size=(200, 150), seed=2)]
    image = http.InferInput("image", [2], "BYTES")
    image.set_data_from_numpy(np.array(frames, dtype=object))
    outputs = [http.InferRequestedOutput("detections"), http.InferRequestedOutput("output0")]
    # An untrained model scores every box alike and low: 0 keeps them all (max_det of them).
    result = client.infer(MODEL, [image], outputs=outputs, headers=served.auth("station"),
                          parameters={"conf": 0.0})
    detections = result.as_numpy("detections")
    raw = result.as_numpy("output0")
    assert detections.shape == (2,) and raw.shape == (2, 84, 525)

    local = Detector(served.model_path, conf=0.0)
    for data, found, row in zip(frames, detections, raw, strict=True):
        pixels, size = local.load_bytes(data)
        tensor, info = local.prepare(pixels, original_size=size)
        # The same pixels reached the network as when the detector decodes the bytes itself...
        np.testing.assert_allclose(row, session.run(None, {"images": _to_nchw(tensor)})[0][0],
                                   rtol=1e-4, atol=1e-4)
        # ...and the records are those of `Detections.to_records()` for that output.
        records = json.loads(found)
        assert records == local.decode(row, info, conf=0.0).to_records()
        assert len(records) == 300
        width, height = size
        for record in records:
            assert set(record) == {"class", "class_id", "confidence", "box"}
            x1, y1, x2, y2 = record["box"]
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height


def _to_nchw(letterboxed_bgr: np.ndarray) -> np.ndarray:
    from inspection.detect.preprocess import to_tensor

    return to_tensor([letterboxed_bgr])


def test_detections_default_to_a_confidence_of_a_quarter(client, served):
    from tritonclient import http

    image = http.InferInput("image", [1, 1], "BYTES")  # [B, 1] as Triton BYTES models take it
    image.set_data_from_numpy(np.array([[encoded("jpg")]], dtype=object))
    result = client.infer(MODEL, [image], headers=served.auth())
    detections = result.as_numpy("detections")
    assert detections.shape == (1, 1)
    assert json.loads(detections[0, 0]) == []  # the untrained model scores nothing that high


def test_detections_in_json_when_binary_is_not_asked_for(served):
    frame = encoded("png")
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(frame) + 4}}],
                         "parameters": {"conf": 0.0}}).encode()
    body = header + struct.pack("<I", len(frame)) + frame
    with served.http() as http:
        headers = {**served.auth(), "Inference-Header-Content-Length": str(len(header))}
        response = http.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    (output,) = response.json()["outputs"]
    assert output["name"] == "detections" and output["shape"] == [1]
    assert len(json.loads(output["data"][0])) == 300


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_requests_are_inflated(client, served, session, compression):
    from tritonclient import http

    tensor = letterboxed(1, seed=11)
    images = http.InferInput("images", list(tensor.shape), "FP32")
    images.set_data_from_numpy(tensor)
    result = client.infer(MODEL, [images], headers=served.auth(),
                          request_compression_algorithm=compression,
                          response_compression_algorithm=compression)
    np.testing.assert_allclose(result.as_numpy("output0"), run_session(session, tensor),
                               rtol=1e-4, atol=1e-4)


def test_stations_and_v2_clients_are_served_side_by_side(served):
    from concurrent.futures import ThreadPoolExecutor

    frame = encoded("jpg")
    tensor = letterboxed(1, seed=4)
    images = _images(parameters={"binary_data_size": tensor.nbytes})
    header = json.dumps({"inputs": [images]}).encode()
    key = served.auth("station")

    def station() -> int:
        with served.http() as http:
            headers = {**key, "Content-Type": "image/jpeg"}
            return http.post("/v1/stations/line-1/inspect", content=frame,
                             headers=headers).status_code

    def v2() -> int:
        with served.http() as http:
            headers = {**key, "Inference-Header-Content-Length": str(len(header))}
            return http.post(f"/v2/models/{MODEL}/infer", content=header + tensor.tobytes(),
                             headers=headers).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: (station if i % 2 else v2)(), range(16)))
    assert statuses == [200] * 16


# -- refusals --------------------------------------------------------------------------------


def test_every_route_but_health_needs_a_key(served):
    with served.http() as http:
        assert http.get("/v2/health/live").status_code == 200
        assert http.get("/v2/health/ready").json()["ready"] is True
        for path in ("/v2", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready"):
            response = http.get(path)
            assert response.status_code == 401, path
            assert "API key" in response.json()["error"]
        response = http.post(f"/v2/models/{MODEL}/infer", json={"inputs": []})
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_a_reviewer_reads_metadata_but_cannot_infer(client, served):
    from tritonclient import http
    from tritonclient.utils import InferenceServerException

    assert client.get_model_metadata(MODEL, headers=served.auth("reviewer"))
    images = http.InferInput("images", [1, 3, 160, 160], "FP32")
    images.set_data_from_numpy(letterboxed(1))
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, [images], headers=served.auth("reviewer"))
    assert refused.value.status() == "403" and "reviewer" in refused.value.message()


def test_an_unknown_model_is_404_in_the_v2_shape(client, served):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException) as refused:
        client.get_model_metadata("pcb", headers=served.auth())
    assert refused.value.status() == "404" and "'default'" in refused.value.message()
    with served.http() as http:
        response = http.post("/v2/models/pcb/infer", json={"inputs": []}, headers=served.auth())
        assert response.status_code == 404 and "pcb" in response.json()["error"]
        response = http.get(f"/v2/models/{MODEL}/config", headers=served.auth())
        assert response.status_code == 404 and "error" in response.json()
        response = http.get(f"/v2/models/{MODEL}/infer", headers=served.auth())
        assert response.status_code == 405 and response.headers["allow"] == "POST"


def _images(shape=(1, 3, 160, 160), datatype="FP32", name="images", **fields) -> dict:
    """An input spec, by default a valid `images` tensor in JSON."""
    spec = {"name": name, "shape": list(shape), "datatype": datatype}
    if "data" not in fields and "parameters" not in fields:
        spec["data"] = [0.5] * int(np.prod(shape))
    return {**spec, **fields}


def _image(**fields) -> dict:
    return {"name": "image", "shape": [1], "datatype": "BYTES", **fields}


def _plain(doc) -> tuple[bytes, None]:
    return (doc if isinstance(doc, bytes) else json.dumps(doc).encode()), None


def _with_binary(doc: dict, payload: bytes) -> tuple[bytes, str]:
    header = json.dumps(doc).encode()
    return header + payload, str(len(header))


_ROW = 3 * 160 * 160 * 4  # bytes of one FP32 row
_BINARY_ROW = {"inputs": [_images(parameters={"binary_data_size": _ROW})]}

MALFORMED = [  # (case, (body, Inference-Header-Content-Length), what the error must name)
    ("malformed JSON", _plain(b'{"inputs": ['), "malformed JSON"),
    ("not an object", _plain([1, 2]), "JSON object"),
    ("no inputs", _plain({"inputs": []}), "'inputs'"),
    ("unknown input name", _plain({"inputs": [_images(name="pixels")]}), "unknown input 'pixels'"),
    ("wrong datatype", _plain({"inputs": [_images(datatype="INT64")]}), "datatype 'INT64'"),
    ("BYTES for the tensor", _plain({"inputs": [_images(datatype="BYTES")]}), "datatype 'BYTES'"),
    ("FP32 for the image", _plain({"inputs": [_image(datatype="FP32", data=[1.0])]}),
     "datatype 'FP32'"),
    ("wrong shape", _plain({"inputs": [_images(shape=(1, 3, 320, 320))]}),
     "expected [B, 3, 160, 160]"),
    ("batch over max_batch", _plain({"inputs": [_images(shape=(9, 3, 160, 160), data=[])]}),
     "1 <= B <= 8"),
    ("shape and data disagree", _plain({"inputs": [_images(data=[0.5] * 10)]}),
     "holds 76800 values but data has 10"),
    ("data not numbers", _plain({"inputs": [_images(data=["a"] * 76800)]}), "must be numbers"),
    ("UINT8 out of range", _plain({"inputs": [_images(datatype="UINT8", data=[300] * 76800)]}),
     "0..255"),
    ("input twice", _plain({"inputs": [_images(), _images()]}), "given twice"),
    ("both inputs", _plain({"inputs": [_images(), _image(data=["x"])]}), "send one input"),
    ("no data", _plain({"inputs": [_images(parameters={})]}), "neither 'data'"),
    ("binary shorter than declared", _with_binary(_BINARY_ROW, bytes(100)), "only 100 bytes"),
    ("binary longer than declared", _with_binary(_BINARY_ROW, bytes(_ROW + 8)), "add up to"),
    ("binary size not the shape's",
     _with_binary({"inputs": [_images(parameters={"binary_data_size": 12})]}, bytes(12)),
     f"is {_ROW} bytes but its binary_data_size is 12"),
    ("binary without the header length", _plain(_BINARY_ROW), "Inference-Header-Content-Length"),
    ("header length beyond the body", (json.dumps({"inputs": [_images()]}).encode(), "999999999"),
     "Inference-Header-Content-Length"),
    ("header length not a number", (json.dumps({"inputs": [_images()]}).encode(), "ten"),
     "Inference-Header-Content-Length"),
    ("BYTES element cut short",
     _with_binary({"inputs": [_image(parameters={"binary_data_size": 8})]},
                  struct.pack("<I", 50) + b"abcd"), "says 50 bytes"),
    ("not an image", _plain({"inputs": [_image(data=["hello"])]}), "not a JPEG, PNG or BMP"),
    ("lone surrogate for an image", _plain({"inputs": [_image(data=["\ud800"])]}),
     "not a JPEG, PNG or BMP"),
    ("a number beyond float", (b'{"inputs": [{"name": "images", "shape": [1, 3, 160, 160], '
                               b'"datatype": "FP32", "data": [1' + b"0" * 400 + b']}]}', None),
     "must be numbers"),
    ("JSON nested beyond reason", _plain(b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
     "malformed JSON"),
    ("output not made for the input",
     _plain({"inputs": [_images()], "outputs": [{"name": "detections"}]}),
     "output 'detections' is not produced"),
    ("conf out of range", _plain({"inputs": [_images()], "parameters": {"conf": 2}}),
     "parameters.conf"),
]


@pytest.mark.parametrize(("request_", "expected"),
                         [pytest.param(r, e, id=case) for case, r, e in MALFORMED])
def test_malformed_requests_are_400_naming_the_problem(served, request_, expected):
    body, header_length = request_
    headers = served.auth()
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    with served.http() as http:
        response = http.post(f"/v2/models/{MODEL}/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert expected in response.json()["error"]


def test_tritonclient_reads_a_refusal_as_its_message(client, served):
    from tritonclient import http
    from tritonclient.utils import InferenceServerException

    images = http.InferInput("images", [1, 3, 320, 320], "FP32")
    images.set_data_from_numpy(np.zeros((1, 3, 320, 320), np.float32))
    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, [images], headers=served.auth())
    assert refused.value.status() == "400"
    assert "expected [B, 3, 160, 160]" in refused.value.message()


@pytest.mark.parametrize(("error", "status", "header"), [
    ("QueueFull", 503, "retry-after"),
    ("DeadlineExceeded", 504, "retry-after"),
    ("ShuttingDown", 503, "retry-after"),
    ("ImageTooLarge", 413, None),
    ("ImageError", 400, None),
    ("NotFound", 404, None),
    ("RuntimeError", 500, None),
])
def test_the_apps_refusals_keep_their_status_in_the_v2_shape(qc_home, error, status, header):
    from starlette.requests import Request

    from inspection import errors
    from serving import batcher
    from serving.app import create_app
    from serving.routers.oip import error_response
    from serving.settings import ServeSettings

    kind = getattr(batcher, error, None) or getattr(errors, error, None) or RuntimeError
    message = f"a {error}"
    app = create_app(ServeSettings(home=qc_home))
    request = Request({"type": "http", "app": app, "method": "POST", "headers": [],
                       "path": f"/v2/models/{MODEL}/infer"})
    response = asyncio.run(error_response(request, kind(message)))
    assert response.status_code == status
    assert message in json.loads(response.body)["error"]
    assert header is None or header in response.headers


def test_v2_requests_are_counted_in_the_latency_metric(client, served):
    from tritonclient import http

    images = http.InferInput("images", [1, 3, 160, 160], "FP32")
    images.set_data_from_numpy(letterboxed(1))
    client.infer(MODEL, [images], headers=served.auth())
    with served.http() as http_client:
        text = http_client.get("/metrics", headers=served.auth()).text
    assert 'route="/v2/models/{name}/infer",status="200"' in text
    assert 'route="/v2/health/ready"' in text


# -- tensors and station frames share batches (serving/pipeline.py, serving/batcher.py) -----


@pytest.fixture(scope="module")
def loaded(served):
    from inspection.detect.detector import Detector
    from serving.model_manager import LoadedModel

    return LoadedModel(MODEL, "v1", Detector(served.model_path))


def _station_frame(detector):
    from inspection.detect import imaging
    from serving.pipeline import Frame

    data = encoded("jpg")
    image = imaging.decode(data)
    return Frame.prepare(detector, image, (image.shape[1], image.shape[0]))


def test_a_tensor_and_a_station_frame_run_in_one_batch_as_they_would_alone(loaded):
    from serving.pipeline import TensorFrame, run_batch

    station = _station_frame(loaded.detector)
    tensor = TensorFrame(letterboxed(1, seed=3)[0])
    mixed = run_batch(loaded, [station, tensor])
    (alone_station,) = run_batch(loaded, [station])
    alone_tensor = run_batch(loaded, [TensorFrame(tensor.tensor), TensorFrame(tensor.tensor)])[0]
    output, info = mixed[0]
    assert info == station.info
    np.testing.assert_allclose(output, alone_station[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mixed[1], alone_tensor, rtol=1e-4, atol=1e-4)


def test_a_tensor_sized_for_another_model_fails_alone(loaded):
    from serving.batcher import MicroBatcher
    from serving.pipeline import InputSizeChanged, TensorFrame, run_batch

    async def scenario():
        batcher = MicroBatcher(run=run_batch, current=lambda: loaded, max_batch=8, max_wait_ms=50,
                               queue_size=8)
        await batcher.start()
        try:
            deadline = time.monotonic() + 30
            stale = TensorFrame(np.zeros((3, 320, 320), np.float32))  # before a "hot swap"
            fresh = TensorFrame(letterboxed(1)[0])
            tensors = asyncio.ensure_future(batcher.submit_many([fresh, fresh], deadline=deadline))
            station_frame = _station_frame(loaded.detector)
            station = asyncio.ensure_future(batcher.submit(station_frame, deadline=deadline))
            refused = asyncio.ensure_future(batcher.submit(stale, deadline=deadline))
            results = await tensors
            # All four were collected into one batch; the stale tensor alone was refused.
            assert [r.batch_size for r in results] == [4, 4]
            assert (await station).batch_size == 4
            with pytest.raises(InputSizeChanged, match=r"\[3, 160, 160\]"):
                await refused
        finally:
            await batcher.close()

    asyncio.run(scenario())


def test_several_frames_of_one_request_are_queued_all_or_none(loaded):
    from serving.batcher import MicroBatcher, QueueFull
    from serving.pipeline import TensorFrame, run_batch

    async def scenario():
        batcher = MicroBatcher(run=run_batch, current=lambda: loaded, max_batch=8, max_wait_ms=1,
                               queue_size=2)
        frames = [TensorFrame(row) for row in letterboxed(3)]
        with pytest.raises(QueueFull):
            await batcher.submit_many(frames, deadline=time.monotonic() + 30)
        assert batcher.depth == 0  # nothing of the refused request was left behind

    asyncio.run(scenario())
