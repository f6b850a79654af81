"""The remote inference backend, as a specification, against a real Open Inference Protocol
server: a `qc serve` process on 127.0.0.1 serving model A stands in for Triton (its /v2 routes
speak the same protocol through tritonclient). A Detector whose network runs there finds the
same boxes as ONNX Runtime in this process; a second service with QC_BACKEND=triton judges a
frame as the first one does; an unreachable server, a missing model or version is a clear
ModelError. The same tests run against a real Triton (QC_TEST_TRITON_URL, serving the
repository `qc models triton` wrote) when one is lent."""

from __future__ import annotations

import os

import cv2
import httpx
import numpy as np
import pytest

from inspection.detect.detector import Detector
from inspection.detect.onnx_file import read_metadata
from inspection.detect.triton import TritonBackend
from inspection.errors import ModelError
from serving.launch import free_port
from tests.real_servers import FAIL_ALL, QcHome, QcServer
from tests.service_harness import running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_a(trained_model):
    return trained_model.dynamic  # dynamic batch: one remote call per batch


@pytest.fixture(scope="module")
def peer(model_a, tmp_path_factory):
    """qc serve with model A in production, and a station key for its /v2 routes."""
    home = QcHome.make(tmp_path_factory.mktemp("peer") / "home", model=model_a,
                       stations={"passing": {}, "failing": FAIL_ALL})
    with QcServer(home, QC_MAX_BATCH="8") as server:
        created = httpx.post(f"{server.url}/v1/keys", headers=home.headers,
                             json={"role": "station", "stations": ["failing"], "name": "remote detector"})
        assert created.status_code == 201, created.text
        server.key = created.json()["key"]
        yield server


@pytest.fixture(scope="module")
def boards(trained_model):
    """boards(n, first) -> n validation frames of the model's own data. The cached test model
    is barely trained (scores ~0.002), hence conf 0.001 below: a hundred boxes a frame to compare."""
    files = sorted((trained_model.data_yaml.parent / "images" / "val").glob("*.jpg"))

    def take(n: int, first: int = 0) -> list[np.ndarray]:
        return [cv2.imread(str(path)) for path in files[first : first + n]]

    return take


def remote(peer, model_path, **options) -> TritonBackend:
    address = peer.url.removeprefix("http://")
    return TritonBackend.open(address, "default", key=peer.key, metadata=read_metadata(model_path), **options)


def test_a_remote_detector_finds_the_same_boxes_as_onnx_runtime_here(peer, model_a, boards):
    local = Detector(model_a, providers=["cpu"], conf=0.001)
    far = Detector(model_a, backend=remote(peer, model_a), conf=0.001)
    assert far.providers == [f"triton:{peer.url}/default".replace("http://", "")]
    images = boards(5)

    expected, got = local.predict(images), far.predict(images)  # one batch of 5 over the wire
    assert sum(len(d) for d in expected) > 0  # there is something to compare
    for mine, theirs in zip(expected, got, strict=True):
        np.testing.assert_array_equal(mine.class_id, theirs.class_id)
        np.testing.assert_allclose(mine.xyxy, theirs.xyxy, atol=1e-3)
        np.testing.assert_allclose(mine.confidence, theirs.confidence, atol=1e-5)


def test_metadata_comes_from_the_server_when_no_file_is_at_hand(peer, model_a):
    backend = TritonBackend.open(peer.url, "default", key=peer.key)  # http:// form accepted
    assert backend.input.name == "images" and backend.output.name == "output0"
    assert backend.input.shape[0] is None  # the peer batches
    # qc's /v2 has no model-config route (Triton's extension): nothing, and the caller must
    # pass the file's metadata, as the service does from its registry copy.
    assert backend.metadata == {}


def test_a_service_on_the_triton_backend_judges_frames_as_the_in_process_one(peer, model_a, boards, tmp_path):
    data = cv2.imencode(".jpg", boards(1, first=7)[0])[1].tobytes()
    direct = httpx.post(f"{peer.url}/v1/stations/failing/inspect", content=data,
                        headers={**peer.home.headers, "Content-Type": "image/jpeg"})
    assert direct.status_code == 200, direct.text

    with running(tmp_path / "front", model_a, backend="triton", triton_url=peer.url,
                 triton_key=peer.key, triton_pin_version=False) as front:
        assert front.state.manager.current.detector.providers[0].startswith("triton:")
        front.add_station(FAIL_ALL, station="failing")  # thresholds that see the weak scores
        answer = front.inspect("failing", data)
        assert answer.status_code == 200, answer.text
        ready = front.client.get("/readyz").json()
        assert ready["providers"][0].startswith("triton:")

    mine, theirs = direct.json(), answer.json()
    assert theirs["verdict"] == mine["verdict"] == "FAIL"
    assert len(mine["detections"]) > 0
    assert [d["class_id"] for d in theirs["detections"]] == [d["class_id"] for d in mine["detections"]]
    np.testing.assert_allclose([d["box"] for d in theirs["detections"]],
                               [d["box"] for d in mine["detections"]], atol=0.5)


def test_a_version_the_server_does_not_hold_is_refused_by_name(peer, model_a):
    with pytest.raises(ModelError, match=r"version 7.*qc models triton"):
        remote(peer, model_a, version="7")


def test_a_server_that_is_down_is_refused_with_the_address(model_a):
    url = f"127.0.0.1:{free_port()}"
    with pytest.raises(ModelError, match=f"triton {url} model 'default'.*(cannot reach|QC_TRITON_URL)"):
        TritonBackend.open(url, "default", metadata=read_metadata(model_a), timeout_s=2)


@pytest.mark.skipif(not os.environ.get("QC_TEST_TRITON_URL"), reason="no Triton server lent "
                    "(QC_TEST_TRITON_URL=host:8000 serving `qc models triton` output as 'pcb')")
def test_a_real_triton_finds_the_same_boxes(model_a, boards):
    local = Detector(model_a, providers=["cpu"], conf=0.001)
    backend = TritonBackend.open(os.environ["QC_TEST_TRITON_URL"], "pcb", version="1")
    assert backend.metadata == read_metadata(model_a)  # from the config's parameters
    far = Detector(model_a, backend=backend, conf=0.001)
    for mine, theirs in zip(local.predict(boards(4)), far.predict(boards(4)), strict=True):
        np.testing.assert_allclose(mine.xyxy, theirs.xyxy, atol=1e-2)
