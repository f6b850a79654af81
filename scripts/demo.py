"""`make demo`: synthetic defects -> trained model -> ONNX -> registry -> predictions -> a live
inspection service answering a few station frames -> the review page -> one turn of the
labeling loop -> the service left running with reviewer and engineer accounts, so the demo's
flagged frames can be reviewed and the turn's result seen in a browser (Ctrl+C stops it).

The loop: with a Label Studio configured (QC_LABEL_STUDIO_URL and QC_LABEL_STUDIO_TOKEN; start
one with `python -m labeling.server start .qc/label-studio`), the sampler's picks are pushed,
answered from the synthetic ground truth through Label Studio's API as a labeller would, and
`qc loop` pulls them into demo-parts@v2, fine-tunes the production model for one epoch,
gates and promotes; the running service swaps the new model in. Without one, push and pull
are skipped with a line saying so, and `qc loop` shows that there is nothing new to learn.

Each step is a `qc` command, printed before it runs, so the demo doubles as a tutorial. State
lives in $QC_HOME (the Makefile sets ./.qc); a second run reuses the trained model
(`make clean-demo` starts over).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from serving.launch import ServerDidNotStart, free_port, wait_ready

HOME = Path(os.environ.setdefault("QC_HOME", str(Path.cwd() / ".qc"))).resolve()
DEMO = HOME / "demo"
QC = [sys.executable, "-m", "qc"]
MODEL = "demo"
DATASET = "demo-parts"  # the synthetic training set as a dataset version: the loop extends it
# The loop's settings for the demo (training/loop.py): the recipe the model was trained with,
# one epoch of fine-tuning (~2-3 min on 2 cores), promote when the gate passes.
LOOP_ENV = {"QC_MODEL_NAME": MODEL, "QC_LOOP_RECIPE": "recipes/synthetic-demo.yaml", "QC_LOOP_EPOCHS": "1",
            "QC_LOOP_AUTO_PROMOTE": "true", "QC_LABEL_DATASET": DATASET, "QC_LABEL_PROJECT": "qc-demo"}


def qc(*args: str, capture: bool = False) -> str:
    print(f"\n$ qc {shlex.join(args)}", flush=True)
    result = subprocess.run([*QC, *args], check=True, text=True,
                            stdout=subprocess.PIPE if capture else None)
    return result.stdout if capture else ""


def train_model() -> None:
    out = qc("train", "--recipe", "recipes/synthetic-demo.yaml", "--data", f"{DATASET}@v1", capture=True)
    run = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(run, indent=2))
    qc("export", run["run"], "--register", MODEL, "--promote")
    print(f"training curves: {Path(run['run']) / 'curves.png'}")


# The station's product: a part design the model never saw in training (the training parts are
# other designs), judged against one golden image of it.
STATION_PART = 2024


def golden(frames: Path) -> Path:
    """The station's golden part: the defect-free render of the product, as an engineer would
    photograph a known-good part at the station."""
    return min((frames / "references").rglob("*.jpg"))


def predict(model_path: str) -> Path:
    frames = DEMO / "new-frames"
    if not (frames / "references").is_dir():
        qc("synth", "--out", str(frames), "--n", "12", "--seed", "2024", "--val-fraction", "0", "--width", "320",
           "--height", "320", "--defects", "2-6", "--part", str(STATION_PART), "--references", "--overwrite", "--quiet")
    annotated = DEMO / "annotated"
    lines = qc("predict", "--model", model_path, "--conf", "0.25", "--save", str(annotated),
               "--reference", str(golden(frames)), str(frames / "images"), capture=True).strip().splitlines()
    found = sum(len(json.loads(line)["detections"]) for line in lines)
    truth = sum(len(label.read_text().split()) // 5 for label in (frames / "labels").rglob("*.txt"))
    print(f"\n{len(lines)} new frames of a part design never trained on, judged against its golden image: "
          f"{found} boxes at conf 0.25 for {truth} true defects.")
    print(f"Annotated images: {annotated}")
    return frames


def serve_and_inspect(frames: Path) -> None:
    stations = qc("stations", "list", capture=True)
    if "demo-station" not in stations:
        qc("stations", "add", "demo-station", "--rules", "scripts/demo-rules.yaml")
    qc("stations", "reference", "demo-station", str(golden(frames)))
    key = qc("keys", "create", "--role", "station", "--station", "demo-station", "--name", "demo",
             capture=True).strip()
    try:
        run_server_and_post(frames, key)
    finally:
        # A key is qc_<id>_<secret>; the demo's key is revoked, so runs do not pile up live keys.
        qc("keys", "revoke", key.split("_")[1], capture=True)


def truly_defective(frames: Path, image: Path) -> bool:
    """What the demo station's rules (scripts/demo-rules.yaml) should say of a frame by its
    ground truth: defective unless its only defect is one particle (one speck is in spec)."""
    label = frames / "labels" / image.parent.name / f"{image.stem}.txt"
    classes = [line.split()[0] for line in label.read_text().splitlines() if line.strip()]
    particles = classes.count("3")
    return len(classes) > particles or particles > 1


REVIEWER = "demo-reviewer"
ENGINEER = "demo-engineer"


def account(name: str = REVIEWER, role: str = "reviewer") -> str:
    """A person for the pages (made once; the password is reset on every run)."""
    import secrets

    password = secrets.token_urlsafe(9)
    listed = qc("users", "list", capture=True)
    command = ("users", "passwd", name) if f"{name}\t" in listed else (
        "users", "add", name, "--role", role, "--display-name", f"Demo {role.title()}")
    os.environ["QC_USER_PASSWORD"] = password
    try:
        qc(*command)
    finally:
        os.environ.pop("QC_USER_PASSWORD", None)
    return password


def run_server_and_post(frames: Path, key: str) -> None:
    import httpx

    port = free_port()
    # Every frame's image is kept (QC_PASS_SAMPLE_RATE=1): the sampler also sends PASS frames
    # to labeling, to find the defects the model missed.
    env = {**os.environ, "QC_MODEL_NAME": MODEL, "QC_LOG_JSON": "false", "QC_PASS_SAMPLE_RATE": "1",
           "QC_MODEL_POLL_S": "2"}
    log = DEMO / "serve.log"
    print(f"\n$ QC_MODEL_NAME={MODEL} qc serve --port {port}   (in the background, output in {log})")
    with log.open("wb") as out:
        server = subprocess.Popen([*QC, "serve", "--port", str(port)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, timeout=90, log_path=log)
        print("\nPOST /v1/stations/demo-station/inspect, one frame at a time:")
        tally = {"right": 0, "review": 0, "wrong": 0}
        for i, image in enumerate(sorted((frames / "images").rglob("*.jpg"))):
            response = httpx.post(f"{url}/v1/stations/demo-station/inspect", content=image.read_bytes(),
                                  headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg",
                                           "X-Part-Id": f"DEMO-{i:04d}", "Idempotency-Key": f"demo-{time.time_ns()}"},
                                  timeout=30)
            body = response.json()
            defective = truly_defective(frames, image)
            outcome = ("review" if body["verdict"] == "REVIEW" else
                       "right" if (body["verdict"] == "FAIL") == defective else "wrong")
            tally[outcome] += 1
            print(f"  {image.name}: {body['verdict']:<6} ({'defective' if defective else 'good'} part) "
                  f"{body['rule']}  ({body['timings']['total_ms']:.0f} ms, alignment "
                  f"{body['reference']['alignment_score']:.2f}, record {body['id']})")
        print(f"\njudged right: {tally['right']} of {sum(tally.values())}; sent to review: {tally['review']}; "
              f"wrong: {tally['wrong']}")
        print(f"\nThe records are in {HOME / 'qc.db'}; the frames' images under {HOME / 'images'}.")
        password = account(REVIEWER, "reviewer")
        print(f"\nReview the flagged frames:\n  {url}/review\n  user: {REVIEWER}\n  password: {password}\n"
              "  keys: D defect, F false alarm, M draw a missed defect, ? all keys", flush=True)
        if sys.stdin.isatty():
            input("\nReview a few now if you like, then press Enter for the labeling loop ... ")
        loop_turn(frames, url, key)
        engineer = account(ENGINEER, "engineer")
        print(f"\nThe service keeps running (Ctrl+C stops it):\n"
              f"  review:  {url}/review   ({REVIEWER} / {password})\n"
              f"  loop:    {url}/loop     ({ENGINEER} / {engineer}): the turn, per-class metrics "
              "before and after, frames whose verdict changed; Run a turn", flush=True)
        server.wait()
    except KeyboardInterrupt:
        print("\nstopping the service")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)


def label_studio() -> str | None:
    """The Label Studio the environment names, if it answers."""
    import httpx

    url, token = os.environ.get("QC_LABEL_STUDIO_URL"), os.environ.get("QC_LABEL_STUDIO_TOKEN")
    if not url or not token:
        return None
    try:
        httpx.get(f"{url.rstrip('/')}/api/projects?page_size=1", headers={"Authorization": f"Token {token}"},
                  timeout=10).raise_for_status()
    except httpx.HTTPError as error:
        print(f"\nLabel Studio at {url} does not answer ({error}).")
        return None
    return url.rstrip("/")


def truth_by_image(frames: Path) -> dict[str, list[dict]]:
    """sha256 of each synthetic frame -> its ground-truth boxes as Label Studio regions."""
    import hashlib

    import cv2

    names = json.loads(qc("models", "show", MODEL, capture=True))["names"]
    truth = {}
    for image in sorted((frames / "images").rglob("*.jpg")):
        height, width = cv2.imread(str(image)).shape[:2]
        label = frames / "labels" / image.parent.name / f"{image.stem}.txt"
        regions = []
        for line in label.read_text().split("\n") if label.is_file() else []:
            if line.strip():
                c, cx, cy, w, h = (float(v) for v in line.split())
                regions.append({"type": "rectanglelabels", "from_name": "label", "to_name": "image",
                                "original_width": width, "original_height": height,
                                "value": {"x": (cx - w / 2) * 100, "y": (cy - h / 2) * 100, "width": w * 100,
                                          "height": h * 100, "rotation": 0,
                                          "rectanglelabels": [names[str(int(c))]]}})
        truth[hashlib.sha256(image.read_bytes()).hexdigest()] = regions
    return truth


def answer_tasks(frames: Path) -> int:
    """What a labeller does in Label Studio's UI, through its API: each pushed task gets the
    frame's true boxes. Returns how many tasks were answered."""
    from inspection.store.labels import LabelState
    from labeling.bridge import Bridge
    from labeling.settings import LabelSettings

    bridge = Bridge(LabelSettings())
    truth = truth_by_image(frames)
    answered = 0
    for task in bridge.labels.tasks(bridge.project_title, states=[LabelState.PUSHED]):
        record = bridge.records.inspection(task.inspection_id)
        if record.image_sha256 in truth:
            bridge.studio.annotate(task.task_id, truth[record.image_sha256])
            answered += 1
    project = bridge.project()
    print(f"answered {answered} tasks from the synthetic ground truth, as a labeller would at "
          f"{bridge.studio.url}/projects/{project.id}")
    bridge.db.dispose()
    return answered


