"""A fuzz target for the image path: Hypothesis crafts frames (valid JPEG, PNG and BMP frames
and RLE8 bombs, then truncated, bit-flipped, padded, their headers' sizes rewritten, or plain
random bytes) and posts each to a running service. For every case:

- no 5xx (only 200, 400, 413, or 503 when the decode budget is busy);
- a refused frame leaves no record and no image file (the station stores every judged frame);
- across the run, the process's peak memory stays within the decode bound plus a fixed slack.

It runs in a subprocess of its own (`python tests/test_fuzz_images.py`), so that the peak
memory (ru_maxrss) it reports is this run's, not an earlier test's. The number of cases is
bounded for CI by QC_FUZZ_EXAMPLES (default 150, about 30 s here); raise it to fuzz longer:

    QC_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz_images.py
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("QC_FUZZ_EXAMPLES", "150"))
# The service under fuzz decodes at most this many pixels at once (3 bytes each: 48 MB).
BOUND_PIXELS = 16_000_000
# Python, Hypothesis, ONNX Runtime's arena and the test client's buffers, beyond the decode.
SLACK_MB = 250


@pytest.mark.slow
def test_the_image_path_survives_crafted_frames(untrained_model, tmp_path):
    result = subprocess.run(
        [sys.executable, __file__, str(untrained_model), str(tmp_path / "home"), str(EXAMPLES)],
        capture_output=True, text=True, timeout=1800, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["cases"] >= min(EXAMPLES, 50), report
    assert set(report["statuses"]) <= {"200", "400", "413", "503"}, report
    assert report["statuses"].get("400", 0) > 0 and report["statuses"].get("200", 0) > 0, report
    growth_mb = (report["peak_kb"] - report["baseline_kb"]) / 1024
    assert growth_mb <= BOUND_PIXELS * 3 / 2**20 + SLACK_MB, report


# -- the frames --------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _seeds() -> dict[str, bytes]:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    pixels = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    frames = {kind: cv2.imencode(ext, pixels)[1].tobytes()
              for kind, ext in (("jpeg", ".jpg"), ("png", ".png"), ("bmp", ".bmp"))}
    frames["progressive"] = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    palette = bytes(256 * 4)
    info = struct.pack("<IiiHHIIiiII", 40, 3000, 3000, 1, 8, 1, 2, 2835, 2835, 256, 0)
    offset = 14 + 40 + len(palette)
    frames["rle8"] = b"BM" + struct.pack("<IHHI", offset + 2, 0, 0, offset) + info + palette + b"\x00\x01"
    ihdr = struct.pack(">IIBBBBB", 4000, 3000, 8, 0, 0, 0, 0)
    frames["png-bomb"] = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                          + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 4001 * 50, 9)) + _png_chunk(b"IEND", b""))
    return frames


def _with_size(data: bytes, width: int, height: int) -> bytes:
    """`data` with its header's size rewritten (any format), the pixel data untouched."""
    out = bytearray(data)
    if data[:4] == b"\x89PNG" and len(out) >= 24:
        out[16:24] = struct.pack(">II", width, height)
    elif data[:2] == b"\xff\xd8":
        sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
        if sof > 0:
            out[sof + 5: sof + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
    elif data[:2] == b"BM" and len(out) >= 26:
        out[18:26] = struct.pack("<ii", width, height)
    return bytes(out)


def frames_strategy():
    from hypothesis import strategies as st

    seeds = _seeds()
    size = st.integers(0, 70_000)
    mutation = st.one_of(
        st.tuples(st.just("truncate"), st.floats(0.0, 1.0)),
        st.tuples(st.just("flip"), st.floats(0.0, 1.0), st.integers(1, 255)),
        st.tuples(st.just("size"), size, size),
        st.tuples(st.just("pad"), st.binary(max_size=2000)),
        st.tuples(st.just("end-marker"), st.floats(0.0, 1.0)),
    )

    @st.composite
    def frames(draw) -> tuple[str, bytes]:
        if draw(st.integers(0, 19)) == 0:
            return "random", draw(st.binary(max_size=4000))
        kind = draw(st.sampled_from(sorted(seeds)))
        data = seeds[kind]
        for op in draw(st.lists(mutation, max_size=4)):
            if op[0] == "truncate":
                data = data[: int(len(data) * op[1])]
            elif op[0] == "flip" and data:
                i = min(len(data) - 1, int(len(data) * op[1]))
                data = data[:i] + bytes([data[i] ^ op[2]]) + data[i + 1:]
            elif op[0] == "size":
                data = _with_size(data, op[1], op[2])
            elif op[0] == "pad":
                data = data + op[1]
            elif op[0] == "end-marker":  # cut, then the JPEG end marker: the half frame
                data = data[: int(len(data) * op[1])] + b"\xff\xd9"
        return kind, data

    return frames()


# -- the worker ----------------------------------------------------------------------------------


def fuzz(model: Path, home: Path, examples: int) -> dict:
    from hypothesis import HealthCheck, given, settings

    from tests.service_harness import FAIL_ALL, running

    statuses: dict[str, int] = {}
    cases = 0
    content_types = {b"\xff\xd8": "image/jpeg", b"\x89P": "image/png", b"BM": "image/bmp"}
    with running(home, model, max_pixels=BOUND_PIXELS, max_request_pixels=BOUND_PIXELS,
                 max_pixels_in_flight=BOUND_PIXELS, pass_sample_rate=1.0) as service:
        station = service.add_station(FAIL_ALL)  # every judged frame is stored: leaks would show
        assert service.inspect(station).status_code == 200  # warm: the model's arena is allocated
        baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(frames_strategy())
        def case(crafted: tuple[str, bytes]) -> None:
            nonlocal cases
            kind, data = crafted
            records = len(service.records(station))
            files = service.image_files()
            content_type = content_types.get(data[:2], "image/jpeg")
            response = service.inspect(station, data, content_type=content_type)
            status = response.status_code
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            cases += 1
            assert status in (200, 400, 413, 503), f"{kind}: {status} {response.text[:300]}"
            if status != 200:
                assert len(service.records(station)) == records, f"{kind}: a refused frame left a record"
                assert service.image_files() == files, f"{kind}: a refused frame left a file"

        case()
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert service.state.decode_budget.used == 0
    return {"cases": cases, "statuses": statuses, "baseline_kb": baseline_kb, "peak_kb": peak_kb}


if __name__ == "__main__":
    import logging

    logging.disable(logging.INFO)
    os.environ.setdefault("QC_LOG_JSON", "false")
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(scratch) / "home"
        report = fuzz(Path(sys.argv[1]), home, int(sys.argv[3]) if len(sys.argv) > 3 else EXAMPLES)
    print(json.dumps(report))
