"""Run a training recipe with Ultralytics, offline, into a run folder that says what happened.

Example::

    from training.recipe import Recipe
    from training.trainer import train

    run = train(Recipe.load("recipes/synthetic-demo.yaml"))
    run.best_weights, run.metrics["map50"]

A run folder (`$QC_HOME/runs/<name>-<time>/`) holds `recipe.yaml`, `dataset.json` (the
dataset version and content hash), `metrics.json`, `curves.png` (losses and mAP per epoch),
Ultralytics' `train/` folder with `weights/{best,last}.pt` and `results.csv`, and `data/` (the
symlinked training layout).
An interrupted run continues with `train(..., resume=run_folder)`.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from inspection.errors import ConfigError
from inspection.settings import Settings
from training.compute import ComputePlan
from training.data import TrainingData, prepare
from training.recipe import Recipe
from training.settings import TrainSettings
from training.ultralytics_env import load_ultralytics

METRIC_KEYS = {
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "map50",
    "metrics/mAP50-95(B)": "map50_95",
}


@dataclass(frozen=True)
class Run:
    folder: Path
    recipe: Recipe
    data: dict[str, Any]  # dataset.json
    metrics: dict[str, Any]  # metrics.json

    @property
    def best_weights(self) -> Path:
        return self.folder / "train" / "weights" / "best.pt"

    @property
    def last_weights(self) -> Path:
        return self.folder / "train" / "weights" / "last.pt"

    @property
    def lineage(self) -> dict[str, Any]:
        """What an exported model of this run carries in its `qc_*` metadata: where its data
        and recipe came from, and the input it expects (`qc_input`: plain, or a frame with its
        reference; the service and `qc predict` read it)."""
        from inspection.detect.reference import InputContract

        reference = self.recipe.reference
        contract = InputContract.with_reference(reference.motion) if reference else InputContract.plain()
        return {
            "data_hash": self.data["content_hash"],
            "dataset_version": self.data.get("dataset_version"),
            "data_source": self.data.get("source"),
            "recipe_hash": self.recipe.hash,
            "recipe_name": self.recipe.name,
            "train_metrics": self.metrics,
            "input": contract.to_metadata(),
        }

    @classmethod
    def open(cls, folder: str | Path) -> Run:
        folder = Path(folder)
        recipe_file = folder / "recipe.yaml"
        if not recipe_file.is_file():
            raise ConfigError(f"{folder}: not a qc run folder (no recipe.yaml); pass a folder from $QC_HOME/runs")
        dataset_file = folder / "dataset.json"
        if not dataset_file.is_file():  # written last by setup (see train)
            raise ConfigError(
                f"{folder}: training setup did not finish (no dataset.json); delete it and train again"
            )
        metrics_file = folder / "metrics.json"
        return cls(
            folder=folder,
            recipe=Recipe.load(recipe_file),
            data=json.loads(dataset_file.read_text()),
            metrics=json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
        )


def pick_device(requested: str) -> str:
    if requested != "auto":
        return requested
    from training.ultralytics_env import cuda_available

    return "0" if cuda_available() else "cpu"


def _model_source(recipe: Recipe, settings: Settings) -> str:
    model = recipe.model
    if model.endswith((".yaml", ".yml")):
        return model  # Ultralytics builds it from its own config files: no download
    if Path(model).is_file():
        return str(Path(model).resolve())
    if "@" in model:  # a registry version to fine-tune, e.g. pcb@v3 or pcb@production
        from inspection.models.registry import Registry

        entry = Registry(settings.models_dir).resolve(model)
        if entry.weights_path is None:
            raise ConfigError(
                f"model {entry.ref} was registered without its .pt weights, so it cannot be "
                "fine-tuned; register with qc export RUN --register NAME, or give a .pt path"
            )
        return str(entry.weights_path)
    raise ConfigError(
        f"model {model!r}: no such checkpoint file. Train from a model YAML "
        "(yolo26n.yaml, yolo11n.yaml, yolov8n.yaml), fine-tune a registry version (name@v3) "
        "or a local .pt; qc never downloads weights"
    )


def train(
    recipe: Recipe,
    *,
    settings: Settings | None = None,
    run_folder: Path | None = None,
    resume: Path | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
) -> Run:
    """Train `recipe` (or resume the run in `resume`) and return the finished run.
    `on_epoch(epoch, epochs, val_metrics)` is called after each epoch's validation (the loop
    records it as the job's progress)."""
    settings = settings or Settings()
    ultralytics = load_ultralytics(settings)
    if resume is not None:
        run = Run.open(resume)
        if not run.last_weights.is_file():
            raise ConfigError(f"{resume}: nothing to resume (no train/weights/last.pt)")
        model = ultralytics.YOLO(str(run.last_weights))
        plan = _compute_plan(run.recipe, settings)
        seen = plan.attach(model)
        _attach_progress(model, enabled=progress)
        _attach_epoch_callback(model, on_epoch)
        started = time.monotonic()
        model.train(resume=True)
        return _finish(run.folder, run.recipe, model, seconds=time.monotonic() - started,
                       compute={**plan.record(), "seen": seen})

    if not recipe.data:
        raise ConfigError("the recipe names no data: set data: in the recipe or pass --data")
    source = _model_source(recipe, settings)  # refuse a bad model before anything is written
    folder = run_folder or settings.runs_dir / f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=False)
    try:
        (folder / "recipe.yaml").write_text(recipe.to_yaml())
        data = prepare(recipe.data, workdir=folder / "data", references=recipe.reference is not None)
        if recipe.good_only is not None:
            from training.goodonly_data import synthesize_data

            data = synthesize_data(data, workdir=folder / "synthetic", options=recipe.good_only,
                                   seed=recipe.seed)
        if recipe.reference is not None:
            from training.reference_data import compose_data

            data = compose_data(data, workdir=folder / "composed", shift=recipe.reference.shift,
                                degrees=recipe.reference.degrees, motion=recipe.reference.motion,
                                seed=recipe.seed)
        # The whole frames (composed, for a reference recipe): export checks and int8
        # calibration read them as the exported model will see its input.
        data_record = _data_record(data)
        if recipe.tile:
            from training.tiles import tile_data

            data = tile_data(data, size=recipe.tile, overlap=recipe.tile_overlap, workdir=folder / "tiles")
        args = _train_args(recipe, data=data, folder=folder)  # builds the augmentations
        # Written last: a folder with dataset.json is a run; without, setup failed and is removed.
        (folder / "dataset.json").write_text(json.dumps(data_record, indent=2))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    model = ultralytics.YOLO(source)
    plan = _compute_plan(recipe, settings)
    seen = plan.attach(model)
    _attach_progress(model, enabled=progress)
    _attach_epoch_callback(model, on_epoch)
    started = time.monotonic()
    model.train(**args)
    return _finish(folder, recipe, model, seconds=time.monotonic() - started,
                   compute={**plan.record(), "seen": seen})


