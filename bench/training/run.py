"""Training on real data: DeepPCB train -> val, under a recipe, with the figures people quote.

    .venv/bin/python bench/training/run.py --recipe recipes/deeppcb-cpu.yaml     # trains (an hour)
    .venv/bin/python bench/training/run.py --run .qc/runs/deeppcb-cpu-...        # reports a finished run

Exports the run's best weights at the recipe's export size, scores the ONNX model on DeepPCB
val with the production detector (COCO mAP50 and mAP50-95 by COCOeval, and the DeepPCB
paper's criterion: a detection is right at IoU > 0.33 with a box of its class; precision,
recall, F-score at conf 0.25), and writes the `training-<recipe name>` section of
BENCHMARKS.md beside the published figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import DEEPPCB, use_repo_home
from bench.report import table, write_section

DEEPPCB_YAML = DEEPPCB / "data.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--recipe", type=Path, help="train this recipe first")
    source.add_argument("--run", type=Path, help="a finished run folder")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    use_repo_home()
    qc = [sys.executable, "-m", "qc"]
    if args.recipe:
        out = subprocess.run([*qc, "train", "--recipe", str(args.recipe)], check=True, text=True,
                             stdout=subprocess.PIPE).stdout
        args.run = Path(json.loads(out.strip().splitlines()[-1])["run"])

    from training.trainer import Run

    run = Run.open(args.run)
    model = args.run / "export" / "model.onnx"
    if not model.is_file():
        subprocess.run([*qc, "export", str(args.run), "--no-check"], check=True, stdout=subprocess.DEVNULL)
    scored = json.loads(subprocess.run(
        [*qc, "eval", "--model", str(model), "--data", str(DEEPPCB_YAML), "--split", "val", "--json",
         "--criterion", "deeppcb", "--report", str(args.run / "eval-val")],
        check=True, text=True, stdout=subprocess.PIPE).stdout)
    recipe = run.recipe
    d = scored["deeppcb"]
    per_class = [[name, m["support"], f"{m['ap50']:.3f}", f"{m['ap50_95']:.3f}", f"{m['precision']:.3f}",
                  f"{m['recall']:.3f}"] for name, m in scored["per_class"].items()]
    body = "\n".join([
        f"## Training on DeepPCB: recipe `{recipe.name}` (bench/training/run.py)",
        "",
        f"`{recipe.model}` from its YAML (no pretrained weights), imgsz {recipe.imgsz}"
        + (f" on native-resolution {recipe.tile}-pixel tiles" if recipe.tile else "")
        + f", exported at {recipe.export_imgsz or recipe.imgsz}, batch {recipe.batch}, "
        f"{run.metrics.get('epochs_completed')} epochs"
        + (f" (time budget {recipe.time_hours:g} h)" if recipe.time_hours else "")
        + f"; recipe hash `{recipe.hash[:12]}`, data hash `{run.data['content_hash'][:12]}`. "
        "Scored on DeepPCB val (200 images) through the production detector (ONNX Runtime, CPU).",
        "",
        table(["figure", "value"], [
            ["training wall time", f"{run.metrics['seconds'] / 60:.1f} min"],
            ["seconds per epoch", f"{run.metrics['seconds_per_epoch']:.0f}"],
            ["mAP50 (COCOeval)", f"{scored['map50']:.4f}"],
            ["mAP50-95 (COCOeval)", f"{scored['map50_95']:.4f}"],
            [f"DeepPCB criterion (IoU > 0.33, conf {scored['deploy_conf']}): precision / recall / F-score",
             f"{d['precision']:.4f} / {d['recall']:.4f} / {d['fscore']:.4f}"],
            ["published (Tang et al. 2019, official test set, IoU > 0.33)", "mAP 0.986, F-score 0.982"],
            ["plain Ultralytics, YOLO26n at 320, 25 epochs, 41 min (../shared/MEASURED.md)",
             "mAP50 0.58, mAP50-95 0.25 (its own validator)"],
        ]),
        "",
        table(["class", "boxes", "AP50", "AP50-95", "precision@0.25", "recall@0.25"], per_class),
        "",
        (f"Report with PR curves, confusion matrix and galleries: `{args.run.name}/eval-val/report.html` "
         "(in the run folder, not in git)."),
    ])
    check = args.run / "export" / "export-check.json"
    if check.is_file():  # written by `qc export RUN --fp16 --int8`
        report = json.loads(check.read_text())
        torch_scores = report["torch"]
        rows = [["torch (Ultralytics predict)", f"{torch_scores['map50']:.4f}", f"{torch_scores['map50_95']:.4f}", ""]]
        rows += [[f"ONNX {k}", f"{v['map50']:.4f}", f"{v['map50_95']:.4f}",
                  f"{v['delta_map50']:+.4f} / {v['delta_map50_95']:+.4f}"]
                 for k, v in report.items() if k in ("fp32", "fp16", "int8")]
        body += "\n\n" + "\n".join([
            (f"Exported variants scored against the torch weights on the same {report['images']} val "
             "images (`qc export --fp16 --int8`; the change is written into each model's metadata and card):"),
            "",
            table(["model", "mAP50", "mAP50-95", "change vs torch (mAP50 / mAP50-95)"], rows),
        ])
    print(body)
    if not args.dry_run:
        write_section(f"training-{recipe.name}", body)


if __name__ == "__main__":
    main()
