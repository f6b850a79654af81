"""Tiles against shrinking the whole frame, on camera-size frames made from DeepPCB.

    .venv/bin/python bench/tiling/run.py --model RUN_OR_ONNX [--grid 3] [--frames 12]

A camera frame here is a `--grid` x `--grid` mosaic of DeepPCB images from the three boards
`boards.yaml` keeps out of training (640 px each at native resolution: 3 x 3 is 1920 x 1920,
3.7 MP), its reference the same mosaic of their templates, its truth their boxes moved into
place. Each frame is judged twice by the same model, as the service would judge it: whole
(letterboxed down to the network's input, so a 3 x 3 frame shows its defects at a third of
their size) and tile by tile (`inspection/detect/tiling.py`: network-size tiles at native
resolution, `--overlap` pixels shared, run as one batch, boxes merged). A reference model
judges each against the mosaic of templates, aligned as the service aligns it.

Counted at the deploy threshold (conf 0.25) and the DeepPCB criterion (IoU > 0.33): recall
over all defects and over the small ones (longer side at most `--small` pixels), false
positives per frame, and wall time per frame (alignment, tiles and merge included; the frame
already decoded). Writes the `tiling-deeppcb` section of BENCHMARKS.md.
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

CONF = 0.25
IOU = 0.33  # the DeepPCB paper's criterion


def val_images() -> list[Path]:
    """The images of the boards training never saw, in `boards-val.txt` order."""
    lines = (DEEPPCB / "boards-val.txt").read_text().split()
    return [DEEPPCB / line for line in lines]


def mosaics(grid: int, count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """`count` (frame, reference, boxes xyxy) mosaics of grid x grid val images."""
    from inspection.data.formats.yolo import label_path_for, parse_labels, reference_path_for

    images = val_images()
    names = {i: str(i) for i in range(6)}
    made = []
    for start in range(0, min(count * grid * grid, len(images) - grid * grid + 1), grid * grid):
        frame = np.zeros((grid * 640, grid * 640, 3), np.uint8)
        reference = np.zeros_like(frame)
        boxes = []
        for i, path in enumerate(images[start:start + grid * grid]):
            row, col = divmod(i, grid)
            cell = (slice(row * 640, (row + 1) * 640), slice(col * 640, (col + 1) * 640))
            frame[cell] = cv2.imread(str(path))
            template = reference_path_for(path)
            if template is None:
                sys.exit(f"{path}: no template beside it (templates/); DeepPCB's README says where they are")
            reference[cell] = cv2.imread(str(template))
            label = label_path_for(path, root=DEEPPCB)
            found, _ = parse_labels(label.read_text(), image_wh=(640, 640), names=names, file=str(label))
            boxes += [box + np.array([col * 640, row * 640] * 2) for box in found.xyxy]
        made.append((frame, reference, np.array(boxes, np.float32).reshape(-1, 4)))
    return made


def matches(found: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int]:
    """Which truth boxes some found box covers at IoU > 0.33, and how many found boxes cover
    none (false positives)."""
    if not len(found) or not len(truth):
        return np.zeros(len(truth), bool), len(found)
    x1 = np.maximum(truth[:, None, 0], found[None, :, 0])
    y1 = np.maximum(truth[:, None, 1], found[None, :, 1])
    x2 = np.minimum(truth[:, None, 2], found[None, :, 2])
    y2 = np.minimum(truth[:, None, 3], found[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_t = (truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1])
    area_f = (found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1])
    iou = inter / (area_t[:, None] + area_f[None, :] - inter)
    hit = iou > IOU
    return hit.any(axis=1), int((~hit.any(axis=0)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ONNX file, a run folder (its export/model.onnx), "
                                                       "or a registry name")
    parser.add_argument("--grid", type=int, default=3, help="DeepPCB images per side of a frame")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--overlap", type=int, default=64, help="pixels neighbouring tiles share")
    parser.add_argument("--small", type=float, default=32,
                        help="longer side, in pixels, of a small defect (DeepPCB: 29 at the 5th percentile, 38 median)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    if not (DEEPPCB / "boards-val.txt").is_file():
        sys.exit(f"DeepPCB with boards.yaml not found at {DEEPPCB}")
    path = Path(args.model)
    model = path / "export" / "model.onnx" if path.is_dir() else model_file(args.model)

    from inspection.detect.detector import Detector
    from inspection.detect.tiling import Tiling

    detector = Detector(model, providers=["cpu"], conf=CONF)
    tiling = Tiling(size=max(detector.input_hw), overlap=args.overlap)
    frames = mosaics(args.grid, args.frames)
    if not frames:
        sys.exit(f"boards-val.txt has fewer than {args.grid ** 2} images")
    rows, results = [], {}
    for mode in ("whole frame, letterboxed down", "tiles at native resolution"):
        hits, small_hits, false_pos, seconds = [], [], 0, []
        for frame, reference, truth in frames:
            golden = reference if detector.needs_reference else None
            started = time.perf_counter()
            if mode.startswith("whole"):
                found = detector.predict([frame], references=[golden])[0]
            else:
                found = detector.predict_tiled(frame, tiling, reference=golden)
            seconds.append(time.perf_counter() - started)
            hit, fp = matches(found.xyxy, truth)
            small = np.maximum(truth[:, 2] - truth[:, 0], truth[:, 3] - truth[:, 1]) <= args.small
            hits += [float(h) for h in hit]
            small_hits += [float(h) for h in hit[small]]
            false_pos += fp
        results[mode] = statistics.mean(hits)
        small_recall = f"{statistics.mean(small_hits):.3f}" if small_hits else "-"
        rows.append([mode, f"{statistics.mean(hits):.3f}", f"{small_recall} ({len(small_hits)})",
                     f"{false_pos / len(frames):.1f}", f"{statistics.median(seconds) * 1000:.0f}"])
    size = frames[0][0].shape[1]
    count = tiling.count(frames[0][0].shape[:2])
    body = "\n".join([
        "## Tiles against shrinking the whole frame (bench/tiling/run.py)",
        "",
        (f"Model `{model}` ({'x'.join(map(str, detector.input_hw))} input"
         f"{', judging each frame against its reference' if detector.needs_reference else ''}). "
         f"{len(frames)} frames of {size} x {size} ({size * size / 1e6:.1f} MP), each a {args.grid} x {args.grid} "
         f"mosaic of DeepPCB images from the boards training never saw, {sum(len(t) for _, _, t in frames)} "
         f"defects. Whole: the frame letterboxed to the input ({size / max(detector.input_hw):.0f}x smaller). "
         f"Tiles: {count} tiles of {tiling.size} px, {tiling.overlap} px overlap, one batch, boxes merged. "
         f"Counted at conf {CONF}, IoU > {IOU}; small defects have a longer side of at most {args.small:.0f} px. "
         "Time: wall per frame, decoded frame to merged boxes, alignment included, on this machine's CPU."),
        "",
        table(["judged", "recall", "recall, small defects (count)", "false positives per frame", "ms per frame"],
              rows),
    ])
    print(body)
    if not args.dry_run:
        write_section("tiling-deeppcb", body)


if __name__ == "__main__":
    use_repo_home()
    main()
