"""Recipes side by side on DeepPCB's split by board: the same data, the same time budget,
one run after the other on one machine, each scored on the three boards training never saw.

    .venv/bin/python bench/training/compare.py recipes/deeppcb-reference.yaml recipes/deeppcb-cpu.yaml \\
        --hours 1.0                      # trains each for an hour, then writes BENCHMARKS.md
    .venv/bin/python bench/training/compare.py RECIPES... --epochs 4   # equal epochs instead
    .venv/bin/python bench/training/compare.py --runs RUN_A RUN_B          # reports finished runs

Each recipe trains on `boards.yaml` train (four boards) with `--hours` as its budget
(Ultralytics fits the epochs into it), or for `--epochs` each (a comparison that other work on
the machine cannot tilt), is exported at its export size (fp32, fp16 and int8,
each scored against the torch weights), and is scored through the production detector on
`boards.yaml` val: COCO mAP50 and mAP50-95, the DeepPCB paper's criterion (IoU > 0.33,
conf 0.25), false positives per image, per-class AP50. A reference recipe's model judges each
val image against its template (`templates/`), aligned as the service aligns it; what that
alignment costs per frame is measured on the same images. Writes the
`training-deeppcb-boards` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import DEEPPCB, use_repo_home
from bench.report import table, write_section

BOARDS = DEEPPCB / "boards.yaml"
QC = [sys.executable, "-m", "qc"]


def train(recipe_file: Path, *, hours: float | None, epochs: int | None) -> Path:
    from training.recipe import Recipe
    from training.trainer import train as run_training

    recipe = Recipe.load(recipe_file)
    changes: dict = {"data": str(BOARDS)}
    if epochs is not None:
        changes |= {"epochs": epochs, "time_hours": None}
    else:
        changes |= {"time_hours": hours}
    chosen = Recipe.checked({**recipe.model_dump(), **changes}, source=f"{recipe_file} for the comparison")
    return run_training(chosen).folder


def score(run: Path) -> dict:
    model = run / "export" / "model.onnx"
    if not model.is_file():
        subprocess.run([*QC, "export", str(run), "--fp16", "--int8"], check=True, stdout=subprocess.DEVNULL)
    return json.loads(subprocess.run(
        [*QC, "eval", "--model", str(model), "--data", str(BOARDS), "--split", "val", "--json",
         "--criterion", "deeppcb", "--report", str(run / "eval-boards-val")],
        check=True, text=True, stdout=subprocess.PIPE).stdout)


def alignment_ms(n: int = 60) -> tuple[float, float]:
    """Median ms to align a val image's template onto it and compose the input, and the
    median alignment score."""
    import cv2

    from inspection.detect.reference import align, compose

    times, scores = [], []
    for path in sorted((DEEPPCB / "images" / "val").glob("*.jpg"))[:n]:
        frame = cv2.imread(str(path))
        golden = cv2.imread(str(DEEPPCB / "templates" / "val" / path.name))
        started = time.perf_counter()
        aligned = align(frame, golden)
        compose(frame, aligned.reference)
        times.append((time.perf_counter() - started) * 1000)
        scores.append(aligned.score)
    return statistics.median(times), statistics.median(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", type=Path, nargs="*", help="recipes to train, in this order")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="finished run folders instead")
    parser.add_argument("--hours", type=float, default=1.0, help="training budget per recipe")
    parser.add_argument("--epochs", type=int, default=None, help="train each recipe this many epochs instead")
    parser.add_argument("--section", default="training-deeppcb-boards", help="the BENCHMARKS.md section to write")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    if not BOARDS.is_file():
        sys.exit(f"DeepPCB's split by board is not at {BOARDS}")
    use_repo_home()
    runs = list(args.runs) + [train(recipe, hours=args.hours, epochs=args.epochs) for recipe in args.recipes]
    if not runs:
        sys.exit("name recipes to train or --runs to report")

    from training.trainer import Run

    rows, classes, exports = [], {}, []
    for folder in runs:
        run = Run.open(folder)
        scored = score(folder)
        d = scored["deeppcb"]
        name = run.recipe.name + (" (reference)" if run.recipe.reference else "")
        compute = run.metrics.get("compute", {}).get("seen", {})  # runs before issue 24 lack it
        threads = f"{compute['torch_threads']} / {compute['loader_workers']}" if compute else "1 / 0 (before)"
        rows.append([name, threads, f"{run.metrics.get('epochs_completed')}", f"{run.metrics['seconds'] / 60:.0f}",
                     f"{scored['map50']:.4f}", f"{scored['map50_95']:.4f}",
                     f"{d['precision']:.3f} / {d['recall']:.3f} / {d['fscore']:.3f}",
                     f"{d['fp'] / scored['images']:.2f}"])
        classes[name] = {c: m["ap50"] for c, m in scored["per_class"].items()}
        check = folder / "export" / "export-check.json"
        if check.is_file():
            report = json.loads(check.read_text())
            exports += [[name, k, f"{v['map50']:.4f}", f"{v['delta_map50']:+.4f} / {v['delta_map50_95']:+.4f}"]
                        for k, v in report.items() if k in ("fp32", "fp16", "int8")]
    names = list(next(iter(classes.values())))
    per_class = [[c, *(f"{classes[r][c]:.3f}" for r in classes)] for c in names]
    align_ms, align_score = alignment_ms()
    body = "\n".join([
        "## DeepPCB by board: "
        + ("recipes side by side" if len(runs) > 1 else f"recipe `{Run.open(runs[0]).recipe.name}`")
        + " (bench/training/compare.py)",
        "",
        ("Trained one after the other on `boards.yaml` train (four boards), each "
        + (f"for {args.epochs} epochs" if args.epochs else f"with a {args.hours:g} h budget") + ", "
        "scored through the production detector on `boards.yaml` val: three boards no recipe trained on "
        "(200 images, 1,185 boxes). The reference recipe's model judges each image against its template, "
        "aligned as the service aligns it."),
        "",
        table(["recipe", "torch threads / loaders", "epochs", "minutes", "mAP50", "mAP50-95",
               "DeepPCB P / R / F (IoU > 0.33, conf 0.25)",
               "false positives per image"], rows),
        "",
        table(["class (AP50)", *classes], per_class),
        "",
        (f"Alignment of a template onto its 640x640 image and composing the input: median {align_ms:.1f} ms "
        f"per frame (60 val images; median alignment score {align_score:.3f})."),
    ])
    if exports:
        body += "\n\n" + "Exported variants against the torch weights (boards val):\n\n" + table(
            ["recipe", "precision", "mAP50", "change vs torch (mAP50 / mAP50-95)"], exports)
    print(body)
    if not args.dry_run:
        write_section(args.section, body)


if __name__ == "__main__":
    main()
