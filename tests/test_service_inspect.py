"""The inspect route: frames in, recorded verdicts out; idempotent retries; stored images; bad
input refused with a reason and nothing stored.

The service harness and its model: tests/service_harness.py."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from tests.service_harness import (
    FAIL_ALL,
    REVIEW_ALL,
    TIMINGS,
    concurrently,
    decompression_bomb,
    frame,
)

# -- inspecting ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["jpeg", "png", "bmp"])
def test_a_frame_posted_as_its_image_type_gets_a_recorded_verdict(service, kind):
    station = service.add_station()
    response = service.inspect(station, frame(kind, seed=3), kind=kind)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "PASS"
    assert (body["station"], body["width"], body["height"]) == (station, 320, 240)
    assert [r.id for r in service.records(station)] == [body["id"]]


def test_a_frame_posted_as_multipart_form_data_gets_a_recorded_verdict(service):
    station = service.add_station()
    response = service.client.post(f"/v1/stations/{station}/inspect", headers=service.admin,
                                   files={"file": ("frame.png", frame("png"), "image/png")})
    assert response.status_code == 200, response.text
    assert response.json()["width"] == 320
    assert len(service.records(station)) == 1


def test_the_response_carries_id_verdict_detections_rule_versions_and_timings(service):
    station = service.add_station(FAIL_ALL)
    response = service.inspect(station, headers={"X-Part-Id": "SN-42"})
    body = response.json()
    assert response.status_code == 200
    assert len(body["id"]) == 32
    assert body["verdict"] == "FAIL"
    assert body["rule"] and "fail_conf" in body["rule"]
    assert body["detections"], "a FAIL names the boxes that made it"
    first = body["detections"][0]
    assert {"class", "class_id", "confidence", "box", "area"} <= set(first) and len(first["box"]) == 4
    assert body["model"] == {"name": "default", "version": "v1"}
    assert body["rules_version"] == 1
    assert body["part_id"] == "SN-42"
    assert set(body["timings"]) >= TIMINGS
    assert all(value >= 0 for value in body["timings"].values())
    assert body["timings"]["total_ms"] >= body["timings"]["inference_ms"]
    assert body["created_at"].endswith("Z")
    assert response.headers["x-request-id"]


def test_review_band_frames_get_review(service):
    station = service.add_station(REVIEW_ALL)
    response = service.inspect(station)
    assert response.json()["verdict"] == "REVIEW"
    assert "review band" in response.json()["rule"]


def test_a_frame_can_be_read_back_by_id_as_it_was_answered(service):
    station = service.add_station(FAIL_ALL)
    answered = service.inspect(station, headers={"X-Request-Id": "req-123"}).json()
    read = service.client.get(f"/v1/inspections/{answered['id']}", headers=service.admin)
    assert read.status_code == 200
    again = read.json()
    for field in ("id", "station", "verdict", "rule", "detections", "model", "rules_version", "width",
                  "height", "image_stored", "created_at", "part_id"):
        assert again[field] == answered[field], field
    assert set(again["timings"]) <= set(answered["timings"])
    assert service.state.store.inspection(answered["id"]).request_id == "req-123"


def test_an_unknown_inspection_is_404(service):
    response = service.client.get(f"/v1/inspections/{'0' * 32}", headers=service.admin)
    assert response.status_code == 404 and "does not exist" in response.json()["detail"]


def test_an_unknown_station_is_404_with_the_reason_and_nothing_is_stored(service):
    before = service.state.store.count()
    response = service.inspect("no-such-station")
    assert response.status_code == 404
    assert "no-such-station does not exist" in response.json()["detail"]
    assert service.state.store.count() == before


def test_a_disabled_station_is_409_and_nothing_is_stored(service):
    station = service.add_station({"enabled": False})
    response = service.inspect(station)
    assert response.status_code == 409 and "disabled" in response.json()["detail"]
    assert service.records(station) == []


# -- idempotency ---------------------------------------------------------------------------


def test_a_retry_with_the_same_idempotency_key_returns_the_original_record(service):
    station = service.add_station(FAIL_ALL)
    first = service.inspect(station, frame(seed=1), headers={"Idempotency-Key": "frame-0001"})
    retry = service.inspect(station, frame(seed=2), headers={"Idempotency-Key": "frame-0001"})
    assert first.status_code == retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["verdict"] == first.json()["verdict"]
    assert retry.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(service.records(station)) == 1


def test_a_retry_of_an_acknowledged_frame_gets_its_record_even_after_the_station_is_disabled(service):
    station = service.add_station(FAIL_ALL)
    first = service.inspect(station, frame(seed=3), headers={"Idempotency-Key": "before-off"})
    response = service.client.put(f"/v1/stations/{station}/rules", json={**FAIL_ALL, "enabled": False},
                                  headers=service.admin)
    assert response.status_code == 200
    retry = service.inspect(station, frame(seed=3), headers={"Idempotency-Key": "before-off"})
    assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]
    assert service.inspect(station, frame(seed=4)).status_code == 409


def test_concurrent_retries_with_one_idempotency_key_leave_one_record(service):
    station = service.add_station()
    responses = concurrently(4, lambda i: service.inspect(station, frame(seed=i), headers={"Idempotency-Key": "same"}))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(service.records(station)) == 1


def test_frames_with_a_blank_idempotency_key_are_each_recorded(service):
    station = service.add_station(FAIL_ALL)
    answers = [service.inspect(station, frame(seed=i), headers={"Idempotency-Key": ""}) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.json()["id"] for a in answers}) == 3
    assert not any("Idempotent-Replayed" in a.headers for a in answers)
    assert len(service.records(station)) == 3


def test_distinct_idempotency_keys_make_distinct_records(service):
    station = service.add_station()
    for i in range(3):
        assert service.inspect(station, headers={"Idempotency-Key": f"frame-{i}"}).status_code == 200
    assert len(service.records(station)) == 3


# -- stored images -------------------------------------------------------------------------


@pytest.mark.parametrize("rules", [FAIL_ALL, REVIEW_ALL], ids=["FAIL", "REVIEW"])
def test_fail_and_review_images_are_always_stored(service, rules):
    station = service.add_station(rules)  # this service stores no PASS image (rate 0)
    data = frame(seed=11 if rules is FAIL_ALL else 12)
    body = service.inspect(station, data).json()
    assert body["image_stored"] is True
    stored = service.client.get(f"/v1/inspections/{body['id']}/image", headers=service.admin)
    assert stored.status_code == 200
    assert stored.content == data
    assert stored.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(("rate", "stored"), [(0.0, False), (1.0, True)])
def test_pass_images_are_stored_at_the_sample_rate(start, rate, stored):
    service = start(pass_sample_rate=rate)
    station = service.add_station()
    bodies = [service.inspect(station, frame(seed=i)).json() for i in range(3)]
    assert {b["verdict"] for b in bodies} == {"PASS"}
    assert {b["image_stored"] for b in bodies} == {stored}
    assert len(service.image_files()) == (3 if stored else 0)
    image = service.client.get(f"/v1/inspections/{bodies[0]['id']}/image", headers=service.admin)
    assert image.status_code == (200 if stored else 404)
    if not stored:
        assert "sampled" in image.json()["detail"]


def test_the_image_with_boxes_is_a_jpeg_of_the_frame_with_the_detections_drawn(service):
    station = service.add_station(FAIL_ALL)
    data = frame("png", seed=21)
    body = service.inspect(station, data, kind="png").json()
    plain = service.client.get(f"/v1/inspections/{body['id']}/image", headers=service.admin)
    assert plain.headers["content-type"] == "image/png" and plain.content == data
    boxed = service.client.get(f"/v1/inspections/{body['id']}/image?boxes=true", headers=service.admin)
    assert boxed.status_code == 200 and boxed.headers["content-type"] == "image/jpeg"
    drawn = cv2.imdecode(np.frombuffer(boxed.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == original.shape
    assert np.abs(drawn.astype(int) - original.astype(int)).mean() > 1  # boxes were drawn


# -- bad input: refused with a reason, never 5xx, nothing stored ---------------------------


def truncated_jpeg() -> bytes:
    data = frame(seed=60)
    return data[: len(data) // 2]


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(frame(seed=61))
    sof = data.find(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(frame("bmp", seed=62))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


BAD_FRAMES = {
    "truncated JPEG": (truncated_jpeg, "image/jpeg", 400, "truncated JPEG"),
    "empty body": (lambda: b"", "image/jpeg", 400, "empty"),
    "wrong magic bytes": (lambda: b"GIF89a" + bytes(200), "image/jpeg", 400, "not a JPEG, PNG or BMP"),
    "text posing as PNG": (lambda: b"hello, world" * 20, "image/png", 400, "not a JPEG, PNG or BMP"),
    "PNG cut after its header": (lambda: frame("png", seed=63)[:40], "image/png", 400, "truncated PNG"),
    "PNG without IHDR": (lambda: b"\x89PNG\r\n\x1a\n" + bytes(30), "image/png", 400, "no IHDR"),
    "PNG of 0 x 0": (lambda: decompression_bomb(0, 0), "image/png", 400, "0x0"),
    "BMP cut short": (lambda: frame("bmp", seed=64)[:20], "image/bmp", 400, "truncated BMP"),
    "BMP of garbage pixels": (lambda: frame("bmp", seed=65)[:2000], "image/bmp", 400, "corrupt bmp"),
    "JPEG claiming 60000 x 60000": (lambda: jpeg_claiming(60000, 60000), "image/jpeg", 413, "pixels"),
    "BMP claiming 2^31 pixels wide": (lambda: bmp_claiming(-(2**31), 2), "image/bmp", 413, "pixels"),
    "text/plain": (lambda: frame(seed=66), "text/plain", 415, "content type"),
    "no content type": (lambda: frame(seed=67), "", 415, "content type"),
    "image/gif": (lambda: frame(seed=68), "image/gif", 415, "image/gif"),
    "multipart without boundary": (lambda: b"--x\r\n\r\n", "multipart/form-data", 400, "multipart"),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES), ids=list(BAD_FRAMES))
def test_bad_frames_are_refused_with_a_reason_and_nothing_is_stored(service, case):
    make, content_type, status, reason = BAD_FRAMES[case]
    station = service.add_station(FAIL_ALL)  # would store the image of any frame it judged
    images = service.image_files()
    headers = {**service.admin, "Idempotency-Key": f"bad-{case}"}
    if content_type:
        headers["Content-Type"] = content_type
    response = service.client.post(f"/v1/stations/{station}/inspect", content=make(), headers=headers)
    assert response.status_code == status, response.text
    assert reason.lower() in response.json()["detail"].lower()
    assert service.records(station) == []
    assert service.image_files() == images


@pytest.mark.parametrize("files", [
    {"other": ("frame.jpg", b"\xff\xd8", "image/jpeg")},
    {"file": (None, "just text")},
], ids=["no file part", "file part is a text field"])
def test_multipart_without_an_image_file_part_is_400(service, files):
    station = service.add_station()
    response = service.client.post(f"/v1/stations/{station}/inspect", headers=service.admin, files=files)
    assert response.status_code == 400 and "'file'" in response.json()["detail"]
    assert service.records(station) == []


def test_a_decompression_bomb_is_refused_413_before_any_decoding(service, monkeypatch):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("the frame was decoded")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    station = service.add_station(FAIL_ALL)
    bomb = decompression_bomb()
    assert len(bomb) < 10_000
    response = service.inspect(station, bomb, kind="png")
    assert response.status_code == 413
    assert "30000x30000" in response.json()["detail"]
    assert service.records(station) == []


def test_a_body_over_max_body_bytes_is_413_whether_declared_or_streamed(service, monkeypatch):
    monkeypatch.setattr(service.settings, "max_body_bytes", 4096)
    station = service.add_station()
    big = frame(seed=70, size=(640, 480))
    assert len(big) > 4096
    declared = service.inspect(station, big)
    assert declared.status_code == 413 and "over the limit" in declared.json()["detail"]

    def chunks():
        for start in range(0, len(big), 1000):
            yield big[start: start + 1000]

    streamed = service.client.post(f"/v1/stations/{station}/inspect", content=chunks(),
                                   headers={**service.admin, "Content-Type": "image/jpeg"})
    assert streamed.status_code == 413
    assert service.records(station) == []


def test_a_frame_over_max_pixels_is_413(service, monkeypatch):
    monkeypatch.setattr(service.settings, "max_pixels", 100 * 100)
    station = service.add_station()
    response = service.inspect(station, frame(seed=71))
    assert response.status_code == 413 and "320x240" in response.json()["detail"]
    assert service.records(station) == []


@pytest.mark.parametrize("header", ["X-Part-Id", "Idempotency-Key"])
def test_an_overlong_part_id_or_idempotency_key_is_422_and_nothing_is_stored(service, header):
    station = service.add_station()
    response = service.inspect(station, headers={header: "x" * 129})
    assert response.status_code == 422
    assert service.records(station) == []


