"""What the benchmarks share: where the repository, its state and DeepPCB are, and how
`--model` names a model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# DeepPCB in YOLO layout (data.yaml, images/, labels/), beside the repository.
DEEPPCB = REPO.parent / "shared" / "datasets" / "deeppcb"


def use_repo_home() -> Path:
    """QC_HOME defaults to the repository's .qc (as `make` sets it), never ~/.qc."""
    return Path(os.environ.setdefault("QC_HOME", str(REPO / ".qc")))


def model_file(ref: str) -> Path:
    """`--model`: an ONNX file, or a registry name (NAME, NAME@v3; its production version by
    default) in $QC_HOME/models; exits with one line when it is neither."""
    path = Path(ref)
    if path.is_file():
        return path
    from inspection.errors import QCError
    from inspection.models.registry import Registry
    from inspection.settings import Settings

    try:
        return Registry(Settings().models_dir).resolve(ref).model_path
    except QCError as error:
        sys.exit(f"--model {ref}: not a file, and in the registry: {error}")
