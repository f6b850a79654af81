"""Does the loop pay? On DeepPCB: the active-learning sampler's picks against random picks,
same number of frames, same training budget, over several seeds.

    .venv/bin/python bench/loop/run.py                 # 3 seeds, the full sizes (~20 min a seed here)
    .venv/bin/python bench/loop/run.py --quick         # 1 seed, small sizes: checks the path (~3 min)

Per seed (what changes with it: which 200 train images are the labelled start, the order of
the production frames, the random picks, and the training seed):

1. `pcb@v1` = 200 DeepPCB train images; a base model trained on it from `yolo26n.yaml`
   (the bench's recipe below), exported and promoted; holdout = DeepPCB val (`pcb-val@v1`).
2. `qc serve` (a real service) inspects 600 more train images as production frames.
3. sampler arm: `qc label sample --queue` under a budget of 100 (the shipped policy's shares),
   `qc label push` to a real Label Studio, every task answered from DeepPCB's ground truth
   through Label Studio's API (a perfect labeller), `qc loop` (pull, fine-tune from the base
   model's weights with the recipe for `--fine-tune-epochs`, evaluate, gate; left waiting).
4. random arm: as many random frames of the same 600, the same push, answers, and `qc loop`
   on a dataset of its own (`pcb-random`, v1 = the same 200).
5. the base model and both candidates scored by `qc eval` on DeepPCB val (200 images).

The table (mean and each seed) goes into BENCHMARKS.md with the machine. Sizes: measured at
about 20 minutes a seed on 2 CPU cores (start model 9 min, each arm's turn ~5 min), so 3 seeds
fit well inside the issue's two hours; what that costs in accuracy is the gap to the 60-minute
recipe in BENCHMARKS.md (start model mAP50 0.26 on 200 boards against 0.64 on all 800).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import DEEPPCB, REPO
from bench.report import table, write_section

QC = [sys.executable, "-m", "qc"]
NAMES = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
RULES = "default: {fail_conf: 0.5, review_conf: 0.25}\n"


def recipe(*, epochs: int, seed: int) -> str:
    """The bench's production recipe: YOLO26n at 320 on whole boards, exported at 320."""
    return "\n".join([
        "name: loop-bench", "model: yolo26n.yaml", "imgsz: 320", f"epochs: {epochs}", "batch: 16",
        "patience: 0", "workers: 2", "close_mosaic: 2", "warmup_epochs: 1", f"seed: {seed}",
        "optimizer: AdamW", "lr0: 0.002",
        ("geometry: {fliplr: 0.5, flipud: 0.5, degrees: 0.0, translate: 0.1, scale: 0.25, mosaic: 1.0,"
         " hsv_h: 0.0, hsv_s: 0.0, hsv_v: 0.2}"),
        "augment:", "  - {name: GaussNoise, p: 0.2, std_range: [0.02, 0.06]}", ""])


