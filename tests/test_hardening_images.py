"""Damaged frames, zero-sized frames and decompression bombs (issue 9, defects 1-3), as a
specification: a line never passes a part on a broken image, and no frame, however small on
the wire, can make the service allocate more than its bounds.

Each reproduction of the issue is a test here; they failed before the fix (a cut JPEG with
FFD9 appended was judged, a JPEG with a zero dimension was a 500, eight 100 MP BMPs in one
/v2 request were decoded).
"""

from __future__ import annotations

import json
import struct
import time

import cv2
import numpy as np
import pytest

from inspection.detect import imaging
from inspection.errors import DamagedImage, ImageError
from tests.service_harness import FAIL_ALL, concurrently, frame

# -- frames damaged the ways the issue's probe damaged them ----------------------------------


def camera_jpeg(seed: int = 0, size: tuple[int, int] = (640, 640)) -> bytes:
    """A smooth 640x640 JPEG (like a camera frame: blurred noise), about 100 KB."""
    rng = np.random.default_rng(seed)
    pixels = cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), (0, 0), 2)
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def cut_with_end_marker(data: bytes) -> bytes:
    """`head -c N f.jpg > h.jpg; printf '\\xff\\xd9' >> h.jpg`: half the scan, then FFD9."""
    return data[: len(data) // 2] + b"\xff\xd9"


def flipped_scan_bytes(data: bytes) -> bytes:
    """Bytes flipped in the entropy-coded data after the start of scan (these positions are
    checked to produce a libjpeg warning: see test_flips_that_libjpeg_notices_are_refused)."""
    damaged = bytearray(data)
    start = data.find(b"\xff\xda") + 20
    for offset in range(0, 4000, 400):
        damaged[start + offset] ^= 0x5A
    return bytes(damaged)


def claiming(data: bytes, width: int, height: int) -> bytes:
    """The frame header rewritten to claim width x height for the same scan data."""
    damaged = bytearray(data)
    sof = data.find(b"\xff\xc0")
    damaged[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(damaged)


DAMAGED = {
    "cut in half, FFD9 appended": lambda: cut_with_end_marker(camera_jpeg(1)),
    "flipped bytes in the scan": lambda: flipped_scan_bytes(camera_jpeg(2)),
    "header claims 9000x9000 for 640x640 data": lambda: claiming(camera_jpeg(3), 9000, 9000),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_imaging_refuses_damaged_jpegs_with_libjpegs_reason(case):
    with pytest.raises(DamagedImage, match=r"JPEG: .*(Corrupt JPEG data|Premature end)"):
        imaging.decode(DAMAGED[case]())


def test_padding_after_the_end_marker_is_accepted():
    data = camera_jpeg(4)
    padded = data + bytes(4096)  # cameras that pad a frame to a block size
    assert np.array_equal(imaging.decode(padded), imaging.decode(data))
    assert imaging.decode(data + b"\xff" * 100).shape == (640, 640, 3)


def test_jpeg_pixels_equal_opencvs_at_every_reduction():
    data = camera_jpeg(5, size=(1000, 750))
    for reduce, flag in ((1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2),
                         (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8)):
        ours = imaging.decode(data, reduce=reduce)
        assert np.array_equal(ours, cv2.imdecode(np.frombuffer(data, np.uint8), flag)), reduce
        assert ours.shape[:2][::-1] == imaging.probe(data).decoded_wh(reduce)


def test_a_grayscale_jpeg_decodes_to_bgr():
    gray = cv2.imencode(".jpg", np.full((48, 64), 128, np.uint8))[1].tobytes()
    assert imaging.decode(gray).shape == (48, 64, 3)


@pytest.mark.parametrize("kind", ["jpeg", "png", "bmp"])
def test_a_zero_dimension_is_an_image_error_not_a_crash(kind):
    data = bytearray(frame(kind, size=(32, 24)))
    if kind == "jpeg":
        sof = data.find(b"\xff\xc0")
        data[sof + 5: sof + 7] = b"\x00\x00"  # height 0
    elif kind == "png":
        data[16:20] = bytes(4)  # width 0
    else:
        data[18:22] = bytes(4)  # width 0
    with pytest.raises(ImageError, match="at least 1"):
        imaging.probe(bytes(data))
    with pytest.raises(ImageError, match="at least 1"):
        imaging.decode(bytes(data))


def test_reduction_for_a_zero_sized_header_does_not_divide_by_zero():
    assert imaging.reduction_for(imaging.ImageHeader("jpeg", 0, 480), input_hw=(640, 640)) == 1


# -- the service: 400 with the reason, or REVIEW where the station prefers a verdict ---------


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_damaged_frame_is_refused_with_its_reason_counted_and_nothing_stored(service, case):
    station = service.add_station(FAIL_ALL)  # would store the image of any frame it judged
    images = service.image_files()
    response = service.inspect(station, DAMAGED[case]())
    assert response.status_code == 400, response.text
    assert "JPEG" in response.json()["detail"] and "corrupt or incomplete" in response.json()["detail"]
    assert service.records(station) == [] and service.image_files() == images
    metrics = service.client.get("/metrics", headers=service.admin).text
    assert f'qc_damaged_images_total{{outcome="refuse",station="{station}"}} 1.0' in metrics
    assert 'qc_rejected_total{reason="damaged_image"}' in metrics


def test_frames_that_fail_whole_never_pass_when_cut(service):
    """Two frames that FAIL whole came back PASS when cut: now they are never judged at all."""
    station = service.add_station({"default": {"fail_conf": 1e-6, "review_conf": 1e-6}})
    for seed in (10, 11):
        whole = camera_jpeg(seed)
        assert service.inspect(station, whole).json()["verdict"] == "FAIL"
        assert service.inspect(station, cut_with_end_marker(whole)).status_code == 400


def test_a_station_that_prefers_a_verdict_gets_review_with_rule_damaged_image(service):
    station = service.add_station({**FAIL_ALL, "damaged_image": "review"})
    response = service.inspect(station, DAMAGED["cut in half, FFD9 appended"](),
                               headers={"Idempotency-Key": "damaged-1", "X-Part-Id": "SN-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "REVIEW" and body["rule"].startswith("damaged image: ")
    assert body["detections"] == [] and body["image_stored"] is True and body["part_id"] == "SN-1"
    [record] = service.records(station)
    assert record.verdict == "REVIEW" and service.state.images.path(record.image_sha256).is_file()
    again = service.inspect(station, DAMAGED["cut in half, FFD9 appended"](),
                            headers={"Idempotency-Key": "damaged-1"})
    assert again.json()["id"] == body["id"] and again.headers["idempotent-replayed"] == "true"
    metrics = service.client.get("/metrics", headers=service.admin).text
    assert f'qc_damaged_images_total{{outcome="review",station="{station}"}} 1.0' in metrics
    assert f'qc_verdicts_total{{station="{station}",verdict="REVIEW"}} 1.0' in metrics


def test_rules_refuse_an_unknown_damaged_image_choice(service):
    response = service.client.post("/v1/stations", json={"id": "st-dmg-x", "rules": {"damaged_image": "pass"}},
                                   headers=service.admin)
    assert response.status_code == 422


def test_a_padded_frame_is_judged(service):
    station = service.add_station()
    response = service.inspect(station, camera_jpeg(6) + bytes(1000))
    assert response.status_code == 200, response.text


def v2_images(service, images: list[bytes]):
    """POST encoded images to /v2 infer in the binary tensor extension, as tritonclient does."""
    header = json.dumps({"inputs": [{"name": "image", "shape": [len(images)], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": sum(len(i) + 4 for i in images)}}]}
                        ).encode()
    body = header + b"".join(struct.pack("<I", len(i)) + i for i in images)
    return service.client.post("/v2/models/default/infer", content=body,
                               headers={**service.admin, "Inference-Header-Content-Length": str(len(header))})


def test_a_zero_dimension_jpeg_is_400_on_inspect_and_on_v2(service):
    station = service.add_station()
    zero = claiming(camera_jpeg(7), 640, 0)
    response = service.inspect(station, zero)
    assert response.status_code == 400 and "at least 1" in response.json()["detail"]
    v2 = v2_images(service, [zero])
    assert v2.status_code == 400, v2.text
    assert "at least 1" in v2.json()["error"]


# -- decompression bombs under the pixel limit --------------------------------------------


def rle8_bmp(width: int, height: int) -> bytes:
    """The issue's bomb: a ~1 KB run-length encoded BMP claiming width x height; its only
    code is end-of-bitmap, so a decoder allocates every pixel and fills them with colour 0."""
    palette = bytes(256 * 4)
    pixels = b"\x00\x01"  # RLE8: end of bitmap
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def test_the_rle8_bomb_is_what_the_issue_says():
    bomb = rle8_bmp(10000, 10000)
    assert len(bomb) < 1100
    assert imaging.probe(bomb) == imaging.ImageHeader("bmp", 10000, 10000)


def test_eight_bombs_in_one_v2_request_are_413_before_anything_is_decoded(start, monkeypatch):
    service = start(max_pixels=100_000_000, max_request_pixels=100_000_000)
    decoded = []
    real = imaging.decode
    monkeypatch.setattr(imaging, "decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    bombs = [rle8_bmp(10000, 10000)] * 8
    assert sum(map(len, bombs)) < 8800
    response = v2_images(service, bombs)
    assert response.status_code == 413, response.text
    assert "QC_MAX_REQUEST_PIXELS" in response.json()["error"]
    assert decoded == []


def test_a_bomb_over_the_in_flight_budget_is_413_and_decodes_nothing(start, monkeypatch):
    service = start(max_pixels_in_flight=10_000_000)
    station = service.add_station()
    decoded = []
    real = imaging.decode
    monkeypatch.setattr(imaging, "decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    response = service.inspect(station, rle8_bmp(5000, 4000), kind="bmp")
    assert response.status_code == 413 and "pixels" in response.json()["detail"]
    assert decoded == [] and service.records(station) == []


def test_concurrent_decodes_share_one_budget_the_rest_get_503(start, monkeypatch):
    """Pixels in flight across the process are bounded, not only per image: while one frame
    holds the budget, the next that does not fit is refused with Retry-After."""
    import serving.state

    real = serving.state.run_batch
    monkeypatch.setattr(serving.state, "run_batch",
                        lambda model, frames, **kw: (time.sleep(1.0), real(model, frames, **kw))[1])
    one = 2 * 320 * 240  # a PNG's decode costs twice its pixels (ImageHeader.decode_cost)
    service = start(max_pixels_in_flight=int(one * 1.5), max_batch=1, max_wait_ms=0)
    station = service.add_station()
    responses = concurrently(3, lambda i: service.inspect(station, frame("png", seed=300 + i), kind="png"))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 1 and 503 in codes and set(codes) <= {200, 503}, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "QC_MAX_PIXELS_IN_FLIGHT" in busy.json()["detail"]
    assert len(service.records(station)) == codes.count(200)
    assert service.state.decode_budget.used == 0  # every reservation given back


def test_a_stored_frame_is_drawn_at_display_size(start):
    service = start(pass_sample_rate=1.0)
    station = service.add_station()
    big = camera_jpeg(8, size=(4096, 3072))
    record = service.inspect(station, big).json()
    drawn = service.client.get(f"/v1/inspections/{record['id']}/image?boxes=true", headers=service.admin)
    assert drawn.status_code == 200
    image = cv2.imdecode(np.frombuffer(drawn.content, np.uint8), cv2.IMREAD_COLOR)
    assert max(image.shape[:2]) == 2048 and image.shape[:2] == (1536, 2048)
    original = service.client.get(f"/v1/inspections/{record['id']}/image", headers=service.admin)
    assert original.content == big