def loop_turn(frames: Path, url: str, key: str) -> None:
    """Push, label, qc loop; then show which model the service answers with."""
    import httpx

    os.environ.update(LOOP_ENV)
    print("\n-- the labeling loop --")
    studio = label_studio()
    answered = 0
    if studio is None:
        print("Label Studio: none running (set QC_LABEL_STUDIO_URL and QC_LABEL_STUDIO_TOKEN; start one with\n"
              "  .venv/bin/python -m labeling.server install .ls-venv   # once, ~80 s\n"
              "  .venv/bin/python -m labeling.server start .qc/label-studio --venv .ls-venv --port 8080\n"
              "and export what it prints): skipping qc label setup, push and pull.")
    else:
        print(f"Label Studio: {studio}")
        qc("label", "setup")
        qc("label", "sample", "--dry-run")
        qc("label", "push", "--sample")
        answered = answer_tasks(frames)
    min_new = str(max(answered, 1))
    print(f"\n$ QC_LOOP_RECIPE={LOOP_ENV['QC_LOOP_RECIPE']} QC_LABEL_DATASET={DATASET} "
          f"qc loop --min-new {min_new} --epochs 1 --auto-promote")
    done = subprocess.run([*QC, "loop", "--min-new", min_new, "--epochs", "1", "--auto-promote"],
                          text=True, stdout=subprocess.PIPE, check=False)
    if done.returncode != 0:
        print(done.stdout)
        print("qc loop failed: see the job above (qc loop status)")
        return
    job = json.loads(done.stdout)
    result = job.get("result") or {}
    print(f"turn {job['job']}: {job['state']}")
    if result.get("message"):
        print(f"  {result['message']}")
    if result.get("candidate"):
        before, after = result["before"], result["after"]
        print(f"  {result['candidate']} fine-tuned from {result['production_before']} on {result['dataset']} "
              f"({result['new_images']} new labelled images)\n"
              f"  holdout {result['holdout']}: mAP50 {before['map50']:.3f} -> {after['map50']:.3f}, "
              f"mAP50-95 {before['map50_95']:.3f} -> {after['map50_95']:.3f}\n"
              f"  frames whose verdict changed: {len(result['changed_verdicts'])}\n"
              + "\n".join(f"    {line}" for line in str(result["gate"]).splitlines()))
    if job["state"] == "promoted":
        image = min((frames / "images").rglob("*.jpg"))
        deadline = time.monotonic() + 60  # the service polls the registry every 2 s
        while time.monotonic() < deadline:
            body = httpx.post(f"{url}/v1/stations/demo-station/inspect", content=image.read_bytes(),
                              headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"},
                              timeout=30).json()
            if f"{MODEL}@{body['model']['version']}" == result["production"]:
                break
            time.sleep(1)
        print(f"the service now answers with {MODEL}@{body['model']['version']} "
              f"(promoted: {result['production']}), swapped in without a restart")


def main() -> None:
    DEMO.mkdir(parents=True, exist_ok=True)
    data = DEMO / "synthetic"
    if not (data / "data.yaml").is_file():
        qc("synth", "--out", str(data), "--n", "480", "--seed", "7", "--width", "320", "--height", "320",
           "--defects", "4-8", "--references")
    if not (HOME / "datasets" / DATASET / "v1").is_dir():
        qc("dataset", "import", str(data / "data.yaml"), "--format", "yolo", "--name", DATASET)
    if not (HOME / "models" / MODEL / "production.json").is_file():
        train_model()
    else:
        print(f"reusing the trained model in {HOME / 'models' / MODEL} (make clean-demo to start over)")
    if not (HOME / "models" / MODEL / "holdout.json").is_file():
        qc("models", "holdout", MODEL, f"{DATASET}@v1")  # the gate scores candidates on its test split
    model_path = json.loads(qc("models", "show", MODEL, capture=True))["path"]
    frames = predict(model_path)
    serve_and_inspect(frames)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)
    except ServerDidNotStart as error:
        sys.exit(f"error: {error}")
