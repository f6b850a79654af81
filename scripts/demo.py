"""`make demo`: synthetic data -> trained model -> ONNX -> registry -> predictions on new frames.

Each step is a `qc` command, printed before it runs, so the demo doubles as a tutorial. State
lives in $QC_HOME (the Makefile sets it to ./.qc); a second run reuses the trained model.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

HOME = Path(os.environ.setdefault("QC_HOME", str(Path.cwd() / ".qc"))).resolve()
DEMO = HOME / "demo"
QC = [sys.executable, "-m", "qc"]


def qc(*args: str, capture: bool = False) -> str:
    print(f"\n$ qc {shlex.join(args)}", flush=True)
    result = subprocess.run([*QC, *args], check=True, text=True,
                            stdout=subprocess.PIPE if capture else None)
    return result.stdout if capture else ""


def main() -> None:
    DEMO.mkdir(parents=True, exist_ok=True)
    data = DEMO / "synthetic"
    if not (data / "data.yaml").is_file():
        qc("synth", "--out", str(data), "--n", "400", "--seed", "7")

    registry = HOME / "models" / "demo"
    if not (registry / "production.json").is_file():
        out = qc("train", "--recipe", "recipes/synthetic-demo.yaml", "--data", str(data / "data.yaml"),
                 capture=True)
        run = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(run, indent=2))
        model = qc("export", run["run"], capture=True).strip().splitlines()[-1]
        qc("models", "add", model, "--name", "demo", "--weights", run["weights"], "--promote")
    else:
        print(f"reusing the trained model in {registry} (make clean-demo to start over)")
    model_path = json.loads(qc("models", "show", "demo", capture=True))["path"]

    frames = DEMO / "new-frames"
    if not frames.is_dir():
        qc("synth", "--out", str(frames), "--n", "12", "--seed", "2024", "--val-fraction", "0")
    annotated = DEMO / "annotated"
    lines = qc("predict", "--model", model_path, "--conf", "0.25", "--save", str(annotated),
               str(frames / "images"), capture=True).strip().splitlines()
    found = sum(len(json.loads(line)["detections"]) for line in lines)
    print(f"\n{len(lines)} new frames, {found} defects found.")
    print(f"Annotated images: {annotated}")


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as error:
        sys.exit(error.returncode)
