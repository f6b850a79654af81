"""Reference-image inspection through the service: a station registers its golden part
(versioned like its rules), a reference model judges each frame against it aligned, each
inspection records the reference version and how well it aligned, and a frame that does not
align is REVIEW, never PASS.

The model is the untrained YOLO26n with a reference input contract (fixture
`untrained_reference_model`): its scores mean nothing, so verdicts are steered by rules as in
tests/service_harness.py; what is specified here is the plumbing around the composed input.
A trained reference model judging real defects: tests/test_reference_training.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.data.synth.generator import make_sample, sample_seed
from tests.service_harness import FAIL_ALL, frame


def encode(image: np.ndarray, suffix: str = ".png") -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def moved(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def sample():
    return make_sample(sample_seed(5, 1), width=320, height=240, surface="pcb", reference=True)


@pytest.fixture(scope="module")
def reference_service(untrained_reference_model, tmp_path_factory):
    from tests.service_harness import running

    with running(tmp_path_factory.mktemp("reference-service"), untrained_reference_model,
                 pass_sample_rate=1.0) as started:
        yield started


def put_reference(service, station: str, image: np.ndarray, *, key: dict | None = None):
    return service.client.put(f"/v1/stations/{station}/reference", content=encode(image),
                              headers={**(key or service.admin), "Content-Type": "image/png"})


def test_a_station_without_a_reference_is_told_how_to_register_one(reference_service, sample):
    station = reference_service.add_station()
    refused = reference_service.inspect(station, encode(sample.image), kind="png")
    assert refused.status_code == 409
    assert f"qc stations reference {station}" in refused.json()["detail"]
    assert reference_service.records(station) == []  # nothing stored


def test_frames_are_judged_against_the_registered_reference_and_record_its_version(reference_service, sample):
    service = reference_service
    station = service.add_station(FAIL_ALL)
    registered = put_reference(service, station, sample.reference)
    assert registered.status_code == 200, registered.text
    assert registered.json()["version"] == 1 and registered.json()["width"] == 320
    assert service.client.get(f"/v1/stations/{station}", headers=service.admin).json()["reference_version"] == 1

    judged = service.inspect(station, encode(moved(sample.image, 6.0, -4.0)), kind="png").json()
    assert judged["verdict"] == "FAIL"  # FAIL_ALL: the composed input ran through the model
    assert judged["reference"]["version"] == 1
    assert judged["reference"]["alignment_score"] > 0.9
    assert judged["reference"]["alignment_shift"] == pytest.approx(np.hypot(6, 4), abs=1.0)
    stored = service.records(station)[0]
    assert (stored.reference_version, stored.alignment_score) == (1, judged["reference"]["alignment_score"])

    assert put_reference(service, station, sample.reference).json()["version"] == 2
    assert service.inspect(station, encode(sample.image), kind="png").json()["reference"]["version"] == 2
    history = service.client.get(f"/v1/stations/{station}/references", headers=service.admin).json()
    assert [h["version"] for h in history] == [1, 2]
    image = service.client.get(f"/v1/stations/{station}/reference/image?version=1", headers=service.admin)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert np.array_equal(cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_COLOR), sample.reference)


def test_a_frame_that_does_not_align_to_the_reference_is_reviewed_never_passed(reference_service, sample):
    service = reference_service
    station = service.add_station()  # default rules: this untrained model's frames PASS
    put_reference(service, station, sample.reference)
    assert service.inspect(station, encode(sample.image), kind="png").json()["verdict"] == "PASS"
    other_part = make_sample(sample_seed(5, 2), width=320, height=240, surface="metal").image
    judged = service.inspect(station, encode(other_part), kind="png").json()
    assert judged["verdict"] == "REVIEW"
    assert judged["rule"].startswith("cannot align to reference")
    assert judged["reference"]["alignment_score"] < 0.6


def test_a_frame_decoded_at_reduced_size_is_aligned_to_a_reference_shrunk_alike(reference_service, sample):
    service = reference_service
    station = service.add_station(FAIL_ALL)
    big = cv2.resize(sample.reference, (1280, 960), interpolation=cv2.INTER_CUBIC)
    put_reference(service, station, big)
    frame_big = moved(cv2.resize(sample.image, (1280, 960), interpolation=cv2.INTER_CUBIC), 16.0, 8.0)
    judged = service.inspect(station, encode(frame_big, ".jpg")).json()  # a JPEG: decoded at 1/4 for 160
    assert judged["reference"]["alignment_score"] > 0.8
    assert judged["reference"]["alignment_shift"] == pytest.approx(np.hypot(16, 8), abs=4.0)  # frame pixels
    assert judged["width"] == 1280


def test_registering_a_reference_takes_an_engineer_and_a_whole_image(reference_service, sample):
    service = reference_service
    station = service.add_station()
    station_key = service.key("station", (station,))
    assert put_reference(service, station, sample.reference, key=station_key).status_code == 403
    broken = encode(sample.reference, ".jpg")[:-400]
    refused = service.client.put(f"/v1/stations/{station}/reference", content=broken,
                                 headers={**service.admin, "Content-Type": "image/jpeg"})
    assert refused.status_code == 400
    assert service.client.put("/v1/stations/nowhere/reference", content=encode(sample.reference),
                              headers={**service.admin, "Content-Type": "image/png"}).status_code == 404
    assert service.client.get(f"/v1/stations/{station}/reference", headers=service.admin).status_code == 404
    assert service.client.get(f"/v1/stations/{station}/reference", headers=station_key).status_code == 404


def test_a_plain_model_ignores_a_stations_reference(service, sample):
    station = service.add_station()
    assert put_reference(service, station, sample.reference).status_code == 200
    judged = service.inspect(station, frame()).json()
    assert judged["verdict"] == "PASS" and judged["reference"] is None


def test_the_v2_protocol_refuses_encoded_frames_for_a_reference_model(reference_service, sample):
    import json
    import struct

    image = encode(sample.image)
    header = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(image) + 4}}]}).encode()
    response = reference_service.client.post(
        "/v2/models/default/infer", content=header + struct.pack("<I", len(image)) + image,
        headers={**reference_service.admin, "Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 409
    assert "reference image" in response.text


def test_the_cli_registers_a_reference(qc_home, tmp_path, sample, monkeypatch):
    from typer.testing import CliRunner

    from inspection.settings import Settings
    from inspection.store.database import Database
    from inspection.store.records import RecordStore
    from inspection.store.references import StationReferences
    from qc.cli import app

    path = tmp_path / "golden.png"
    path.write_bytes(encode(sample.reference))
    runner = CliRunner()
    assert runner.invoke(app, ["stations", "add", "cam1"]).exit_code == 0
    done = runner.invoke(app, ["stations", "reference", "cam1", str(path)])
    assert done.exit_code == 0 and "reference v1" in done.output
    db = Database.from_settings(Settings())
    assert RecordStore(db).station("cam1").reference_version == 1
    assert StationReferences(db).current("cam1").image_wh == (320, 240)
    listed = runner.invoke(app, ["stations", "list"])
    assert "reference v1" in listed.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    failed = runner.invoke(app, ["stations", "reference", "cam1", str(bad)])
    # `qc` prints a QCError's message alone (qc/cli.py main); the runner keeps the exception.
    assert failed.exit_code != 0 and "bad.png" in str(failed.exception) and "JPEG, PNG or BMP" in str(failed.exception)


def test_a_reference_model_can_shadow_a_plain_one_at_a_station_with_a_reference(start, untrained_reference_model,
                                                                               sample):
    import time

    service = start(shadow_rate=1.0)
    station = service.add_station(FAIL_ALL)
    put_reference(service, station, sample.reference)
    candidate = service.register(untrained_reference_model)
    assert service.client.put("/v1/shadow", json={"ref": f"default@{candidate}"},
                              headers=service.admin).status_code == 200
    answers = [service.inspect(station, encode(moved(sample.image, i, 0)), kind="png").json() for i in range(3)]
    assert all(a["reference"] is None for a in answers)  # production is the plain model
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        report = service.client.get("/v1/shadow", headers=service.admin).json()
        if report["frames"] >= 3:
            break
        time.sleep(0.05)
    assert report["shadow"] == f"default@{candidate}" and report["frames"] == 3


def test_the_review_page_shows_the_reference_a_frame_was_judged_against(reference_service, sample):
    from tests.test_reviews_api import sign_in

    service = reference_service
    station = service.add_station(FAIL_ALL)
    put_reference(service, station, sample.reference)
    judged = service.inspect(station, encode(sample.image), kind="png").json()
    assert service.client.get(f"/review/reference/{judged['id']}").status_code == 401
    sign_in(service, name=f"rev-{station}")
    shown = service.client.get(f"/review/reference/{judged['id']}")
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    assert np.array_equal(cv2.imdecode(np.frombuffer(shown.content, np.uint8), cv2.IMREAD_COLOR), sample.reference)
    queued = service.client.get("/v1/reviews", params={"station": station}).json()
    assert queued["items"][0]["inspection"]["reference"]["version"] == 1  # what the page's R key reads


def test_a_product_is_judged_against_its_own_golden_part(reference_service, sample):
    """Changeover with references: each product's profile names the station reference that
    shows its golden part; frames are aligned to the product on the line."""
    service = reference_service
    station = service.add_station(FAIL_ALL)
    other = make_sample(sample_seed(5, 9), width=320, height=240, surface="metal", reference=True)
    assert put_reference(service, station, sample.reference).json()["version"] == 1
    assert put_reference(service, station, other.reference).json()["version"] == 2  # the station's current
    saved = service.client.put(f"/v1/stations/{station}/products/board-a", json={"reference": 1},
                               headers=service.admin)
    assert saved.status_code == 200, saved.text
    missing = service.client.put(f"/v1/stations/{station}/products/board-b", json={"reference": 7},
                                 headers=service.admin)
    assert missing.status_code == 422 and "no reference version 7" in missing.json()["detail"]

    as_board_a = service.inspect(station, encode(sample.image), kind="png", headers={"X-Product": "board-a"}).json()
    assert as_board_a["reference"]["version"] == 1 and as_board_a["reference"]["alignment_score"] > 0.9
    as_station = service.inspect(station, encode(sample.image), kind="png").json()
    assert as_station["reference"]["version"] == 2 and as_station["verdict"] == "REVIEW"  # another part's golden