def _compute_plan(recipe: Recipe, settings: Settings) -> ComputePlan:
    """Threads and loaders for this run: QC_TRAIN_THREADS (or every usable core) and the
    recipe's `workers`, which Ultralytics alone would drop to 0 on CPU (training/compute.py)."""
    threads = (settings if isinstance(settings, TrainSettings) else TrainSettings()).train_threads
    return ComputePlan.choose(pick_device(recipe.device), threads=threads, workers=recipe.workers)


def _data_record(data: TrainingData) -> dict[str, Any]:
    return {
        "source": data.source,
        "dataset_version": data.dataset_version,
        "content_hash": data.content_hash,
        "names": data.names,
        "yaml": str(data.yaml_path),
    }


def _train_args(recipe: Recipe, *, data: TrainingData, folder: Path) -> dict[str, Any]:
    device = pick_device(recipe.device)
    args: dict[str, Any] = {
        "data": str(data.yaml_path),
        "epochs": recipe.epochs,
        "imgsz": recipe.imgsz,
        "batch": recipe.batch,
        "patience": recipe.patience,
        "seed": recipe.seed,
        "deterministic": True,
        "workers": recipe.workers,
        "device": device,
        "amp": device != "cpu",  # mixed precision is a GPU feature
        "optimizer": recipe.optimizer,
        "cos_lr": recipe.cos_lr,
        "warmup_epochs": recipe.warmup_epochs,
        "close_mosaic": recipe.close_mosaic,
        "fraction": recipe.fraction,
        "cache": recipe.cache,
        "project": str(folder),
        "name": "train",
        "exist_ok": True,
        "plots": False,  # plots fetch a font from the internet; qc draws its own reports
        "verbose": False,
        "augmentations": recipe.albumentations(),
        **recipe.geometry,
    }
    if recipe.lr0 is not None:
        args["lr0"] = recipe.lr0
    if recipe.nbs is not None:
        args["nbs"] = recipe.nbs
    if recipe.time_hours is not None:
        args["time"] = recipe.time_hours
    return args


