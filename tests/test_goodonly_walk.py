"""A new part, walked from its golden image to its first supervised model (issue 23, item 3),
through the product as a line engineer runs it:

1. the station is added and its golden part registered (PUT /v1/stations/{id}/reference);
2. good frames of the part are collected (a folder, as the camera writes them);
3. `qc goodonly build --station ... --register default --promote` builds the good-only model
   from the station's own golden and puts it in production; the running service swaps it in;
4. the line sends frames: defective parts come back REVIEW with `anomaly` boxes (never FAIL),
   each with its anomaly map for the review page;
5. the sampler picks the anomaly frames first; they go to Label Studio (a stand-in in this
   process, holding tasks and annotations as the real one does; the real round trip is
   tests/test_loop.py) in a project labelled with the part's real classes, not `anomaly`; a
   labeller draws the true defects; the pull makes them dataset version line@v1;
6. one `qc loop` turn trains a supervised model from the recipe (a .qcgood has no weights to
   fine-tune: the recipe starts from the briefly trained synthetic-defect model, 2 epochs at
   320 px), scores both on the frozen holdout (the good-only model names none of the part's
   classes: 0 on each) and promotes it through the usual gate;
7. the service swaps to it without a restart: the next frames are judged by the supervised
   model, with real class names.

The part is the synthetic PCB of tests/test_goodonly.py at 320 px. Marked slow: a few minutes on
two loaded cores, most of it the training.
"""

from __future__ import annotations

import time
from itertools import count
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.data import versions
from inspection.data.synth.defects import CLASS_NAMES as CLASS_IDS
from inspection.data.synth.generator import make_sample
from inspection.data.synth.optics import jitter
from labeling.client import Project
from tests.service_harness import running

PART = 11
CLASS_NAMES = [CLASS_IDS[i] for i in sorted(CLASS_IDS)]  # scratch, dent, crack, particle, missing
SIZE = 320
# The recipe of the part's first supervised model: the conftest's synthetic-defect model (the
# `trained_model` fixture) as its start, trained briefly on the labelled anomaly frames.
RECIPE = """name: part11
model: {weights}
imgsz: 320
epochs: 2
batch: 8
patience: 0
workers: 1
close_mosaic: 1
warmup_epochs: 0
optimizer: AdamW
lr0: 0.002
"""


