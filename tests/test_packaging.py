"""A line PC installs `qc[cpu]` and nothing heavier: `qc predict` must work without torch,
Ultralytics or FastAPI, and the core must never import them. And our four import names are
ours alone in the environment."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from importlib.metadata import Distribution, distributions

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


OUR_TOP_LEVEL = {"inspection", "serving", "training", "qc"}


def top_level_names(dist: Distribution) -> set[str]:
    """Importable top-level names a distribution installs: its top_level.txt, and the first
    part of every path in its RECORD (a wheel built without top_level.txt still lists files)."""
    names = set((dist.read_text("top_level.txt") or "").split())
    for file in dist.files or []:
        first = file.parts[0] if file.parts else ""
        if first in ("..", "__pycache__") or first.endswith((".dist-info", ".egg-info", ".data", ".pth")):
            continue
        if len(file.parts) == 1:  # a module file: name.py, name.cpython-311-x86_64-linux-gnu.so
            first = first.split(".")[0]
        names.add(first)
    return names


def test_no_other_installed_distribution_ships_our_top_level_names():
    """`serving` and `training` are plain words: a package that installs either (or
    `inspection`, or `qc`) would shadow ours or be shadowed, depending on sys.path order."""
    clashes = {
        f"{dist.metadata['Name']} ({dist.version})": sorted(top_level_names(dist) & OUR_TOP_LEVEL)
        for dist in distributions()
        if (dist.metadata["Name"] or "").lower() != "qc" and top_level_names(dist) & OUR_TOP_LEVEL
    }
    assert clashes == {}, f"installed distributions that also ship {sorted(OUR_TOP_LEVEL)}: {clashes}"


def test_qc_itself_claims_the_four_names():
    """The check above looks at the right thing: qc's own metadata names all four."""
    ours = [dist for dist in distributions() if (dist.metadata["Name"] or "").lower() == "qc"]
    if not ours:
        pytest.skip("qc is not installed in this environment (pip install -e .)")
    assert top_level_names(ours[0]) >= OUR_TOP_LEVEL


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
