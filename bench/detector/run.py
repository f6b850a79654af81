"""Detector latency, encoded JPEG bytes to detections, against Ultralytics and bare ORT.

    .venv/bin/python bench/detector/run.py --model deeppcb [--images 60]

Two inputs, both from DeepPCB val (../shared/datasets/deeppcb):
  (a) the 640x640 JPEGs as they are;
  (b) camera-size frames: each image resized to 2448x2048 and encoded as JPEG q90, labels
      carried over (they are normalised), as a line camera would send.
Contenders, per image, medians over all images, one process, one run:
  qc            Detector.predict_bytes(jpeg)            decode (reduced when it pays) + letterbox + run + NMS
  qc int8       the same on the int8 export (--int8, --camera-int8), which `qc export --serve auto`
                serves where its export check holds within 0.01 mAP50-95
  qc full       Detector.predict_bytes(jpeg, reduce=1)  the same with a full-size decode
  ultralytics   cv2.imdecode + YOLO(model.onnx).predict(array)
  session.run   the bare ONNX Runtime call on a ready tensor (the floor)
Accuracy of each pipeline on (b): COCO mAP50 / mAP50-95 (COCOeval), conf 0.001.
Writes the `detector` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import DEEPPCB, model_file, use_repo_home
from bench.report import table, write_section
from inspection.data.formats.yolo import parse_labels
from inspection.detect.detector import Detector
from inspection.detections import Detections
from inspection.evaluate.metrics import evaluate

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
            labels, _ = parse_labels(text, image_wh=size, names=names, file=str(path))
            out.append(labels)
    return small, camera, truth_small, truth_camera, names


def medians(contenders: dict, items: list, *, rounds: int = 3) -> dict[str, float]:
    """Median ms per contender of `fn(index, item)`. Each contender runs in a block through all
    items (two ONNX Runtime sessions taking turns frame by frame slow each other down: the idle
    one's threads still spin), and the blocks take turns for `rounds` rounds, so that drift in
    the machine's speed falls on every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            for index, item in enumerate(items):
                start = time.perf_counter()
                fn(index, item)
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ONNX file, or a registry name (its production version)")
    parser.add_argument("--camera-model", help="ONNX of the same weights exported for the camera's "
                        "aspect (qc export RUN --imgsz 544,640); default: --model")
    parser.add_argument("--int8", help="the int8 export of --model (qc export --int8)")
    parser.add_argument("--camera-int8", help="the int8 export of --camera-model")
    parser.add_argument("--images", type=int, default=60, help="DeepPCB val images (>= 50)")
    parser.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0: default)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    if not DEEPPCB.is_dir():
        sys.exit(f"DeepPCB not found at {DEEPPCB}")
    model_path = model_file(args.model)

    small, camera, _truth_small, truth_camera, names = load_frames(args.images)
    camera_path = Path(args.camera_model) if args.camera_model else model_path
    from inspection.detect.preprocess import to_tensor
    from training.ultralytics_env import load_ultralytics

    rows = []
    models = {}
    int8s: dict[str, Detector] = {}
    for label, frames, path, int8 in (("640x640 DeepPCB JPEG", small, model_path, args.int8),
                                      ("2448x2048 camera JPEG", camera, camera_path, args.camera_int8)):
        detector = Detector(path, conf=0.25, threads=args.threads)
        if int8:
            int8s[label] = Detector(int8, conf=0.25, threads=args.threads)
        yolo = load_ultralytics().YOLO(str(path), task="detect")
        imgsz = list(detector.input_hw)
        models[label] = (detector, yolo, imgsz)

        def ultralytics(data: bytes, conf: float = 0.25, yolo=yolo, imgsz=imgsz):
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            return yolo.predict(image, imgsz=imgsz, conf=conf, verbose=False)[0]

        ultralytics(frames[0])  # warm-up
        # The floor: session.run alone, on each frame's own tensor (made beforehand). A random
        # tensor would not do: this model ran 20-30% slower on noise than on real frames.
        tensors = [to_tensor([detector.prepare(detector.load_bytes(d, reduce=1)[0])[0]]) for d in frames]
        contenders = {
            "qc": lambda i, d, detector=detector: detector.predict_bytes(d),
            "qc full decode": lambda i, d, detector=detector: detector.predict_bytes(d, reduce=1),
            "ultralytics": lambda i, d: ultralytics(d),
            "session.run": lambda i, d, detector=detector, tensors=tensors: detector.session.run(
                None, {detector.input_name: tensors[i]}),
        }
        if label in int8s:
            contenders["qc int8"] = lambda i, d, detector=int8s[label]: detector.predict_bytes(d)
        t = medians(contenders, frames)
        q8 = t.get("qc int8")
        rows.append([label, *(f"{t[k]:.1f}" for k in ("qc", "qc full decode", "ultralytics", "session.run")),
                     f"{q8:.1f}" if q8 else "-", f"{t['ultralytics'] / t['qc']:.2f}x",
                     f"{t['ultralytics'] / q8:.2f}x" if q8 else "-", f"{t['qc'] / t['session.run']:.2f}x"])

    detector, yolo, imgsz = models["2448x2048 camera JPEG"]

    def accuracy(predict, frames, truths):
        predictions = [predict(d) for d in frames]
        return evaluate(predictions, truths, names=names, deploy_conf=0.25).to_json()

    def ul_detections(d):
        image = cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR)
        r = yolo.predict(image, imgsz=imgsz, conf=0.001, verbose=False)[0]
        return Detections(xyxy=r.boxes.xyxy.numpy(), confidence=r.boxes.conf.numpy(),
                          class_id=r.boxes.cls.numpy().astype(int), names=names, image_wh=CAMERA)

    acc = {
        "qc (auto reduced decode)": accuracy(lambda d: detector.predict_bytes(d, conf=0.001), camera, truth_camera),
        "qc reduce 2": accuracy(lambda d: detector.predict_bytes(d, conf=0.001, reduce=2), camera, truth_camera),
        "qc reduce 4": accuracy(lambda d: detector.predict_bytes(d, conf=0.001, reduce=4), camera, truth_camera),
        "qc full decode": accuracy(lambda d: detector.predict_bytes(d, conf=0.001, reduce=1), camera, truth_camera),
        "ultralytics": accuracy(ul_detections, camera, truth_camera),
    }
    camera_int8 = int8s.get("2448x2048 camera JPEG")
    if camera_int8 is not None:
        acc["qc int8 (auto reduced decode)"] = accuracy(lambda d: camera_int8.predict_bytes(d, conf=0.001),
                                                       camera, truth_camera)
    from inspection.detect import imaging

    auto = imaging.reduction_for(imaging.probe(camera[0]), input_hw=detector.input_hw)
    square = models["640x640 DeepPCB JPEG"][0]
    body = "\n".join([
        "## Detector: encoded JPEG to detections (bench/detector/run.py)",
        "",
        (f"One set of weights (DeepPCB, {square.layout.value} head), exported static "
        f"{square.input_hw[0]}x{square.input_hw[1]} for the 640x640 images and "
        f"{detector.input_hw[0]}x{detector.input_hw[1]} "
        f"(height x width) for the camera frames; `qc` and Ultralytics run the same ONNX file "
        f"({', '.join(detector.providers)}). {len(small)} DeepPCB val images, medians in ms per image, "
        f"ORT intra-op threads {args.threads or 'default'}. The camera frames are the same images resized "
        f"to 2448x2048 and encoded as JPEG q90; `qc` decodes them at 1/{auto} size (auto)."),
        "",
        table(["input", "qc", "qc full decode", "ultralytics predict", "bare session.run (fp32)", "qc int8",
               "qc speed-up vs ultralytics", "qc int8 speed-up vs ultralytics", "qc / session.run"], rows),
        "",
        "Accuracy on the camera-size frames (COCOeval; conf 0.001, IoU 0.7):",
        "",
        table(["pipeline", "mAP50", "mAP50-95"],
              [[k, f"{v['map50']:.4f}", f"{v['map50_95']:.4f}"] for k, v in acc.items()]),
    ])
    print(body)
    if not args.dry_run:
        write_section("detector", body)


if __name__ == "__main__":
    use_repo_home()
    main()
