"""The demo's model: does it find the demo's defects? Scores a `synthetic-demo` run (the one
`make demo` trained, or a new one) as a line would use it.

    .venv/bin/python bench/demo/run.py                     # the newest synthetic-demo run in $QC_HOME
    .venv/bin/python bench/demo/run.py --run .qc/runs/synthetic-demo-...
    .venv/bin/python bench/demo/run.py --train             # trains the recipe on the demo's data first

Reports the run's epochs and training time, val mAP50 and mAP50-95 through the production
detector (each val image judged against its golden part), and how the demo station's rules
(scripts/demo-rules.yaml) judge 24 frames of a part design absent from the training data
against one golden image of it: right, sent to review, or wrong. Writes the `demo-model`
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import REPO, use_repo_home
from bench.report import table, write_section

QC = [sys.executable, "-m", "qc"]
RECIPE = REPO / "recipes" / "synthetic-demo.yaml"
UNSEEN_PART = 2024  # scripts/demo.py's station product


def newest_run(home: Path) -> Path:
    runs = sorted((home / "runs").glob("synthetic-demo-*"), key=lambda p: p.stat().st_mtime)
    done = [r for r in runs if (r / "metrics.json").is_file()]
    if not done:
        sys.exit(f"no finished synthetic-demo run in {home / 'runs'}: run make demo, or pass --train")
    return done[-1]


def judge_unseen_part(model: Path, work: Path) -> dict[str, int]:
    import cv2

    from inspection.detect.detector import Detector
    from inspection.rules import StationRules, Verdict, decide

    subprocess.run([*QC, "synth", "--out", str(work), "--n", "24", "--seed", "2024", "--val-fraction", "0",
                    "--width", "320", "--height", "320", "--defects", "2-6", "--part", str(UNSEEN_PART),
                    "--references", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    detector = Detector(model, providers=["cpu"])
    rules = StationRules.parse((REPO / "scripts" / "demo-rules.yaml").read_text())
    golden = cv2.imread(str(min((work / "references").rglob("*.jpg"))))
    tally = {"right": 0, "review": 0, "wrong": 0}
    for image in sorted((work / "images").rglob("*.jpg")):
        found = detector.predict([cv2.imread(str(image))], references=[golden], conf=rules.lowest_conf)[0]
        verdict = decide(found, rules).verdict
        label = work / "labels" / image.parent.name / f"{image.stem}.txt"
        classes = [line.split()[0] for line in label.read_text().splitlines() if line.strip()]
        defective = len(classes) > classes.count("3") or classes.count("3") > 1  # one particle is in spec
        outcome = ("review" if verdict is Verdict.REVIEW else
                   "right" if (verdict is Verdict.FAIL) == defective else "wrong")
        tally[outcome] += 1
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished synthetic-demo run folder")
    parser.add_argument("--train", action="store_true", help="train the demo recipe on the demo's data first")
    parser.add_argument("--note", default="", help="a sentence on how the run was made (e.g. what else ran)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    home = use_repo_home()
    if args.train:
        data = home / "demo" / "synthetic" / "data.yaml"
        if not data.is_file():
            subprocess.run([*QC, "synth", "--out", str(data.parent), "--n", "480", "--seed", "7", "--width", "320",
                            "--height", "320", "--defects", "4-8", "--references", "--quiet"], check=True)
        out = subprocess.run([*QC, "train", "--recipe", str(RECIPE), "--data", str(data)], check=True, text=True,
                             stdout=subprocess.PIPE).stdout
        args.run = Path(json.loads(out.strip().splitlines()[-1])["run"])
    run_folder = args.run or newest_run(home)

    from training.trainer import Run

    run = Run.open(run_folder)
    model = run_folder / "export" / "model.onnx"
    if not model.is_file():
        subprocess.run([*QC, "export", str(run_folder), "--no-check"], check=True, stdout=subprocess.DEVNULL)
    source = run.data["source"]
    scored = json.loads(subprocess.run([*QC, "eval", "--model", str(model), "--data", source, "--split", "val",
                                        "--json"], check=True, text=True, stdout=subprocess.PIPE).stdout)
    with tempfile.TemporaryDirectory() as work:
        tally = judge_unseen_part(model, Path(work) / "frames")
    total = sum(tally.values())
    seen = run.metrics.get("compute", {}).get("seen")  # runs before issue 24 trained on one core
    threads = f"{seen['torch_threads']} / {seen['loader_workers']}" if seen else "1 / 0 (Ultralytics' own)"
    body = "\n".join([
        "## The demo's model (bench/demo/run.py)",
        "",
        (f"`recipes/synthetic-demo.yaml`: YOLO26n from its YAML, a reference model (frame, golden part, difference), "
        f"{run.metrics.get('epochs_completed')} epochs at 320 on the train split of 480 synthetic parts of many "
        f"designs (`qc synth --n 480 --seed 7 --defects 4-8 --references`, imported as `demo-parts@v1`), "
        f"trained by `make demo`. {args.note}"),
        "",
        table(["figure", "value"], [
            ["training time",
             f"{run.metrics['seconds'] / 60:.1f} min ({run.metrics['seconds_per_epoch']:.0f} s per epoch)"],
            ["torch threads / data loaders (training/compute.py)", threads],
            ["val mAP50 / mAP50-95 (production detector, each image against its golden part)",
             f"{scored['map50']:.3f} / {scored['map50_95']:.3f}"],
            ["val mAP50 (Ultralytics' validator, composed inputs)", f"{run.metrics['map50']:.3f}"],
            [f"{total} frames of an unseen part design judged against one golden image (scripts/demo-rules.yaml)",
             f"right {tally['right']}, review {tally['review']}, wrong {tally['wrong']}"],
            ["the plain (frame-only) demo recipe before this, 15 min of training",
             "val mAP50 0.15-0.17 (0.026 on a busy machine)"],
        ]),
    ])
    print(body)
    if not args.dry_run:
        write_section("demo-model", body)


if __name__ == "__main__":
    main()