def encode(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def defective(seed: int):
    sample = make_sample(seed, width=SIZE, height=SIZE, surface="pcb", good=False, reference=True, part=PART)
    assert len(sample.detections)
    return sample


class StandInStudio:
    """Label Studio as the bridge uses it (labeling/client.py `Studio`): projects, imported
    tasks and their annotations, kept in memory."""

    url = "http://label-studio.stand-in"

    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.annotated: dict[int, list[dict[str, Any]]] = {}
        self._ids = count(1)

    def find_project(self, title: str) -> Project | None:
        return self.projects.get(title)

    def create_project(self, title: str, label_config: str) -> Project:
        self.projects[title] = Project(id=next(self._ids), title=title, label_config=label_config)
        return self.projects[title]

    def set_label_config(self, project_id: int, label_config: str) -> None:
        raise AssertionError("the project was made with the part's classes: nothing to replace")

    def import_tasks(self, project_id: int, tasks) -> list[int]:
        ids = []
        for task in tasks:
            ids.append(next(self._ids))
            self.tasks[ids[-1]] = task
        return ids

    def task_ids_by_inspection(self, project_id: int) -> dict[str, int]:
        return {task["data"]["inspection_id"]: task_id for task_id, task in self.tasks.items()}

    def annotate(self, task_id: int, result: list[dict[str, Any]]) -> None:
        self.annotated[task_id] = [{"id": 1000 + task_id, "result": result, "was_cancelled": False,
                                    "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}]

    def annotations(self, task_id: int) -> list[dict[str, Any]]:
        return self.annotated.get(task_id, [])


def regions(sample) -> list[dict[str, Any]]:
    """What a labeller draws: the defects' true boxes, with their real classes."""
    return [{"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": SIZE,
             "original_height": SIZE, "value": {"x": x1 / SIZE * 100, "y": y1 / SIZE * 100,
                                                "width": (x2 - x1) / SIZE * 100, "height": (y2 - y1) / SIZE * 100,
                                                "rotation": 0, "rectanglelabels": [name]}}
            for (x1, y1, x2, y2), name in zip(sample.detections.xyxy.tolist(), sample.detections.class_names,
                                              strict=True)]


def holdout_folder(folder: Path, seeds: range) -> Path:
    """A YOLO folder of unseen frames of the part, for the frozen holdout."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for seed in seeds:
        sample = defective(seed)
        cv2.imwrite(str(folder / "images" / f"h{seed}.png"), sample.image)
        rows = [f"{int(c)} {(x1 + x2) / 2 / SIZE:.6f} {(y1 + y2) / 2 / SIZE:.6f} {(x2 - x1) / SIZE:.6f} "
                f"{(y2 - y1) / SIZE:.6f}" for (x1, y1, x2, y2), c in
                zip(sample.detections.xyxy.tolist(), sample.detections.class_id, strict=True)]
        (folder / "labels" / f"h{seed}.txt").write_text("\n".join(rows) + "\n")
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASS_NAMES))
    (folder / "data.yaml").write_text(f"path: {folder}\ntrain: images\nval: images\nnames:\n{names}\n")
    return folder / "data.yaml"


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


@pytest.mark.slow
def test_a_new_part_goes_from_its_golden_image_to_a_good_only_model_to_a_supervised_one_through_the_gate(
        trained_model, tmp_path, monkeypatch):
    from inspection.models.registry import Registry
    from inspection.store.jobs import JobState
    from labeling.bridge import Bridge
    from labeling.settings import LabelSettings
    from qc.cli import app
    from training.loop import LoopSettings, run_turn

    home = tmp_path / "home"
    monkeypatch.setenv("QC_HOME", str(home))
    for variable in ("QC_DATABASE_URL", "QC_CONFIG", "QC_MODEL_NAME"):
        monkeypatch.delenv(variable, raising=False)
    golden = make_sample(1, width=SIZE, height=SIZE, surface="pcb", good=True, reference=True, part=PART).reference
    assert golden is not None

    with running(home, None, pass_sample_rate=1.0, model_poll_s=0.3, require_model=False) as service:
        # 1. The station and its golden part.
        station = service.add_station(station="part11-cam1")
        registered = service.client.put(f"/v1/stations/{station}/reference", content=encode(golden),
                                        headers={**service.admin, "Content-Type": "image/png"})
        assert registered.status_code in (200, 201), registered.text

        # 2. Good frames, as the camera writes them.
        good = tmp_path / "good-frames"
        good.mkdir()
        rng = np.random.default_rng(7)
        for n in range(24):
            cv2.imwrite(str(good / f"good{n:02d}.png"), jitter(golden, rng))

        # 3. The good-only model, from the station's own golden, into production.
        built = CliRunner().invoke(app, ["goodonly", "build", "--station", station, "--good", str(good),
                                         "--out", str(tmp_path / "part11.qcgood"), "--register", "default",
                                         "--promote"])
        assert built.exit_code == 0, built.output
        registry = Registry(service.settings.models_dir)
        assert registry.production("default").goodonly
        wait_for(lambda: service.state.manager.current is not None, 30, "the service loading the good-only model")

        # 4. The line: defective parts are REVIEW with anomaly boxes, never FAIL.
        frames = {}
        for seed in range(100, 130):
            sample = defective(seed)
            answer = service.inspect(station, encode(sample.image), kind="png")
            assert answer.status_code == 200, answer.text
            frames[answer.json()["id"]] = (sample, answer.json())
        verdicts = [body["verdict"] for _, body in frames.values()]
        assert "FAIL" not in verdicts and verdicts.count("REVIEW") >= 20, verdicts
        flagged = [i for i, (_, body) in frames.items() if body["verdict"] == "REVIEW"]
        assert all({d["class"] for d in frames[i][1]["detections"]} == {"anomaly"} for i in flagged)
        assert all(body["model"] == {"name": "default", "version": "v1"} for _, body in frames.values())
        heat = service.client.get(f"/v1/inspections/{flagged[0]}/anomaly.png", headers=service.admin)
        assert heat.status_code == 200 and heat.headers["content-type"] == "image/png"

        # 5. Labelling: the anomaly frames go out with the part's real classes, come back labelled.
        studio = StandInStudio()
        settings = LabelSettings(home=home, database_url="", label_classes=",".join(CLASS_NAMES))
        bridge = Bridge(settings, studio=studio, db=service.state.db)
        project, _ = bridge.setup()
        for name in CLASS_NAMES:
            assert f'value="{name}"' in project.label_config
        assert 'value="anomaly"' not in project.label_config
        picks = bridge.sample(queue=True)
        assert len(picks) >= 15 and all(pick.inspection_id in frames for pick in picks)
        reasons = [[reason["reason"] for reason in pick.reasons] for pick in picks]
        policy = bridge.policy()  # the shipped one
        reserved = int(next(s.share for s in policy.strategies if s.name == "anomaly") * policy.budget_per_station_day)
        assert sum(found[0] == "anomaly" for found in reasons) >= reserved >= 1, reasons  # its reserved share, at least
        assert all("anomaly" in found for pick, found in zip(picks, reasons, strict=True)
                   if pick.inspection_id in flagged)
        pushed = bridge.push().pushed
        assert sorted(pushed) == sorted(pick.inspection_id for pick in picks)
        for inspection_id, task_id in pushed.items():
            assert studio.tasks[task_id]["predictions"][0]["result"] == []  # no "anomaly" label to correct
            studio.annotate(task_id, regions(frames[inspection_id][0]))
        labelled = bridge.pull(fetch=True)  # the stand-in is Label Studio here (no QC_LABEL_STUDIO_URL)
        assert labelled is not None and labelled.ref == "line@v1"
        assert set(labelled.names.values()) == set(CLASS_NAMES)

        # 6. One loop turn: a supervised model from the recipe, gated against the good-only one.
        holdout = versions.import_dataset(holdout_folder(tmp_path / "holdout-frames", range(500, 512)),
                                          format="yolo", name="holdout", test_fraction=0.95, val_fraction=0.0,
                                          root=service.settings.datasets_dir)
        registry.set_holdout("default", holdout.ref)
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(RECIPE.format(weights=trained_model.weights))
        job = run_turn(LoopSettings(home=home, database_url="", loop_recipe=str(recipe), loop_min_new=10,
                                    loop_auto_promote=True))
        assert job.state is JobState.PROMOTED, job.error or job.result.get("gate")
        result = job.result
        assert result["candidate"] == "default@v2" and result["production"] == "default@v2"
        assert result["trained_from"].endswith("best.pt")  # a .qcgood has no weights to fine-tune: the recipe's
        before = result["before"]
        assert set(before["per_class"]) == set(CLASS_NAMES)
        assert all(values["recall"] == 0 for values in before["per_class"].values())
        assert "anomaly" in before["agnostic"]["per_class"]  # what the good-only model did find, for people
        assert "mAP50-95" in result["gate"] and "REFUSED" not in result["gate"]
        supervised = registry.production("default")
        assert not supervised.goodonly and supervised.card["dataset_version"] == "line@v1"

        # 7. The service swaps to it; the part is now judged with its real classes.
        wait_for(lambda: service.state.manager.current.version == "v2", 30, "the swap to the supervised model")
        after = service.inspect(station, encode(defective(900).image), kind="png").json()
        assert after["model"] == {"name": "default", "version": "v2"}
        assert {d["class"] for d in after["detections"]} <= set(CLASS_NAMES)
