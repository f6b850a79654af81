"""`make demo`: synthetic defects -> trained model -> ONNX -> registry -> predictions -> a live
inspection service answering a few station frames -> the review page, left running with a
reviewer account, so the demo's flagged frames can be reviewed in a browser (Ctrl+C stops it).

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


def qc(*args: str, capture: bool = False) -> str:
    print(f"\n$ qc {shlex.join(args)}", flush=True)
    result = subprocess.run([*QC, *args], check=True, text=True,
                            stdout=subprocess.PIPE if capture else None)
    return result.stdout if capture else ""


def train_model(data: Path) -> None:
    out = qc("train", "--recipe", "recipes/synthetic-demo.yaml", "--data", str(data / "data.yaml"),
             capture=True)
    run = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(run, indent=2))
    qc("export", run["run"], "--register", MODEL, "--promote")
    print(f"training curves: {Path(run['run']) / 'curves.png'}")


def predict(model_path: str) -> Path:
    frames = DEMO / "new-frames"
    if not frames.is_dir():
        qc("synth", "--out", str(frames), "--n", "12", "--seed", "2024", "--val-fraction", "0",
           "--defects", "2-6", "--quiet")
    annotated = DEMO / "annotated"
    lines = qc("predict", "--model", model_path, "--conf", "0.25", "--save", str(annotated),
               str(frames / "images"), capture=True).strip().splitlines()
    found = sum(len(json.loads(line)["detections"]) for line in lines)
    print(f"\n{len(lines)} new frames, {found} defects found at conf 0.25.")
    print(f"Annotated images: {annotated}")
    return frames


def serve_and_inspect(frames: Path) -> None:
    stations = qc("stations", "list", capture=True)
    if "demo-station" not in stations:
        qc("stations", "add", "demo-station", "--rules", "scripts/demo-rules.yaml")
    key = qc("keys", "create", "--role", "station", "--station", "demo-station", "--name", "demo",
             capture=True).strip()
    try:
        run_server_and_post(frames, key)
    finally:
        # A key is qc_<id>_<secret>; the demo's key is revoked, so runs do not pile up live keys.
        qc("keys", "revoke", key.split("_")[1], capture=True)


REVIEWER = "demo-reviewer"


def reviewer_account() -> str:
    """A reviewer for the review page (made once; its password is reset on every run)."""
    import secrets

    password = secrets.token_urlsafe(9)
    listed = qc("users", "list", capture=True)
    command = ("users", "passwd", REVIEWER) if f"{REVIEWER}\t" in listed else (
        "users", "add", REVIEWER, "--role", "reviewer", "--display-name", "Demo Reviewer")
    os.environ["QC_USER_PASSWORD"] = password
    try:
        qc(*command)
    finally:
        os.environ.pop("QC_USER_PASSWORD", None)
    return password


def run_server_and_post(frames: Path, key: str) -> None:
    import httpx

    port = free_port()
    env = {**os.environ, "QC_MODEL_NAME": MODEL, "QC_LOG_JSON": "false"}
    log = DEMO / "serve.log"
    print(f"\n$ QC_MODEL_NAME={MODEL} qc serve --port {port}   (in the background, output in {log})")
    with log.open("wb") as out:
        server = subprocess.Popen([*QC, "serve", "--port", str(port)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, timeout=90, log_path=log)
        print("\nPOST /v1/stations/demo-station/inspect, one frame at a time:")
        for i, image in enumerate(sorted((frames / "images").rglob("*.jpg"))[:6]):
            response = httpx.post(f"{url}/v1/stations/demo-station/inspect", content=image.read_bytes(),
                                  headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg",
                                           "X-Part-Id": f"DEMO-{i:04d}", "Idempotency-Key": f"demo-{time.time_ns()}"},
                                  timeout=30)
            body = response.json()
            print(f"  {image.name}: {body['verdict']:<6} {body['rule']}  "
                  f"({body['timings']['total_ms']:.0f} ms, record {body['id']})")
        print(f"\nThe records are in {HOME / 'qc.db'}; FAIL and REVIEW frames under {HOME / 'images'}.")
        password = reviewer_account()
        print(f"\nReview the flagged frames (the service keeps running; Ctrl+C stops it):\n"
              f"  {url}/review\n  user: {REVIEWER}\n  password: {password}\n"
              "  keys: D defect, F false alarm, ? all keys", flush=True)
        server.wait()
    except KeyboardInterrupt:
        print("\nstopping the service")
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)


def main() -> None:
    DEMO.mkdir(parents=True, exist_ok=True)
    data = DEMO / "synthetic"
    if not (data / "data.yaml").is_file():
        qc("synth", "--out", str(data), "--n", "480", "--seed", "7", "--width", "320", "--height", "320",
           "--defects", "4-8")
    if not (HOME / "models" / MODEL / "production.json").is_file():
        train_model(data)
    else:
        print(f"reusing the trained model in {HOME / 'models' / MODEL} (make clean-demo to start over)")
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
