"""Training runs offline, applies the recipe's augmentations inside Ultralytics, writes a run
folder that says what happened, and resumes after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from inspection.errors import ConfigError
from training.recipe import Recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from inspection.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("tiny"), n=24, seed=3, width=160, height=160).data_yaml


def tiny_recipe(data, **changes) -> Recipe:
    base = {"name": "tiny", "data": str(data), "imgsz": 160, "epochs": 1, "batch": 8, "workers": 0,
            "patience": 0, "warmup_epochs": 0, "close_mosaic": 0}
    return Recipe.model_validate({**base, **changes})


def test_the_recipes_albumentations_run_during_training(qc_home, settings, tiny_data, monkeypatch):
    """A transform of the recipe is called by Ultralytics' data loader while it trains
    (workers=0 keeps the loader in this process, where the call can be counted)."""
    import albumentations as A

    from training.trainer import train

    calls = {"noise": 0}
    original = A.GaussNoise.apply

    def counting(self, *args, **kwargs):
        calls["noise"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(A.GaussNoise, "apply", counting)
    recipe = tiny_recipe(tiny_data, augment=[{"name": "GaussNoise", "p": 1.0, "std_range": [0.05, 0.1]}])
    run = train(recipe, settings=settings, progress=False)
    assert calls["noise"] > 0

    # The run folder says what was trained on what, and how well.
    saved = yaml.safe_load((run.folder / "recipe.yaml").read_text())
    assert saved["augment"][0]["name"] == "GaussNoise"
    dataset = json.loads((run.folder / "dataset.json").read_text())
    assert len(dataset["content_hash"]) == 64 and dataset["names"]["0"] == "scratch"
    assert {"map50", "map50_95", "epochs_completed", "seconds"} <= set(run.metrics)
    assert run.best_weights.is_file()
    # Ultralytics' label cache went into the run's own layout, not beside the source labels.
    assert not list(tiny_data.parent.rglob("*.cache"))


def test_an_interrupted_run_resumes_where_it_stopped(qc_home, settings, tiny_data, monkeypatch):
    from training import trainer

    attach = trainer._attach_progress

    def interrupt_after_first_epoch(model, *, enabled):
        attach(model, enabled=enabled)

        def stop(t):
            if t.epoch == 0:
                raise KeyboardInterrupt("power cut")

        model.add_callback("on_model_save", stop)

    monkeypatch.setattr(trainer, "_attach_progress", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(tiny_recipe(tiny_data, epochs=2), settings=settings, progress=False)
    monkeypatch.setattr(trainer, "_attach_progress", attach)
    [folder] = settings.runs_dir.iterdir()
    run = trainer.train(Recipe(), settings=settings, resume=folder, progress=False)
    assert run.metrics["epochs_completed"] == 2


def test_a_run_uses_the_threads_and_loaders_it_is_given_and_records_them(qc_home, tiny_data):
    """Ultralytics alone sets torch to cores - 1 threads and drops the loaders to 0 on CPU; qc's
    plan is applied after it and read back from torch and the loader while training runs."""
    from training.compute import usable_cores
    from training.settings import TrainSettings
    from training.trainer import train

    recipe = tiny_recipe(tiny_data, workers=1, device="cpu")
    # By default every core the process may use goes to torch (Ultralytics: one fewer).
    run = train(recipe, settings=TrainSettings(home=qc_home), progress=False)
    assert run.metrics["compute"]["seen"] == {"torch_threads": usable_cores(), "loader_workers": 0}
    # One torch thread leaves the other cores to the recipe's loader process.
    run = train(recipe, settings=TrainSettings(home=qc_home, train_threads=1), progress=False)
    compute = run.metrics["compute"]
    loaders = min(1, usable_cores() - 1)
    assert compute["seen"] == {"torch_threads": 1, "loader_workers": loaders}
    assert compute["torch_threads"] == 1 and compute["loader_workers"] == loaders and compute["device"] == "cpu"
    saved = json.loads((run.folder / "metrics.json").read_text())
    assert saved["compute"] == compute


def test_recipes_refuse_transforms_that_could_cut_a_defect_out(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("augment:\n  - {name: RandomCrop, p: 1, height: 10, width: 10}\n")
    with pytest.raises(ConfigError, match=r"RandomCrop.*cut a defect out"):
        Recipe.load(path)
    path.write_text("epochs: 3\nepochz: 4\n")
    with pytest.raises(ConfigError, match="epochz"):
        Recipe.load(path)


def test_weights_are_never_downloaded(qc_home, settings, tiny_data):
    from training.trainer import train

    with pytest.raises(ConfigError, match="never downloads weights"):
        train(tiny_recipe(tiny_data, model="yolo26n.pt"), settings=settings, progress=False)


@pytest.mark.slow
def test_export_registers_and_promotes_what_it_wrote(qc_home, trained_model, tmp_path):
    from typer.testing import CliRunner

    from inspection.models.registry import Registry
    from qc.cli import app

    runner = CliRunner()
    exported = runner.invoke(app, ["export", str(trained_model.weights), "--out-dir", str(tmp_path / "out"),
                                   "--imgsz", "320", "--no-check", "--register", "pcb", "--promote"])
    assert exported.exit_code == 0, exported.output
    registry = Registry(qc_home / "models")
    assert registry.production_version("pcb") == "v1"
    alone = runner.invoke(app, ["export", str(trained_model.weights), "--out-dir", str(tmp_path / "again"),
                                "--no-check", "--promote"])
    assert isinstance(alone.exception, ConfigError) and "--promote needs --register" in str(alone.exception)


def test_the_int8_model_is_served_when_it_holds_within_a_point_of_fp32():
    from qc.commands.train import serving_choice

    paths = {"fp32": "m.onnx", "int8": "m-int8.onnx"}
    close = {"fp32": {"map50_95": 0.364}, "int8": {"map50_95": 0.356}}
    far = {"fp32": {"map50_95": 0.364}, "int8": {"map50_95": 0.35}}
    assert serving_choice("auto", paths, close)[0] == "int8"
    chosen, reason = serving_choice("auto", paths, far)
    assert chosen == "fp32" and "0.3500" in reason
    assert serving_choice("auto", {"fp32": "m.onnx"}, None)[0] == "fp32"
    assert serving_choice("auto", paths, None) == ("fp32", "the int8 export was not checked (no --check data)")
    assert serving_choice("fp32", paths, close)[0] == "fp32"
    with pytest.raises(ConfigError, match="--fp16"):
        serving_choice("fp16", paths, close)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_in_the_repository_loads(path):
    recipe = Recipe.load(path)
    assert recipe.name == path.stem