def _attach_progress(model, *, enabled: bool) -> None:
    """One bar over all batches of all epochs, with the latest validation mAP beside it."""
    if not enabled:
        return
    state: dict[str, Any] = {}

    def on_train_start(trainer):
        total = trainer.epochs * len(trainer.train_loader)
        state["bar"] = tqdm(total=total, initial=trainer.start_epoch * len(trainer.train_loader),
                            desc="training", unit="batch", dynamic_ncols=True)

    def on_train_epoch_start(trainer):
        bar = state.get("bar")
        if bar is not None:  # a time budget makes Ultralytics re-plan the epochs after the first
            bar.total = trainer.epochs * len(trainer.train_loader)

    def on_train_batch_end(trainer):
        bar = state.get("bar")
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"epoch {trainer.epoch + 1}/{trainer.epochs} {state.get('map', '')}")

    def on_fit_epoch_end(trainer):
        metrics = trainer.metrics or {}
        if "metrics/mAP50(B)" in metrics:
            state["map"] = f"val mAP50 {metrics['metrics/mAP50(B)']:.3f}"

    def on_train_end(trainer):
        if state.get("bar") is not None:
            state["bar"].close()

    for event, callback in [("on_train_start", on_train_start), ("on_train_epoch_start", on_train_epoch_start),
                            ("on_train_batch_end", on_train_batch_end),
                            ("on_fit_epoch_end", on_fit_epoch_end), ("on_train_end", on_train_end)]:
        model.add_callback(event, callback)


def _attach_epoch_callback(model, on_epoch) -> None:
    if on_epoch is None:
        return

    def on_fit_epoch_end(trainer):
        metrics = {name: float(value) for name, value in (trainer.metrics or {}).items()
                   if isinstance(value, int | float)}
        on_epoch(trainer.epoch + 1, trainer.epochs, metrics)

    model.add_callback("on_fit_epoch_end", on_fit_epoch_end)


def _finish(folder: Path, recipe: Recipe, model, *, seconds: float, compute: dict[str, Any]) -> Run:
    trainer = model.trainer
    metrics: dict[str, Any] = {
        name: float(trainer.metrics.get(key, 0.0)) for key, name in METRIC_KEYS.items()
    }
    metrics |= {
        "epochs_completed": int(trainer.epoch + 1),
        "best_fitness": float(trainer.best_fitness or 0.0),
        "seconds": round(seconds, 1),
        "seconds_per_epoch": round(seconds / max(trainer.epoch + 1 - trainer.start_epoch, 1), 1),
        "validator": "ultralytics",
    }
    metrics["compute"] = compute  # threads and loaders in force: one run's speed explained
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    from training.report import write_training_curves

    write_training_curves(folder / "train" / "results.csv", folder / "curves.png")
    return Run.open(folder)
