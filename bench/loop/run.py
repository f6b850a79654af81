"""Does the loop pay? On DeepPCB, issue 22's measure: the product's sampling policy against
random picks and against labelling FAIL and REVIEW frames only, on a realistic line (mostly
good parts) and on the all-defective pool, over paired seeds and budgets of labels.

    .venv/bin/python bench/loop/run.py                               # both scenarios, 5 seeds (hours)
    .venv/bin/python bench/loop/run.py --scenario line --seeds 1 --first-seed 3 --work W
    .venv/bin/python bench/loop/run.py --with-results W/results      # report seeds run before
    .venv/bin/python bench/loop/run.py --scenario line --first-seed 3 --seeds 2 --with-results bench/loop/results
    nice -n 10 .venv/bin/python bench/loop/run.py --quick            # 1 seed, tiny sizes: the path only

Per seed and scenario (bench/loop/seed.py): the start model (the reference recipe on the
seed's labelled start boards, trained once per seed), the pool (bench/loop/pool.py) judged by
`qc serve` with each part's golden image, then for every arm (bench/loop/arms.py: the policy
shipped in labeling/sampling/policy.yaml, random, FAIL/REVIEW only; `negatives` and `flip`,
which change one thing of the policy, when named in --arms) one `qc loop` turn per
budget (cumulative: 25, then 50, then 100 labels), answered from the ground truth through
Label Studio's API, each candidate scored by `qc eval` on `--eval-data` (default
`boards.yaml` val: three boards never trained on). Each seed's result is written to
`WORK/results/SCENARIO-seedN.json` as soon as it is done (and, for a full-size run, into
`bench/loop/results/`, committed), so seeds run in separate invocations (or sessions: a seed
and scenario takes about 45 minutes on 2 cores) combine with `--with-results`. `--quick`
(both scenarios, 12 turns of 1 epoch) took 48 min with `--oracle direct` on 2 cores that other
work kept busy (load 5-13); its turns are fixed costs (composing, export, the gate's
holdout), not training. The section
(bench/loop/summary.py) goes into BENCHMARKS.md with the machine, the plots into
docs/images/loop-SCENARIO.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import DEEPPCB, REPO
from bench.loop.arms import DEFAULT_ARMS, Arm, check_arms
from bench.loop.pool import Scenario
from bench.loop.seed import SeedRun, Sizes
from bench.loop.summary import section
from bench.report import write_section

KEPT = REPO / "bench" / "loop" / "results"  # every full run's per-seed results, committed


def budgets(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--budgets {text}: give numbers separated by commas, e.g. 25,50,100") from None


def load_results(paths: list[Path]) -> list[dict]:
    """Results files, or folders of them; a later (scenario, seed) replaces an earlier one."""
    found: dict[tuple[str, int], dict] = {}
    for path in paths:
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if not files:
            sys.exit(f"--with-results {path}: no results (*.json) there")
        for file in files:
            try:
                result = json.loads(file.read_text())
            except (OSError, ValueError) as error:
                sys.exit(f"--with-results {file}: not a results file of this bench ({error})")
            for one in result if isinstance(result, list) else [result]:
                if "scenario" not in one or "turns" not in one:
                    sys.exit(f"--with-results {file}: not a results file of this bench (no scenario and turns)")
                found[(one["scenario"], one["seed"])] = one
    return list(found.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=["line", "defective", "both"], default="both")
    parser.add_argument("--seeds", type=int, default=None, help="how many paired seeds (default 5; 1 with --quick)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--budgets", type=budgets, default=None,
                        help="labels spent after each turn, cumulative (default 25,50,100; 4,8 with --quick)")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                        help=f"which arms, of {', '.join(Arm)} (default: {', '.join(DEFAULT_ARMS)})")
    parser.add_argument("--eval-data", type=Path, default=DEEPPCB / "boards.yaml",
                        help="the scoring set: a data.yaml with a reference (golden) image beside each image "
                        "(default: DeepPCB's boards.yaml, whose val boards are never trained on)")
    parser.add_argument("--eval-split", default="val", help="the scoring set's split (default val)")
    parser.add_argument("--quick", action="store_true", help="1 seed, 24 start boards, 60 frames (10%% defective), "
                        "budgets 4,8, 1 + 1 epochs, a small scoring set: checks the path in minutes, measures nothing")
    parser.add_argument("--oracle", choices=["label-studio", "direct"], default="label-studio",
                        help="answers through a real Label Studio (default), or imported directly as the "
                        "arm's next dataset version (no Label Studio installed)")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one); "
                        "the start models trained there are reused")
    parser.add_argument("--with-results", type=Path, action="append", default=[],
                        help="results (a JSON file or a folder of them) of earlier runs to report together")
    parser.add_argument("--dry-run", action="store_true", help="print the section, do not write BENCHMARKS.md")
    args = parser.parse_args()

    scenarios = [Scenario.LINE, Scenario.DEFECTIVE] if args.scenario == "both" else [Scenario(args.scenario)]
    try:
        arms = tuple(Arm(a) for a in args.arms.split(","))
    except ValueError:
        sys.exit(f"--arms {args.arms}: name arms of {', '.join(Arm)}")
    try:
        arms = check_arms(arms, oracle=args.oracle)
    except ValueError as error:
        sys.exit(f"--arms {args.arms}: {error}")
    sizes = Sizes.quick(args.budgets or (4, 8)) if args.quick else Sizes(budgets=args.budgets or (25, 50, 100))
    seeds = 0 if args.with_results and args.seeds is None else (args.seeds or (1 if args.quick else 5))
    if seeds and not (DEEPPCB / "boards.yaml").is_file():
        sys.exit(f"DeepPCB not found at {DEEPPCB} (its boards.yaml)")
    if not args.eval_data.is_file():
        sys.exit(f"--eval-data {args.eval_data}: no such data.yaml")
    work = (args.work or Path(tempfile.mkdtemp(prefix="qc-loop-bench-"))).absolute()
    results = load_results(args.with_results)
    if seeds:
        print(f"working in {work}", flush=True)
        eval_data = small_eval(args.eval_data, args.eval_split, work) if args.quick else args.eval_data.absolute()
        (work / "results").mkdir(parents=True, exist_ok=True)
        with label_studio(args.oracle, work) as studio:
            for seed in range(args.first_seed, args.first_seed + seeds):
                for scenario in scenarios:
                    result = SeedRun(work, scenario, seed=seed, sizes=sizes, studio=studio, eval_data=eval_data,
                                     eval_split=args.eval_split, arms=arms).run()
                    (work / "results" / f"{scenario}-seed{seed}.json").write_text(json.dumps(result, indent=1))
                    if not args.quick:  # kept in the repository, so later runs add seeds to them
                        KEPT.mkdir(parents=True, exist_ok=True)
                        (KEPT / f"{scenario}-seed{seed}.json").write_text(json.dumps(result, indent=1))
                    results = [r for r in results if (r["scenario"], r["seed"]) != (str(scenario), seed)] + [result]
    if not results:
        sys.exit("nothing to report: run seeds or give --with-results")
    quick = args.quick or any(r["sizes"]["start_epochs"] < 5 for r in results)
    write = not (args.dry_run or quick)
    images = REPO / "docs" / "images" if write else work / "images"
    body = section(results, images=images, link="docs/images" if write else str(images), quick=quick)
    print(body)
    if write:
        write_section("loop-deeppcb", body)
    else:
        print(f"(not written to BENCHMARKS.md: {'a quick run' if quick else '--dry-run'}; plots in {images})")


def small_eval(data: Path, split: str, work: Path) -> Path:
    """--quick's scoring set: 20 images of `split`, spread over it (same boards)."""
    from bench.loop.seed import listed_images

    images = listed_images(data, split)
    chosen = images[::max(1, len(images) // 20)][:20]
    folder = work / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.txt").write_text("".join(f"{p}\n" for p in chosen))
    names = "\n".join(f"  {k}: {v}" for k, v in enumerate(["open", "short", "mousebite", "spur", "copper", "pin-hole"]))
    (folder / "data.yaml").write_text(f"{split}: {split}.txt\nnames:\n{names}\n")
    return folder / "data.yaml"


class label_studio:  # a context manager, named as one reads in a with statement
    """A real Label Studio for the run (bench's own data folder), or none for `direct`."""

    def __init__(self, oracle: str, work: Path) -> None:
        self.oracle, self.work = oracle, work
        self.server: Any = None

    def __enter__(self):
        if self.oracle == "direct":
            return None
        from labeling.server import DEFAULT_VENV, LabelStudioServer

        if not (DEFAULT_VENV / "bin" / "label-studio").is_file():
            sys.exit(f"Label Studio is not installed in {DEFAULT_VENV}: python -m labeling.server install "
                     "(or --oracle direct to import the answers without it)")
        # A new server each run: its user and token are made at the first start, so a folder
        # left by an earlier run (--work reused for its start models) would refuse this run's
        # token. Nothing in it is needed again: each run's answers are in its results.
        folder = self.work / "label-studio"
        shutil.rmtree(folder, ignore_errors=True)
        self.server = LabelStudioServer(data_dir=folder)
        return self.server.__enter__()

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.__exit__(*exc)


if __name__ == "__main__":
    main()
