"""Detector latency, encoded JPEG bytes to detections, against Ultralytics and bare ORT.

    .venv/bin/python bench/detector/run.py --model deeppcb [--images 60]

Two inputs, both from DeepPCB val (../shared/datasets/deeppcb):
  (a) the 640x640 JPEGs as they are;
  (b) camera-size frames: each image resized to 2448x2048 and encoded as JPEG q90, labels
      carried over (they are normalised), as a line camera would send.
Contenders, per image, medians over all images, one process, one run:
  qc            Detector.predict_bytes(jpeg)            decode (reduced when it pays) + letterbox + run + NMS
  qc full       Detector.predict_bytes(jpeg, reduce=1)  the same with a full-size decode
  ultralytics   cv2.imdecode + YOLO(model.onnx).predict(array)
  session.run   the bare ONNX Runtime call on a ready tensor (the floor)
Accuracy of each pipeline on (b): COCO mAP50 / mAP50-95 (pycocotools), conf 0.001.
Writes the `detector` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.report import table, write_section  # noqa: E402
from inspection.detections import Detections  # noqa: E402
from inspection.detector import Detector  # noqa: E402
from inspection.evaluation import evaluate  # noqa: E402
from inspection.formats.yolo import parse_labels  # noqa: E402

DEEPPCB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "deeppcb"
CAMERA = (2448, 2048)


def load_frames(n: int) -> tuple[list[bytes], list[bytes], list[Detections], list[Detections], dict]:
    import yaml

    names = {int(k): v for k, v in yaml.safe_load((DEEPPCB / "data.yaml").read_text())["names"].items()}
    paths = sorted((DEEPPCB / "images" / "val").glob("*.jpg"))[:n]
    small, camera, truth_small, truth_camera = [], [], [], []
    for path in paths:
        data = path.read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        big = cv2.resize(image, CAMERA, interpolation=cv2.INTER_CUBIC)
        small.append(data)
        camera.append(cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        text = (DEEPPCB / "labels" / "val" / f"{path.stem}.txt").read_text()
        for size, out in (((image.shape[1], image.shape[0]), truth_small), (CAMERA, truth_camera)):
            labels, _ = parse_labels(text, image_size=size, names=names, file=str(path))
            out.append(labels)
    return small, camera, truth_small, truth_camera, names


def median_ms(fn, items, *, repeat: int = 1) -> float:
    times = []
    for item in items:
        for _ in range(repeat):
            start = time.perf_counter()
            fn(item)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ONNX file, or a registry name (its production version)")
    parser.add_argument("--images", type=int, default=60, help="DeepPCB val images (>= 50)")
    parser.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: default)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    if not DEEPPCB.is_dir():
        sys.exit(f"DeepPCB not found at {DEEPPCB}")
    model_path = Path(args.model)
    if not model_path.is_file():
        from inspection.registry import Registry
        from inspection.settings import Settings

        model_path = Registry(Settings().models_dir).resolve(args.model).model_path

    small, camera, truth_small, truth_camera, names = load_frames(args.images)
    detector = Detector(model_path, conf=0.25, threads=args.threads)
    from training.ultralytics_env import load_ultralytics

    yolo = load_ultralytics().YOLO(str(model_path), task="detect")
    imgsz = detector.imgsz[0]

    def ultralytics(data: bytes, conf: float = 0.25):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return yolo.predict(image, imgsz=imgsz, conf=conf, verbose=False)[0]

    tensor = np.random.default_rng(0).random((1, 3, *detector.imgsz), dtype=np.float32)
    bare = lambda _: detector.session.run(None, {detector.input_name: tensor})  # noqa: E731
    ultralytics(small[0])  # warm-up

    rows = []
    timings = {}
    for label, frames in (("640x640 DeepPCB JPEG", small), ("2448x2048 camera JPEG", camera)):
        t = {
            "qc": median_ms(lambda d: detector.predict_bytes(d), frames),
            "qc full decode": median_ms(lambda d: detector.predict_bytes(d, reduce=1), frames),
            "ultralytics": median_ms(ultralytics, frames),
            "session.run": median_ms(bare, frames),
        }
        timings[label] = t
        rows.append([label, *(f"{t[k]:.1f}" for k in t),
                     f"{t['ultralytics'] / t['qc']:.2f}x", f"{t['qc'] / t['session.run']:.2f}x"])

    def accuracy(predict, frames, truths):
        predictions = [predict(d) for d in frames]
        return evaluate(predictions, truths, names=names, deploy_conf=0.25).to_json()

    def ul_detections(d):
        r = ultralytics(d, conf=0.001)
        return Detections(xyxy=r.boxes.xyxy.numpy(), confidence=r.boxes.conf.numpy(),
                          class_id=r.boxes.cls.numpy().astype(int), names=names, image_size=CAMERA)

    acc = {
        "qc (auto reduced decode)": accuracy(lambda d: detector.predict_bytes(d, conf=0.001), camera, truth_camera),
        "qc reduce 2": accuracy(lambda d: detector.predict_bytes(d, conf=0.001, reduce=2), camera, truth_camera),
        "qc reduce 4": accuracy(lambda d: detector.predict_bytes(d, conf=0.001, reduce=4), camera, truth_camera),
        "qc full decode": accuracy(lambda d: detector.predict_bytes(d, conf=0.001, reduce=1), camera, truth_camera),
        "ultralytics": accuracy(ul_detections, camera, truth_camera),
    }
    from inspection import imaging

    auto = imaging.reduction_for(imaging.probe(camera[0]), input_size=(detector.imgsz[1], detector.imgsz[0]))
    body = "\n".join([
        "## Detector: encoded JPEG to detections (bench/detector/run.py)",
        "",
        f"Model `{model_path.name}` ({detector.layout.value} head, static {imgsz}x{imgsz}, "
        f"{', '.join(detector.providers)}), {len(small)} DeepPCB val images, medians in ms per image, "
        f"ORT intra-op threads {args.threads or 'default'}. The camera frames are the same images resized "
        f"to 2448x2048 and encoded as JPEG q90; `qc` decodes them at 1/{auto} size (auto).",
        "",
        table(["input", "qc", "qc full decode", "ultralytics predict", "bare session.run",
               "qc speed-up vs ultralytics", "qc / session.run"], rows),
        "",
        "Accuracy on the camera-size frames (COCO, pycocotools; conf 0.001, IoU 0.7):",
        "",
        table(["pipeline", "mAP50", "mAP50-95"],
              [[k, f"{v['map50']:.4f}", f"{v['map50_95']:.4f}"] for k, v in acc.items()]),
    ])
    print(body)
    if not args.dry_run:
        write_section("detector", body)


if __name__ == "__main__":
    os.environ.setdefault("QC_HOME", str(Path(__file__).resolve().parents[2] / ".qc"))
    main()