class Seed:
    """One seed's QC_HOME, its service and its two arms."""

    def __init__(self, work: Path, seed: int, args, studio) -> None:
        self.work, self.seed, self.args, self.studio = work, seed, args, studio
        self.home = work / "home"
        self.env = {**os.environ, "QC_HOME": str(self.home), "QC_MODEL_NAME": "pcb", "QC_LOG_JSON": "false",
                    "QC_LABEL_STUDIO_URL": studio.url, "QC_LABEL_STUDIO_TOKEN": studio.token,
                    "PYTHONPATH": str(REPO)}
        self.env.pop("QC_DATABASE_URL", None)
        self.timings: dict[str, float] = {}

    def qc(self, *args: str, env: dict | None = None, capture: bool = True) -> str:
        print(f"$ qc {' '.join(args)}", flush=True)
        done = subprocess.run([*QC, *args], env={**self.env, **(env or {})}, text=True, check=False,
                              stdout=subprocess.PIPE if capture else None, cwd=REPO)
        if done.returncode != 0:
            output = done.stdout[-2000:] if capture else ""
            raise SystemExit(f"qc {' '.join(args)} failed ({done.returncode}): {output}")
        return done.stdout if capture else ""

    def timed(self, name: str, work):
        started = time.monotonic()
        result = work()
        self.timings[name] = time.monotonic() - started
        return result

    def run(self) -> dict:
        rng = random.Random(self.seed)
        train = sorted((DEEPPCB / "images" / "train").glob("*.jpg"))
        rng.shuffle(train)
        base, pool = train[:self.args.start], train[self.args.start:self.args.start + self.args.pool]
        self.home.mkdir(parents=True, exist_ok=True)
        self.qc("dataset", "import", str(yolo_folder(self.work / "start", base)), "--format", "yolo", "--name", "pcb")
        self.qc("dataset", "import", str(yolo_folder(self.work / "start", base)), "--format", "yolo",
                "--name", "pcb-random")
        val = sorted((DEEPPCB / "images" / "val").glob("*.jpg"))
        self.qc("dataset", "import", str(yolo_folder(self.work / "val", val)), "--format", "yolo", "--name",
                "pcb-val", "--test-fraction", "0.9", "--val-fraction", "0")
        recipe_file = self.work / "recipe.yaml"
        recipe_file.write_text(recipe(epochs=self.args.start_epochs, seed=self.seed))
        out = self.timed("base training", lambda: self.qc("train", "--recipe", str(recipe_file), "--data", "pcb@v1"))
        run = json.loads(out.strip().splitlines()[-1])["run"]
        self.qc("export", run, "--register", "pcb", "--promote", "--no-check")
        self.qc("models", "holdout", "pcb", "pcb-val@v1")

        ids = self.timed("serving the pool", lambda: self.serve(pool))
        truth = {sha(p): labels_of(p) for p in pool}
        loop_env = {"QC_LOOP_RECIPE": str(recipe_file), "QC_LOOP_EPOCHS": str(self.args.fine_tune_epochs),
                    "QC_LOOP_AUTO_PROMOTE": "false"}
        policy = self.work / "policy.yaml"
        shipped = (REPO / "labeling" / "sampling" / "policy.yaml").read_text()
        policy.write_text(shipped.replace("budget_per_station_day: 20", f"budget_per_station_day: {self.args.picks}"))

        sampler_env = {**loop_env, "QC_LABEL_PROJECT": f"loop-bench-{self.seed}-sampler-{os.getpid()}",
                       "QC_LABEL_DATASET": "pcb"}
        self.qc("label", "setup", env=sampler_env)
        self.qc("label", "sample", "--queue", "--policy", str(policy), env=sampler_env)
        self.qc("label", "push", env=sampler_env)
        picked = self.answer(sampler_env, truth)
        sampler = self.timed("sampler arm: qc loop", lambda: self.turn(sampler_env, len(picked)))

        chosen = random.Random(self.seed + 1000).sample(sorted(ids), len(picked))
        random_env = {**loop_env, "QC_LABEL_PROJECT": f"loop-bench-{self.seed}-random-{os.getpid()}",
                      "QC_LABEL_DATASET": "pcb-random"}
        self.qc("label", "setup", env=random_env)
        self.qc("label", "push", *chosen, env=random_env)
        self.answer(random_env, truth)
        randomly = self.timed("random arm: qc loop", lambda: self.turn(random_env, len(chosen)))

        scores = {arm: self.score(ref) for arm, ref in
                  (("start", "pcb@v1"), ("sampler", sampler["result"]["candidate"]),
                   ("random", randomly["result"]["candidate"]))}
        reasons = [r for p in picked for r in p]
        return {"seed": self.seed, "picked": len(picked), "scores": scores, "timings": self.timings,
                "reasons": {r: reasons.count(r) for r in sorted(set(reasons))},
                "gate": {"sampler": sampler["state"], "random": randomly["state"]}}

    def serve(self, frames: list[Path]) -> list[str]:
        import httpx

        from serving.launch import free_port, wait_ready

        self.qc("stations", "add", "line", "--rules", str(write(self.work / "rules.yaml", RULES)))
        key = self.qc("keys", "create", "--role", "station", "--station", "line", "--name", "bench").strip()
        port = free_port()
        log = self.work / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen([*QC, "serve", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                      env={**self.env, "QC_PASS_SAMPLE_RATE": "1"}, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, server, timeout=120, log_path=log)
            ids = []
            with httpx.Client(timeout=60) as client:
                for frame in frames:
                    response = client.post(f"{url}/v1/stations/line/inspect", content=frame.read_bytes(),
                                           headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg",
                                                    "X-Part-Id": frame.stem})
                    response.raise_for_status()
                    ids.append(response.json()["id"])
            return ids
        finally:
            server.terminate()
            server.wait(60)

    def answer(self, env: dict, truth: dict[str, list[dict]]) -> list[list[str]]:
        """Every pushed task answered with the frame's true boxes; returns each pick's reasons."""
        from inspection.store.labels import LabelState
        from labeling.bridge import Bridge
        from labeling.settings import LabelSettings

        settings = LabelSettings(home=self.home, label_studio_url=self.studio.url,
                                 label_studio_token=self.studio.token, label_project=env["QC_LABEL_PROJECT"])
        bridge = Bridge(settings)
        reasons = []
        try:
            for task in bridge.labels.tasks(settings.label_project, states=[LabelState.PUSHED]):
                record = bridge.records.inspection(task.inspection_id)
                bridge.studio.annotate(task.task_id, truth[record.image_sha256])
                reasons.append([r.get("reason", "chosen") for r in task.reasons][:1])
        finally:
            bridge.db.dispose()
        print(f"answered {len(reasons)} tasks of {settings.label_project} from the ground truth", flush=True)
        return reasons

    def turn(self, env: dict, min_new: int) -> dict:
        job = json.loads(self.qc("loop", "--min-new", str(max(min_new, 1)), "--wait-for-approval", env=env))
        if job["state"] not in ("waiting_approval", "refused", "promoted"):
            raise SystemExit(f"qc loop ended {job['state']}: {json.dumps(job)[:2000]}")
        return job

    def score(self, ref: str) -> dict:
        from inspection.models.registry import Registry

        model = Registry(self.home / "models").resolve(ref).model_path
        out = self.qc("eval", "--model", str(model), "--data", str(DEEPPCB / "data.yaml"), "--split", "val", "--json")
        scored = json.loads(out)
        return {"map50": scored["map50"], "map50_95": scored["map50_95"]}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def labels_of(image: Path) -> list[dict]:
    """DeepPCB's YOLO label of `image` as Label Studio regions (DeepPCB frames are 640x640)."""
    label = DEEPPCB / "labels" / image.parent.name / f"{image.stem}.txt"
    regions = []
    for line in label.read_text().split("\n"):
        if line.strip():
            c, cx, cy, w, h = (float(v) for v in line.split())
            regions.append({"type": "rectanglelabels", "from_name": "label", "to_name": "image",
                            "original_width": 640, "original_height": 640,
                            "value": {"x": (cx - w / 2) * 100, "y": (cy - h / 2) * 100, "width": w * 100,
                                      "height": h * 100, "rotation": 0, "rectanglelabels": [NAMES[int(c)]]}})
    return regions


