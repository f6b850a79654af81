"""`qc predict`: one JSON line per image, unreadable images named on stderr, exit code 1 when
any failed, annotated copies with --save; and models of either precision load."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from qc.cli import app


@pytest.fixture
def frames(tmp_path) -> Path:
    from inspection.data.synth import make_sample

    folder = tmp_path / "frames"
    (folder / "sub").mkdir(parents=True)
    for i, (w, h) in enumerate([(160, 160), (320, 240)]):
        cv2.imwrite(str(folder / f"f{i}.jpg"), make_sample(i, width=w, height=h).image)
    cv2.imwrite(str(folder / "sub" / "f2.png"), make_sample(2, width=200, height=100).image)
    return folder


def run(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


def test_each_image_gets_one_json_line_with_its_size_and_detections(untrained_model, frames, qc_home):
    result = run("--model", str(untrained_model), "--conf", "0.0001", str(frames))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["image"]).name for line in lines] == ["f0.jpg", "f1.jpg", "f2.png"]
    assert (lines[1]["width"], lines[1]["height"]) == (320, 240)
    detection = lines[1]["detections"][0]
    assert set(detection) == {"class", "class_id", "confidence", "box"}
    x1, y1, x2, y2 = detection["box"]
    assert 0 <= x1 <= x2 <= 320 and 0 <= y1 <= y2 <= 240


def test_globs_and_files_are_accepted(untrained_model, frames, qc_home):
    result = run("--model", str(untrained_model), str(frames / "*.jpg"), str(frames / "sub" / "f2.png"))
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 3


def test_unreadable_images_are_named_on_stderr_and_the_others_still_run(untrained_model, frames, qc_home):
    (frames / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (frames / "cut.jpg").write_bytes((frames / "f0.jpg").read_bytes()[:500])
    result = run("--model", str(untrained_model), str(frames), str(frames / "missing.jpg"))
    assert result.exit_code == 1
    assert len(result.stdout.splitlines()) == 3
    assert "broken.jpg" in result.stderr and "cut.jpg: truncated JPEG" in result.stderr
    assert "missing.jpg: no such file" in result.stderr


def test_save_writes_annotated_copies(untrained_model, frames, qc_home, tmp_path):
    out = tmp_path / "annotated"
    result = run("--model", str(untrained_model), "--conf", "0.0001", "--save", str(out), str(frames / "f1.jpg"))
    assert result.exit_code == 0
    drawn = cv2.imread(str(out / "f1.jpg"))
    assert drawn.shape == (240, 320, 3)
    assert not np.array_equal(drawn, cv2.imread(str(frames / "f1.jpg"))), "boxes were drawn"


def test_same_named_images_in_two_folders_are_both_saved(untrained_model, tmp_path, qc_home):
    from inspection.data.synth import make_sample

    dup = tmp_path / "dup"
    for i, folder in enumerate(["a", "b"]):
        (dup / folder).mkdir(parents=True)
        cv2.imwrite(str(dup / folder / "f.jpg"), make_sample(i, width=160, height=120).image)
    out = tmp_path / "annotated"
    result = run("--model", str(untrained_model), "--save", str(out), str(dup))
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == ["a/f.jpg", "b/f.jpg"]

    # Named by two arguments, the same relative name is made unique rather than overwritten.
    apart = tmp_path / "apart"
    result = run("--model", str(untrained_model), "--save", str(apart), str(dup / "a"), str(dup / "b"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in apart.iterdir()) == ["f-2.jpg", "f.jpg"]
    assert not np.array_equal(cv2.imread(str(apart / "f.jpg")), cv2.imread(str(apart / "f-2.jpg")))


def qc_cli(*args: str, **env: str):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "qc", *args], check=False, capture_output=True,
                          text=True,
                          env={**os.environ, **env})


def test_save_naming_a_file_is_one_clear_line_with_exit_code_2(untrained_model, frames, tmp_path, qc_home):
    existing = tmp_path / "annotated.jpg"
    existing.write_bytes(b"not a folder")
    result = qc_cli("predict", "--model", str(untrained_model), "--save", str(existing), str(frames))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --save {existing}: is a file, not a folder")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stdout == "", "nothing was predicted"
    assert existing.read_bytes() == b"not a folder"


def test_qc_providers_is_honoured_when_providers_is_not_given(untrained_model, frames, qc_home):
    result = qc_cli("predict", "--model", str(untrained_model), str(frames), QC_PROVIDERS="bogus")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown execution provider 'bogus'")
    assert "Traceback" not in result.stderr

    # --providers, when given, wins over QC_PROVIDERS.
    result = qc_cli("predict", "--model", str(untrained_model), "--providers", "cpu", str(frames),
                    QC_PROVIDERS="bogus")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_a_model_that_is_not_onnx_is_one_clear_line_not_a_traceback(frames, tmp_path, qc_home):
    import subprocess
    import sys

    bogus = tmp_path / "model.onnx"
    bogus.write_text("hello")
    result = subprocess.run([sys.executable, "-m", "qc", "predict", "--model", str(bogus), str(frames)],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {bogus}: ONNX Runtime cannot load it")
    assert "Traceback" not in result.stderr


def test_an_fp16_model_with_fp16_inputs_gives_the_same_boxes(untrained_model, frames, tmp_path):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from inspection.detect.detector import Detector

    half = tmp_path / "half.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(untrained_model)), keep_io_types=False), str(half))
    image = cv2.imread(str(frames / "f1.jpg"))
    full = Detector(untrained_model, conf=0.0001).predict([image])[0]
    reduced = Detector(half, conf=0.0001)
    assert reduced.input_dtype == np.float16
    got = reduced.predict([image])[0]
    assert len(got) > 0 and abs(len(got) - len(full)) <= max(3, len(full) // 10)
