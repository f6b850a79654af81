"""A line PC installs `qc[cpu]` and nothing heavier: `qc predict` must work without torch,
Ultralytics or FastAPI, and the core must never import them."""

from __future__ import annotations

import json
import subprocess
import sys
import venv

import pytest

from tests.conftest import REPO

HEAVY = ("torch", "ultralytics", "fastapi", "albumentations", "supervision", "label_studio_sdk")


def test_the_core_and_the_predict_command_import_nothing_heavy():
    code = (
        "import sys, inspection.detect.detector, inspection.rules, inspection.store.records, "
        "inspection.models.registry, inspection.evaluate.metrics, inspection.data.versions, qc.cli; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout


def test_inspection_never_imports_serving_or_training():
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "inspection").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(("from serving", "import serving", "from training", "import training"))
    ]
    assert offenders == []


def test_there_is_no_top_level_datasets_package():
    """A package named `datasets` would shadow Hugging Face datasets in users' environments."""
    assert not (REPO / "datasets" / "__init__.py").exists()


@pytest.mark.slow
def test_qc_predict_works_in_a_venv_with_only_the_cpu_extra(tmp_path, trained_model):
    import cv2

    from inspection.data.synth import make_sample

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"{REPO}[cpu]"],
                             capture_output=True, text=True, check=False)
    assert install.returncode == 0, install.stderr[-2000:]
    image = tmp_path / "frame.jpg"
    cv2.imwrite(str(image), make_sample(5, width=320, height=320).image)
    result = subprocess.run([str(env_dir / "bin" / "qc"), "predict", "--model", str(trained_model.raw),
                             "--conf", "0.01", str(image)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[0])["width"] == 320
    find = f"import importlib.util as u; print([m for m in {HEAVY!r} if u.find_spec(m)])"
    missing = subprocess.run([str(python), "-c", find], capture_output=True, text=True, check=True)
    assert missing.stdout.strip() == "[]", f"installed with qc[cpu]: {missing.stdout}"