def yolo_folder(folder: Path, images: list[Path]) -> Path:
    """A YOLO data.yaml over symlinks to `images` and their labels (DeepPCB stays read-only)."""
    for kind in ("images", "labels"):
        (folder / kind / "train").mkdir(parents=True, exist_ok=True)
    for image in images:
        label = DEEPPCB / "labels" / image.parent.name / f"{image.stem}.txt"
        for source, target in ((image, folder / "images" / "train" / image.name),
                               (label, folder / "labels" / "train" / label.name)):
            if not target.exists():
                target.symlink_to(source)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(NAMES))
    return write(folder / "data.yaml", f"train: images/train\nval: images/train\nnames:\n{names}\n")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def report(results: list[dict], args) -> str:
    def cell(values: list[float]) -> str:
        mean = statistics.fmean(values)
        spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
        return f"{mean:.3f}{spread}"

    rows = []
    for arm, label in (("start", f"start: {args.start} labelled images"),
                       ("random", f"+ random picks, fine-tuned {args.fine_tune_epochs} epochs"),
                       ("sampler", f"+ sampler picks, fine-tuned {args.fine_tune_epochs} epochs")):
        rows.append([label, cell([r["scores"][arm]["map50"] for r in results]),
                     cell([r["scores"][arm]["map50_95"] for r in results]),
                     " / ".join(f"{r['scores'][arm]['map50']:.3f}" for r in results)])
    gain = [r["scores"]["sampler"]["map50"] - r["scores"]["random"]["map50"] for r in results]
    reasons: dict[str, int] = {}
    for r in results:
        for reason, n in r["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    minutes = statistics.fmean(sum(r["timings"].values()) for r in results) / 60
    return "\n".join([
        "## Does the loop pay? Sampler against random picks on DeepPCB (bench/loop/run.py)",
        "",
        ("**Quick run (`--quick`): sizes far below the issue's; it shows the path works, not whether "
         "the loop pays.** " if args.quick else "")
        + f"{len(results)} seed(s); per seed: {args.start} DeepPCB train images labelled at the start "
        f"(base model: YOLO26n from its YAML, 320 px, {args.start_epochs} epochs), {args.pool} more "
        f"inspected by `qc serve`, {statistics.fmean(r['picked'] for r in results):.0f} of them picked "
        f"(budget {args.picks}) and answered from the ground truth through Label Studio's API, then "
        f"`qc loop` fine-tuning the base weights {args.fine_tune_epochs} epochs on start + picks; "
        "scored by `qc eval` on DeepPCB val (200 images).",
        "",
        table(["model", "val mAP50 (mean ± sd)", "val mAP50-95", "mAP50 per seed"], rows),
        "",
        f"Sampler minus random, mAP50 per seed: {', '.join(f'{g:+.3f}' for g in gain)} "
        f"(mean {statistics.fmean(gain):+.3f}). Why the sampler picked its frames (first reason): "
        + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ". "
        "Gate decisions (candidate against the start model on `pcb-val@v1`): "
        + "; ".join(f"seed {r['seed']}: sampler {r['gate']['sampler']}, random {r['gate']['random']}"
                    for r in results) + ".",
        "",
        f"Wall time per seed: {minutes:.1f} min ("
        + ", ".join(f"{k} {statistics.fmean(r['timings'][k] for r in results) / 60:.1f} min"
                    for k in results[0]["timings"]) + ").",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 200 start / 100 pool / 20 picks, "
                        "2 + 1 epochs: checks the path in minutes")
    parser.add_argument("--seeds", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--dry-run", action="store_true", help="print the section, do not write BENCHMARKS.md")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--with-results", type=Path, default=None,
                        help="results.json of an earlier run (other seeds, same sizes) to report together")
    args = parser.parse_args()
    if not (DEEPPCB / "data.yaml").is_file():
        sys.exit(f"DeepPCB not found at {DEEPPCB}")
    args.start, args.pool, args.picks = 200, (100 if args.quick else 600), (20 if args.quick else 100)
    args.start_epochs, args.fine_tune_epochs = (2, 1) if args.quick else (25, 10)
    seeds = args.seeds or (1 if args.quick else 3)

    from labeling.server import DEFAULT_VENV, LabelStudioServer

    if not (DEFAULT_VENV / "bin" / "label-studio").is_file():
        sys.exit(f"Label Studio is not installed in {DEFAULT_VENV}: python -m labeling.server install")
    work = args.work or Path(tempfile.mkdtemp(prefix="qc-loop-bench-"))
    print(f"working in {work}", flush=True)
    results = json.loads(args.with_results.read_text()) if args.with_results else []
    with LabelStudioServer(data_dir=work / "label-studio") as studio:
        for seed in range(args.first_seed, args.first_seed + seeds):
            results.append(Seed(work / f"seed{seed}", seed, args, studio).run())
            (work / "results.json").write_text(json.dumps(results, indent=1))
    body = report(results, args)
    print(body)
    if not args.dry_run:
        write_section("loop-deeppcb", body)


if __name__ == "__main__":
    main()
