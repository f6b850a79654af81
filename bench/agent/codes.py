"""Part ids read from the part: zxing-cpp's read rate and time on generated codes at sizes a
line camera sees, pasted into synthetic frames with blur and noise.

Example::

    python -m bench.agent.codes --frames 40

For each symbology and module size (pixels per module in the frame), `--frames` frames of
1280x960: a synthetic surface, the code pasted at a random place, Gaussian blur (sigma 0.8)
and sensor noise (sigma 4). Prints a Markdown table: read rate (right text) and median time
of `CodeReader.read` on the full frame. Offline: codes are generated with zxing-cpp itself.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import cv2
import numpy as np


def main() -> None:
    import zxingcpp

    from agent.codes import CodeReader
    from inspection.data.synth import make_sample

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    formats = {"DataMatrix": zxingcpp.BarcodeFormat.DataMatrix, "QRCode": zxingcpp.BarcodeFormat.QRCode,
               "Code128": zxingcpp.BarcodeFormat.Code128}
    backgrounds = [make_sample(i, width=1280, height=960, good=True).image for i in range(4)]
    readers = {"all formats": CodeReader(), "one format": None}
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
          f"zxing-cpp {getattr(zxingcpp, '__version__', '?')}; {args.frames} frames 1280x960 per row\n")
    print("| symbology | px/module | read rate (all formats) | ms p50 | read rate (its format only) | ms p50 |")
    print("|---|---|---|---|---|---|")
    for name, kind in formats.items():
        readers["one format"] = CodeReader(name)
        for module_px in (1, 2, 3, 4, 6):
            results = {}
            for label, reader in readers.items():
                ok, times = 0, []
                for i in range(args.frames):
                    text = f"SN-{i:06d}"
                    code = np.array(zxingcpp.create_barcode(text, kind).to_image(scale=module_px, add_quiet_zones=True))
                    if name == "Code128":
                        code = cv2.resize(code, (code.shape[1], 40 * module_px), interpolation=cv2.INTER_NEAREST)
                    frame = backgrounds[i % len(backgrounds)].copy()
                    h, w = code.shape
                    y, x = int(rng.integers(0, 960 - h)), int(rng.integers(0, 1280 - w))
                    frame[y:y + h, x:x + w] = cv2.cvtColor(code, cv2.COLOR_GRAY2BGR)
                    frame = cv2.GaussianBlur(frame, (0, 0), 0.8)
                    frame = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
                    started = time.perf_counter()
                    got = reader.read(frame)
                    times.append((time.perf_counter() - started) * 1000)
                    ok += got == text
                results[label] = (ok / args.frames, statistics.median(times))
            (a_rate, a_ms), (o_rate, o_ms) = results["all formats"], results["one format"]
            print(f"| {name} | {module_px} | {a_rate:.0%} | {a_ms:.1f} | {o_rate:.0%} | {o_ms:.1f} |")


if __name__ == "__main__":
    main()
