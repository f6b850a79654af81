"""One seed of one scenario of the loop bench, end to end with the product's commands.

    from bench.loop.seed import SeedRun, Sizes
    result = SeedRun(work, Scenario.LINE, seed=0, sizes=Sizes.full(), studio=studio, eval_data=boards).run()

1. The start model (once per seed, shared by the scenarios: its start set depends on the seed
   alone): the reference recipe (recipes/deeppcb-reference.yaml: frame, aligned template and
   their difference, tiled) trained `start_epochs` on the seed's labelled start boards.
2. A QC_HOME per scenario: the start set imported as `pcb@v1` (templates as references) and
   once per arm (`pcb-policy`, `pcb-random`, `pcb-flagged`), the start model exported and
   promoted, the gate's holdout imported from the scoring set.
3. `qc serve` judges the pool at station `line`: before each frame its template is the
   station's golden part (`PUT /v1/stations/line/reference`, as an engineer registers one),
   then the frame is posted as the line's camera posts it. Every frame's image is kept
   (QC_PASS_SAMPLE_RATE=1) so any arm may pick any frame.
4. Per turn and arm: the arm's picks (arms.py) up to the turn's labels; answered from the
   ground truth (a good part: no box) through Label Studio's API as a labeller would, then
   `qc loop` (pull, fine-tune the start model's weights on start + every pick so far, export,
   gate; left waiting, so every budget's model is the start model fine-tuned on that many
   labels). Without Label Studio (`oracle="direct"`) the picks with their true labels are
   imported as the arm's next dataset version instead and `qc loop` trains on it.
5. The start model and every turn's candidate scored by `qc eval --criterion deeppcb` on the
   scoring set: mAP50, mAP50-95, the DeepPCB F-score.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.common import DEEPPCB, REPO
from bench.loop.arms import DEFAULT_ARMS, NEGATIVES_SHARE, Arm, Served, choose, increments, policy_text
from bench.loop.pool import Drawn, Frame, Scenario, draw

QC = [sys.executable, "-m", "qc"]
NAMES = ["open", "short", "mousebite", "spur", "copper", "pin-hole"]
RULES = "default: {fail_conf: 0.5, review_conf: 0.25}\n"
RECIPE = REPO / "recipes" / "deeppcb-reference.yaml"  # the one the product recommends for DeepPCB
STATION = "line"


@dataclass(frozen=True)
class Sizes:
    # A start set of 100 labelled boards (a line's first weeks, not DeepPCB's whole train set):
    # the picks then matter, and a seed's nine turns fit in about 40 minutes on 2 cores.
    start: int = 100
    pool: int = 600
    budgets: tuple[int, ...] = (25, 50, 100)
    start_epochs: int = 30
    fine_tune_epochs: int = 5
    holdout: int = 60           # scoring-set images the gate's holdout takes (its `test` split)
    defect_rate: float = 0.05

    @classmethod
    def quick(cls, budgets: tuple[int, ...] = (4, 8)) -> Sizes:
        return cls(start=24, pool=60, budgets=budgets, start_epochs=1, fine_tune_epochs=1, holdout=10,
                   defect_rate=0.1)


def training_boards() -> list[Path]:
    """The images of boards.yaml train (DeepPCB's four training boards)."""
    return [(DEEPPCB / line).resolve() for line in (DEEPPCB / "boards-train.txt").read_text().split()]


def template_of(image: Path) -> Path:
    return DEEPPCB / "templates" / image.parent.name / image.name


def label_text(image: Path) -> str:
    return (DEEPPCB / "labels" / image.parent.name / f"{image.stem}.txt").read_text()


def regions(text: str) -> list[dict]:
    """A YOLO label (DeepPCB frames are 640x640) as Label Studio regions; none for a good part."""
    found = []
    for line in text.split("\n"):
        if line.strip():
            c, cx, cy, w, h = (float(v) for v in line.split())
            found.append({"type": "rectanglelabels", "from_name": "label", "to_name": "image",
                          "original_width": 640, "original_height": 640,
                          "value": {"x": (cx - w / 2) * 100, "y": (cy - h / 2) * 100, "width": w * 100,
                                    "height": h * 100, "rotation": 0, "rectanglelabels": [NAMES[int(c)]]}})
    return found


def frame_bytes(frame: Frame) -> bytes:
    """What the camera sends: a defective board's file, or a new shot of a good part."""
    if frame.image is not None:
        return frame.image.read_bytes()
    import cv2
    import numpy as np

    from inspection.data.synth.optics import jitter

    template = cv2.imread(str(frame.template), cv2.IMREAD_UNCHANGED)
    if template is None:
        raise SystemExit(f"{frame.template}: cannot be read; DeepPCB's copy is damaged")
    shot = jitter(template, np.random.default_rng(frame.jitter_seed))
    ok, encoded = cv2.imencode(".jpg", shot, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def yolo_folder(folder: Path, items: Sequence[tuple[str, bytes | Path, Path, str]]) -> Path:
    """A YOLO data.yaml over (name, image bytes or file, template, label text): files linked
    where they exist (DeepPCB stays read-only), templates beside as `templates/`."""
    for kind in ("images", "labels", "templates"):
        (folder / kind / "train").mkdir(parents=True, exist_ok=True)
    for name, image, template, label in items:
        target = folder / "images" / "train" / f"{name}.jpg"
        if isinstance(image, Path):
            if not target.exists():
                target.symlink_to(image)
        else:
            target.write_bytes(image)
        golden = folder / "templates" / "train" / f"{name}.jpg"
        if not golden.exists():
            golden.symlink_to(template)
        (folder / "labels" / "train" / f"{name}.txt").write_text(label)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(NAMES))
    (folder / "data.yaml").write_text(f"train: images/train\nval: images/train\nnames:\n{names}\n")
    return folder / "data.yaml"


def recipe_text(*, epochs: int, seed: int) -> str:
    """The reference recipe at the bench's epochs, with no time budget (equal work per seed)."""
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe.update(name="loop-bench", epochs=epochs, seed=seed, time_hours=None)
    recipe.pop("data", None)  # given per run (`--data pcb@v1`; the loop: the arm's dataset)
    return yaml.safe_dump(recipe, sort_keys=False)


@dataclass
class Turn:
    arm: str
    budget: int
    spent: int
    scores: dict
    seconds: dict
    gate: str
    reasons: dict = field(default_factory=dict)
    defective: int | None = None  # defective frames among the labels spent so far (None: not counted)


def defective_among(picked: Sequence[str], frames: dict[str, tuple[Frame, bytes]]) -> int:
    """How many of the picked inspections are frames of a defective board."""
    return sum(not frames[inspection_id][0].good for inspection_id in picked)


class Home:
    """A QC_HOME and `qc` run in it."""

    def __init__(self, home: Path, studio: Any = None) -> None:
        self.home = home
        self.env = {**os.environ, "QC_HOME": str(home), "QC_MODEL_NAME": "pcb", "QC_LOG_JSON": "false",
                    "PYTHONPATH": str(REPO)}
        for name in ("QC_DATABASE_URL", "QC_LABEL_STUDIO_URL", "QC_LABEL_STUDIO_TOKEN", "QC_IMAGE_STORE"):
            self.env.pop(name, None)
        if studio is not None:
            self.env |= {"QC_LABEL_STUDIO_URL": studio.url, "QC_LABEL_STUDIO_TOKEN": studio.token}

    def qc(self, *args: str, env: dict | None = None) -> str:
        print(f"$ qc {' '.join(args)}", flush=True)
        done = subprocess.run([*QC, *args], env={**self.env, **(env or {})}, text=True, check=False,
                              stdout=subprocess.PIPE, cwd=REPO)
        if done.returncode != 0:
            raise SystemExit(f"qc {' '.join(args)} failed ({done.returncode}) in {self.home}: {done.stdout[-2000:]}")
        return done.stdout


def start_model(work: Path, seed: int, drawn: Drawn, sizes: Sizes) -> tuple[Path, Path, float]:
    """The seed's start model (trained once, kept in `work/seed<N>/start`): its run folder,
    the recipe file and the training seconds."""
    folder = work / f"seed{seed}" / "start"
    marker = folder / "start.json"
    text = recipe_text(epochs=sizes.start_epochs, seed=seed)
    wanted = {"start": [p.name for p in drawn.start], "epochs": sizes.start_epochs, "recipe": text}
    if marker.is_file():
        known = json.loads(marker.read_text())
        if {k: known.get(k) for k in wanted} == wanted:
            return Path(known["run"]), folder / "recipe.yaml", known["seconds"]
    folder.mkdir(parents=True, exist_ok=True)
    home = Home(folder / "home")
    recipe = folder / "recipe.yaml"
    recipe.write_text(text)
    data = yolo_folder(folder / "data", [(p.stem, p, template_of(p), label_text(p)) for p in drawn.start])
    home.qc("dataset", "import", str(data), "--format", "yolo", "--name", "pcb")
    started = time.monotonic()
    out = home.qc("train", "--recipe", str(recipe), "--data", "pcb@v1")
    seconds = time.monotonic() - started
    run = Path(json.loads(out.strip().splitlines()[-1])["run"])
    marker.write_text(json.dumps({**wanted, "run": str(run), "seconds": seconds}, indent=1))
    return run, recipe, seconds


class SeedRun:
    def __init__(self, work: Path, scenario: Scenario, *, seed: int, sizes: Sizes, studio: Any,
                 eval_data: Path, eval_split: str = "val", arms: tuple[Arm, ...] = DEFAULT_ARMS) -> None:
        self.work, self.scenario, self.seed, self.sizes, self.studio = work, scenario, seed, sizes, studio
        self.eval_data, self.eval_split, self.arms = eval_data, eval_split, arms
        self.folder = work / f"seed{seed}" / str(scenario)
        self.home = Home(self.folder / "home", studio)
        self.timings: dict[str, float] = {}
        self.policy_picks: dict[int, list[str]] = {}  # turn -> the policy arm's picks (the negatives arm's too)

    def run(self) -> dict:
        drawn = draw(self.scenario, seed=self.seed, images=training_boards(), template_of=template_of,
                     start=self.sizes.start, pool=self.sizes.pool, defect_rate=self.sizes.defect_rate)
        run, recipe, self.timings["start model training"] = start_model(self.work, self.seed, drawn, self.sizes)
        self.folder.mkdir(parents=True, exist_ok=True)
        start = yolo_folder(self.folder / "start", [(p.stem, p, template_of(p), label_text(p)) for p in drawn.start])
        for name in ("pcb", *(f"pcb-{arm}" for arm in self.arms)):
            self.home.qc("dataset", "import", str(start), "--format", "yolo", "--name", name)
        self.home.qc("dataset", "import", str(self.holdout()), "--format", "yolo", "--name", "pcb-holdout",
                     "--test-fraction", "0.9", "--val-fraction", "0")
        self.home.qc("export", str(run), "--register", "pcb", "--promote", "--no-check")
        self.home.qc("models", "holdout", "pcb", "pcb-holdout@v1")
        started = time.monotonic()
        served, frames = self.serve(drawn)
        self.timings["serving the pool"] = time.monotonic() - started
        base = self.score("pcb@v1")
        turns: list[Turn] = []
        for arm in self.arms:
            picked: list[str] = []
            for turn, (budget, adds) in enumerate(zip(self.sizes.budgets, increments(self.sizes.budgets),
                                                      strict=True), start=1):
                turns.append(self.turn(arm, turn, budget, adds, served, frames, picked, recipe, drawn,
                                       before=turns[-1] if turn > 1 else None, start=base))
        verdicts = {v: sum(s.verdict == v for s in served) for v in ("PASS", "REVIEW", "FAIL")}
        return {"scenario": str(self.scenario), "seed": self.seed, "sizes": asdict(self.sizes),
                "pool": {"frames": len(drawn.pool), "defective": sum(not f.good for f in drawn.pool),
                         "verdicts": verdicts},
                "eval": {"data": str(self.eval_data), "split": self.eval_split},
                "oracle": "label-studio" if self.studio is not None else "direct",
                "start": base, "turns": [asdict(t) for t in turns], "timings": self.timings}

    def holdout(self) -> Path:
        """The gate's frozen holdout: every k-th image of the scoring set, with its template."""
        from inspection.data.formats.yolo import label_path_for

        images = listed_images(self.eval_data, self.eval_split)
        step = max(1, len(images) // self.sizes.holdout)
        chosen = images[::step][:self.sizes.holdout]
        return yolo_folder(self.folder / "holdout", [
            (p.stem, p, reference_of(p), label_path_for(p, root=Path(p.anchor)).read_text()) for p in chosen])

    def serve(self, drawn: Drawn) -> tuple[list[Served], dict[str, tuple[Frame, bytes]]]:
        """The pool through `qc serve`, each frame after its golden part; returns what the
        service recorded and each inspection's frame and bytes."""
        import httpx

        from serving.launch import free_port, wait_ready

        rules = self.folder / "rules.yaml"
        rules.write_text(RULES)
        self.home.qc("stations", "add", STATION, "--rules", str(rules))
        station_key = self.home.qc("keys", "create", "--role", "station", "--station", STATION,
                                   "--name", "camera").strip()
        engineer_key = self.home.qc("keys", "create", "--role", "engineer", "--name", "engineer").strip()
        port = free_port()
        log = self.folder / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen([*QC, "serve", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                      env={**self.home.env, "QC_PASS_SAMPLE_RATE": "1"}, cwd=REPO)
        url = f"http://127.0.0.1:{port}"
        served, frames = [], {}
        try:
            wait_ready(url, server, timeout=120, log_path=log)
            golden = None
            with httpx.Client(timeout=60) as client:
                for frame in drawn.pool:
                    if frame.template != golden:  # a new part on the line: its golden part first
                        client.put(f"{url}/v1/stations/{STATION}/reference", content=frame.template.read_bytes(),
                                   headers={"Authorization": f"Bearer {engineer_key}",
                                            "Content-Type": "image/jpeg"}).raise_for_status()
                        golden = frame.template
                    data = frame_bytes(frame)
                    response = client.post(f"{url}/v1/stations/{STATION}/inspect", content=data,
                                           headers={"Authorization": f"Bearer {station_key}",
                                                    "Content-Type": "image/jpeg", "X-Part-Id": frame.name})
                    response.raise_for_status()
                    body = response.json()
                    served.append(Served(body["id"], body["verdict"]))
                    frames[body["id"]] = (frame, data)
        finally:
            server.terminate()
            server.wait(60)
        print(f"served {len(served)} frames: " + ", ".join(
            f"{v} {sum(s.verdict == v for s in served)}" for v in ("PASS", "REVIEW", "FAIL")), flush=True)
        return served, frames

    def turn(self, arm: Arm, turn: int, budget: int, adds: int, served: list[Served],
             frames: dict[str, tuple[Frame, bytes]], picked: list[str], recipe: Path, drawn: Drawn, *,
             before: Turn | None, start: dict) -> Turn:
        env = {"QC_LABEL_PROJECT": f"loop-bench-{self.scenario}-{self.seed}-{arm}-{os.getpid()}",
               "QC_LABEL_DATASET": f"pcb-{arm}", "QC_LOOP_RECIPE": str(recipe),
               "QC_LOOP_EPOCHS": str(self.sizes.fine_tune_epochs), "QC_LOOP_AUTO_PROMOTE": "false"}
        seconds: dict[str, float] = {}
        started = time.monotonic()
        if self.studio is not None and turn == 1:
            self.home.qc("label", "setup", env=env)
        reasons: dict[str, int] = {}
        shipped = (REPO / "labeling" / "sampling" / "policy.yaml").read_text()
        if arm in (Arm.POLICY, Arm.FLIP):
            policy = self.folder / (f"policy-{turn}.yaml" if arm is Arm.POLICY else f"policy-{arm}-{turn}.yaml")
            policy.write_text(policy_text(shipped, adds, flip=arm is Arm.FLIP))
            out = self.home.qc("label", "sample", "--queue", "--policy", str(policy), env=env)
            new = []
            for line in out.splitlines():
                if line.startswith("{"):
                    pick = json.loads(line)
                    new.append(pick["inspection"])
                    first = pick["reasons"][0]["reason"] if pick["reasons"] else "chosen"
                    reasons[first] = reasons.get(first, 0) + 1
            if arm is Arm.POLICY:
                self.policy_picks[turn] = new
            if self.studio is not None:
                self.home.qc("label", "push", env=env)
        elif arm is Arm.NEGATIVES:  # the policy's picks again; its pull adds good frames (QC_LABEL_POLICY)
            policy = self.folder / f"policy-negatives-{turn}.yaml"
            policy.write_text(policy_text(shipped, adds, negatives=NEGATIVES_SHARE))
            env["QC_LABEL_POLICY"] = str(policy)
            new = list(self.policy_picks.get(turn, []))
            if new:
                self.home.qc("label", "push", *new, env=env)
        else:
            new = choose(arm, served, already=set(picked), count=adds, seed=self.seed, turn=turn)
            if self.studio is not None and new:
                self.home.qc("label", "push", *new, env=env)
        if not new:  # nothing left that this arm would label (few flagged frames): the model stays
            print(f"{self.scenario} seed {self.seed} {arm}: nothing new to label at {budget}", flush=True)
            return Turn(arm=str(arm), budget=budget, spent=len(picked), scores=before.scores if before else start,
                        seconds={"pick and answer": time.monotonic() - started, "qc loop": 0.0},
                        gate="nothing new to label", reasons=reasons, defective=defective_among(picked, frames))
        picked += new
        if self.studio is not None:
            self.answer(env, frames)
        else:
            items: list[tuple[str, bytes | Path, Path, str]] = [
                (p.stem, p, template_of(p), label_text(p)) for p in drawn.start]
            for inspection_id in picked:
                frame, data = frames[inspection_id]
                items.append((frame.name, data, frame.template, label_text(frame.image) if frame.image else ""))
            data_yaml = yolo_folder(self.folder / f"{arm}-turn{turn}", items)
            self.home.qc("dataset", "import", str(data_yaml), "--format", "yolo", "--name", f"pcb-{arm}")
        seconds["pick and answer"] = time.monotonic() - started
        started = time.monotonic()
        job = json.loads(self.home.qc("loop", "--min-new", "1", "--wait-for-approval", env=env))
        seconds["qc loop"] = time.monotonic() - started
        if job["state"] not in ("waiting_approval", "refused", "promoted"):
            raise SystemExit(f"qc loop ended {job['state']}: {json.dumps(job)[:2000]}")
        started = time.monotonic()
        scores = self.score(job["result"]["candidate"])
        seconds["scoring"] = time.monotonic() - started
        print(f"{self.scenario} seed {self.seed} {arm} {len(picked)} labels: mAP50 {scores['map50']:.3f}", flush=True)
        return Turn(arm=str(arm), budget=budget, spent=len(picked), scores=scores, seconds=seconds,
                    gate=job["state"], reasons=reasons, defective=defective_among(picked, frames))

    def answer(self, env: dict, frames: dict[str, tuple[Frame, bytes]]) -> None:
        """Every pushed task answered with the frame's true boxes, as a labeller would."""
        from inspection.store.labels import LabelState
        from labeling.bridge import Bridge
        from labeling.settings import LabelSettings

        settings = LabelSettings(home=self.home.home, label_studio_url=self.studio.url,
                                 label_studio_token=self.studio.token, label_project=env["QC_LABEL_PROJECT"])
        bridge = Bridge(settings)
        truth = {hashlib.sha256(data).hexdigest(): regions(label_text(f.image) if f.image else "")
                 for f, data in frames.values()}
        try:
            tasks = list(bridge.labels.tasks(settings.label_project, states=[LabelState.PUSHED]))
            for task in tasks:
                record = bridge.records.inspection(task.inspection_id)
                assert task.task_id is not None and record.image_sha256 is not None  # pushed: both are set
                bridge.studio.annotate(task.task_id, truth[record.image_sha256])
        finally:
            bridge.db.dispose()
        print(f"answered {len(tasks)} tasks of {settings.label_project} from the ground truth", flush=True)

    def score(self, ref: str) -> dict:
        from inspection.models.registry import Registry

        model = Registry(self.home.home / "models").resolve(ref).model_path
        out = self.home.qc("eval", "--model", str(model), "--data", str(self.eval_data), "--split", self.eval_split,
                           "--json", "--criterion", "deeppcb")
        scored = json.loads(out)
        return {"map50": scored["map50"], "map50_95": scored["map50_95"], "fscore": scored["deeppcb"]["fscore"]}


def reference_of(image: Path) -> Path:
    from inspection.data.formats.yolo import reference_path_for

    found = reference_path_for(image)
    if found is None:
        raise SystemExit(f"{image}: the scoring set needs a reference (golden) image beside each image "
                         "(a references/ or templates/ folder)")
    return found


def listed_images(data_yaml: Path, split: str) -> list[Path]:
    """A data.yaml split's images: a folder, or a .txt listing files relative to the yaml."""
    spec = yaml.safe_load(data_yaml.read_text())
    root = Path(spec.get("path") or data_yaml.parent)
    if not root.is_absolute():
        root = data_yaml.parent / root
    entry = root / spec[split]
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp"))
    return [(root / line).resolve() if not Path(line).is_absolute() else Path(line)
            for line in entry.read_text().split()]
