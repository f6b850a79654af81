"""Training throughput side by side: Ultralytics' own CPU plan against qc's, batches per second.

    .venv/bin/python bench/training/threads.py                 # both recipes, writes BENCHMARKS.md
    .venv/bin/python bench/training/threads.py --batches 20 --rounds 1 --dry-run

For each recipe (the DeepPCB reference recipe on `boards.yaml` train and the demo recipe on the
demo's synthetic parts) the data is prepared once, as `qc train` prepares it (composed with the
golden part, cut into tiles), then each plan trains the recipe's model from its YAML for
`--warmup` + `--batches` batches and stops; the time per batch after the warm-up is kept. Plans
alternate within each round, so a machine that slows down mid-run tilts every plan alike:

- `ultralytics`: what Ultralytics does alone (`torch.set_num_threads(cores - 1)`, `workers=0`);
- `threads`: every usable core for torch, still loading on the training thread;
- `threads+loaderN`: every core for torch and N data-loader processes (training/compute.py).

Writes the `training-threads` section of BENCHMARKS.md with the machine named.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import DEEPPCB, REPO, use_repo_home
from bench.report import table, write_section

RECIPES = {"deeppcb-reference": (REPO / "recipes" / "deeppcb-reference.yaml", DEEPPCB / "boards.yaml"),
           "synthetic-demo": (REPO / "recipes" / "synthetic-demo.yaml", None)}


class Enough(Exception):
    """Raised from a callback once the batches are timed: the run is not needed further."""


def demo_data(home: Path) -> Path:
    data = home / "demo" / "synthetic" / "data.yaml"  # what `make demo` trains on
    if not data.is_file():
        subprocess.run([sys.executable, "-m", "qc", "synth", "--out", str(data.parent), "--n", "480", "--seed", "7",
                        "--width", "320", "--height", "320", "--defects", "4-8", "--references", "--quiet"],
                       check=True)
    return data


def prepared(recipe, work: Path):
    """The recipe's training layout, made once as training.trainer.train makes it."""
    from training.data import prepare
    from training.reference_data import compose_data
    from training.tiles import tile_data

    data = prepare(recipe.data, workdir=work / "data", references=recipe.reference is not None)
    if recipe.reference is not None:
        data = compose_data(data, workdir=work / "composed", shift=recipe.reference.shift,
                            degrees=recipe.reference.degrees, motion=recipe.reference.motion, seed=recipe.seed)
    if recipe.tile:
        data = tile_data(data, size=recipe.tile, overlap=recipe.tile_overlap, workdir=work / "tiles")
    return data


def time_batches(recipe, data, work: Path, *, plan, warmup: int, batches: int) -> dict:
    """Seconds per batch for one plan (None: Ultralytics' own), after `warmup` batches."""
    from training.trainer import _train_args
    from training.ultralytics_env import load_ultralytics, torch_threads

    ultralytics = load_ultralytics()
    args = _train_args(recipe, data=data, folder=work)
    args |= {"epochs": 1, "time": None, "val": False}
    model = ultralytics.YOLO(recipe.model)
    if plan is not None:
        plan.attach(model)
    stamps: list[float] = []
    seen: dict = {}

    def on_batch_end(trainer):
        stamps.append(time.perf_counter())
        if len(stamps) == 1:
            seen.update(threads=torch_threads(), workers=int(trainer.train_loader.num_workers))
        if len(stamps) > warmup + batches:
            raise Enough

    model.add_callback("on_train_batch_end", on_batch_end)
    try:
        model.train(**args)
    except Enough:
        pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timed = stamps[warmup:]
    if len(timed) < 2:
        raise SystemExit(f"only {len(stamps)} batches in an epoch: lower --warmup/--batches")
    steps = [b - a for a, b in itertools.pairwise(timed)]
    return {"s_per_batch": statistics.median(steps), **seen}


def plans(workers: list[int]):
    from training.compute import ComputePlan

    yield "ultralytics", None
    yield "threads", ComputePlan.choose("cpu", threads=0, workers=0)
    for count in workers:
        yield f"threads+loader{count}", ComputePlan.choose("cpu", threads=0, workers=count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--batches", type=int, default=24, help="timed batches per plan and round")
    parser.add_argument("--warmup", type=int, default=4, help="batches before timing starts")
    parser.add_argument("--rounds", type=int, default=2, help="each round runs every plan once, alternating")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="data-loader counts to try")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    home = use_repo_home()
    from training.recipe import Recipe

    results: dict[str, dict[str, list[dict]]] = {}
    for name in args.recipes:
        recipe_file, data_source = RECIPES[name]
        recipe = Recipe.load(recipe_file)
        source = str(data_source) if data_source else str(demo_data(home))
        if data_source is not None and not data_source.is_file():
            print(f"{name}: {data_source} is absent; skipped")
            continue
        recipe = Recipe.checked({**recipe.model_dump(), "data": source}, source=f"{recipe_file} for the bench")
        base = home / "bench" / "threads" / name
        shutil.rmtree(base, ignore_errors=True)
        data = prepared(recipe, base / "prepared")
        results[name] = {}
        for round_ in range(args.rounds):
            for index, (label, plan) in enumerate(plans(args.workers)):
                figure = time_batches(recipe, data, base / f"run-{round_}-{index}", plan=plan,
                                      warmup=args.warmup, batches=args.batches)
                results[name].setdefault(label, []).append(figure)
                print(f"{name} round {round_ + 1} {label}: {figure['s_per_batch']:.3f} s/batch "
                      f"(torch threads {figure['threads']}, loader workers {figure['workers']})", flush=True)
    print(json.dumps(results, indent=2))
    if args.dry_run or not results:
        return
    rows = []
    for name, by_plan in results.items():
        baseline = statistics.median(f["s_per_batch"] for f in by_plan["ultralytics"])
        for label, figures in by_plan.items():
            seconds = statistics.median(f["s_per_batch"] for f in figures)
            rows.append([name, label, str(figures[0]["threads"]), str(figures[0]["workers"]),
                         f"{seconds:.3f}", f"{1 / seconds:.2f}", f"{baseline / seconds:.2f}x"])
    body = "\n".join([
        "## Training on every core (bench/training/threads.py)",
        "",
        f"{args.rounds} rounds of {args.batches} timed "
        f"batches per plan after {args.warmup} warm-up batches, plans alternating within each round "
        f"(median seconds per batch). Recipes as shipped (batch, imgsz, augmentations), model from its YAML."
        + (f" {args.note}" if args.note else ""),
        "",
        table(["recipe", "plan", "torch threads", "loader workers", "s/batch", "batches/s", "vs ultralytics"], rows),
    ])
    write_section("training-threads", body)


if __name__ == "__main__":
    main()
