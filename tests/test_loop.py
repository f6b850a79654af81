"""One turn of the labeling loop, end to end, as a specification: the service inspects frames; a
reviewer marks a false alarm and a missed defect through the review API; the frames go to a
real Label Studio, where a labeller answers them through its API; `qc loop` (a separate
process, as an engineer or a timer runs it) pulls the annotations into the next dataset
version, fine-tunes the production model's weights with its recipe, scores both on the frozen
holdout, gates and promotes; the running service swaps the new model in while frames keep
coming, and none of them fails. Then the correction is followed from the review to the dataset
version and the model trained on it.

The production model is the `trained_model` fixture (conftest.py) with its `weights.pt`; the
fine-tune is 1 epoch at 320 px on ~180 synthetic images (a few minutes on 2 loaded cores)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inspection.data import versions
from inspection.data.synth import write_dataset
from inspection.models.registry import Registry
from inspection.settings import Settings
from tests.service_harness import running

REPO = Path(__file__).resolve().parents[1]
SIZE = 320
# The trained_model fixture is briefly trained: its scores sit around 0.0016, so a station
# whose thresholds are just under that flags every frame and records its boxes.
FLAG_ALL = {"default": {"fail_conf": 0.0015, "review_conf": 0.0015}}
# The recipe trained_model was made with (conftest.py), as a production card keeps it.
PRODUCTION_RECIPE = {"name": "test", "model": "yolo26n.yaml", "imgsz": SIZE, "epochs": 5, "batch": 8,
                     "patience": 0, "workers": 1, "close_mosaic": 1, "warmup_epochs": 1,
                     "optimizer": "AdamW", "lr0": 0.002}


def truth(data: Path, image: Path) -> list[tuple[str, tuple[float, float, float, float]]]:
    """The synthetic frame's ground-truth boxes (class name, xyxy in pixels)."""
    names = ["scratch", "dent", "crack", "particle", "missing"]
    label = data / "labels" / image.parent.name / f"{image.stem}.txt"
    boxes = []
    for line in label.read_text().split("\n"):
        if line.strip():
            c, cx, cy, w, h = (float(v) for v in line.split())
            boxes.append((names[int(c)], ((cx - w / 2) * SIZE, (cy - h / 2) * SIZE,
                                          (cx + w / 2) * SIZE, (cy + h / 2) * SIZE)))
    return boxes


def as_regions(boxes) -> list[dict]:
    """What a labeller draws in Label Studio: RectangleLabels in percent of the image."""
    return [{"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": SIZE,
             "original_height": SIZE, "value": {"x": x1 / SIZE * 100, "y": y1 / SIZE * 100,
                                                "width": (x2 - x1) / SIZE * 100, "height": (y2 - y1) / SIZE * 100,
                                                "rotation": 0, "rectanglelabels": [name]}}
            for name, (x1, y1, x2, y2) in boxes]


@pytest.fixture
def production(trained_model, tmp_path) -> Path:
    """A QC_HOME whose production model is trained_model with its weights and recipe, trained
    on line@v1 (the synthetic set it learnt from), with a frozen holdout of unseen parts."""
    home = tmp_path / "home"
    settings = Settings(home=home)
    settings.ensure_dirs()
    base = versions.import_dataset(trained_model.data_yaml, format="yolo", name="line", root=settings.datasets_dir)
    unseen = tmp_path / "holdout-parts"
    write_dataset(unseen, n=24, seed=303, width=SIZE, height=SIZE, defects=(3, 6))
    holdout = versions.import_dataset(unseen / "data.yaml", format="yolo", name="holdout",
                                      test_fraction=0.95, val_fraction=0.0, root=settings.datasets_dir)
    registry = Registry(settings.models_dir)
    card = {"source": "tests: trained_model", "names": {str(i): n for i, n in enumerate(
        ["scratch", "dent", "crack", "particle", "missing"])}, "dataset_version": base.ref,
        "recipe": {**PRODUCTION_RECIPE, "data": base.ref}}
    entry = registry.add("default", trained_model.raw, card=card, weights=trained_model.weights)
    registry.set_production("default", entry.version)
    registry.set_holdout("default", holdout.ref)
    return home


@pytest.mark.slow
@pytest.mark.labelstudio
def test_reviewed_frames_come_back_as_a_promoted_model_swapped_in_without_a_failed_request(
        production, label_studio, tmp_path, monkeypatch):
    from labeling.bridge import Bridge
    from labeling.settings import LabelSettings

    env = {"QC_HOME": str(production), "QC_LABEL_STUDIO_URL": label_studio.url,
           "QC_LABEL_STUDIO_TOKEN": label_studio.token, "QC_LABEL_PROJECT": f"loop-{tmp_path.name[-16:]}"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("QC_DATABASE_URL", raising=False)
    frames = tmp_path / "line-frames"
    write_dataset(frames, n=24, seed=404, width=SIZE, height=SIZE, defects=(1, 4))
    images = sorted(frames.glob("images/*/*.jpg"))

    with running(production, None, pass_sample_rate=1.0, model_poll_s=0.5) as service:
        # 1. The line: every frame is inspected and flagged by the production model.
        station = service.add_station(FLAG_ALL)
        inspected = {}
        for image in images:
            response = service.inspect(station, image.read_bytes())
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model"] == {"name": "default", "version": "v1"} and body["verdict"] != "PASS"
            inspected[body["id"]] = (image, body)

        # 2. A reviewer: a good part the model failed is a false alarm; on a defective part the
        # model's boxes are false alarms and the defect it missed is drawn.
        reviewer = service.key("reviewer")
        good = next(i for i, (image, _) in inspected.items() if not truth(frames, image))
        bad = next(i for i, (image, _) in inspected.items() if truth(frames, image))
        response = service.client.post(f"/v1/inspections/{good}/reviews", headers=reviewer,
                                       json={"decision": "false_alarm", "note": "clean part"})
        assert response.status_code in (200, 201), response.text
        missed_class, missed_box = truth(frames, inspected[bad][0])[0]
        boxes = [{"decision": "false_alarm", "detection": n} for n in range(len(inspected[bad][1]["detections"]))]
        boxes.append({"decision": "missed", "class": missed_class, "xyxy": list(missed_box)})
        response = service.client.post(f"/v1/inspections/{bad}/reviews", headers=reviewer,
                                       json={"decision": "defect", "boxes": boxes})
        assert response.status_code in (200, 201), response.text

        # 3. Push to Label Studio; a labeller accepts the reviewer's boxes on the two reviewed
        # frames and draws the truth on the others.
        bridge = Bridge(LabelSettings(home=production), db=service.state.db)
        bridge.setup()
        pushed = bridge.push(list(inspected)).pushed
        assert sorted(pushed) == sorted(inspected)
        for inspection_id, task_id in pushed.items():
            task = bridge.studio.client.tasks.get(id=task_id)
            if inspection_id in (good, bad):
                [prediction] = task.predictions
                assert prediction.model_version.startswith("review:")
                bridge.studio.annotate(task_id, list(prediction.result))
            else:
                bridge.studio.annotate(task_id, as_regions(truth(frames, inspected[inspection_id][0])))

        # 4. qc loop in a process of its own while the line keeps sending frames.
        answers: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def line() -> None:
            n = 0
            while not stop.is_set():
                response = service.inspect(station, images[n % len(images)].read_bytes())
                answers.append((response.status_code, response.json().get("model", {}).get("version")
                                if response.status_code == 200 else response.text))
                n += 1
                stop.wait(0.25)

        flow = threading.Thread(target=line, daemon=True)
        flow.start()
        try:
            turn = subprocess.run(
                [sys.executable, "-m", "qc", "loop", "--min-new", "20", "--epochs", "1", "--auto-promote"],
                cwd=REPO, env={**os.environ, **env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                timeout=1800, check=False)
            assert turn.returncode == 0, turn.stderr[-3000:] + turn.stdout[-3000:]
            job = json.loads(turn.stdout)
            assert job["state"] == "promoted", job
            deadline = time.monotonic() + 60  # the watcher polls every 0.5 s
            while time.monotonic() < deadline and not any(v == "v2" for _, v in answers[-3:]):
                time.sleep(0.5)
            time.sleep(1.0)  # a few more frames on the new model
        finally:
            stop.set()
            flow.join(30)
        failed = [a for a in answers if a[0] != 200]
        assert failed == [] and answers[-1][1] == "v2", answers[-5:]
        assert {v for _, v in answers} == {"v1", "v2"}

        # The reviewer's correction, followed from the frame to the model that learnt from it.
        followed = service.client.get(f"/v1/inspections/{bad}/trail", headers=reviewer).json()
        assert [r["decision"] for r in followed["reviews"]] == ["defect"]
        [task] = followed["labeling"]
        assert (task["state"], task["dataset_ref"], task["labelstudio_task_id"]) == ("pulled", "line@v2", pushed[bad])
        assert [d["ref"] for d in followed["datasets"]] == ["line@v2"] and followed["datasets"][0]["boxes"] == 1
        assert [(m["ref"], m["production"], m["loop_job"]) for m in followed["models"]] == [
            ("default@v2", True, job["job"])]

    # 5. What the turn made, followed from the review: the dataset version holds the corrected
    # boxes with their lineage, and the promoted model names that version and the job.
    result = job["result"]
    dataset = versions.open_version(result["dataset"], root=Settings(home=production).datasets_dir)
    assert dataset.ref == "line@v2" and dataset.manifest["source"]["base"] == "line@v1"
    labelled = {image.lineage.get("inspection_id"): image for image in dataset.images()}
    assert set(inspected) <= set(labelled) and result["new_images"] == len(inspected)
    assert len(labelled[good].detections) == 0  # the false alarm: a clean part
    assert labelled[bad].detections.class_names == [missed_class]  # only the drawn defect
    assert labelled[bad].detections.xyxy[0].tolist() == pytest.approx(list(missed_box), abs=0.01)
    lineage = labelled[bad].lineage
    assert lineage["station"] == station and lineage["labelstudio_task_id"] == pushed[bad]
    assert lineage["labelstudio_annotation_id"] and lineage["model"] == "default@v1"

    registry = Registry(Settings(home=production).models_dir)
    promoted = registry.production("default")
    assert promoted.version == "v2" and result["candidate"] == "default@v2"
    assert promoted.card["dataset_version"] == "line@v2" and promoted.card["fine_tuned_from"] == "default@v1"
    assert promoted.card["loop_job"] == job["job"] and promoted.weights_path is not None
    assert promoted.card["recipe"]["epochs"] == 1 and promoted.card["recipe"]["lr0"] == PRODUCTION_RECIPE["lr0"]
    assert set(result["before"]["per_class"]) == set(result["after"]["per_class"]) != set()
    assert result["holdout"] == "holdout@v1" and "mAP50-95" in result["gate"]
    for change in result["changed_verdicts"]:
        assert change["inspection"] in inspected and change["before"] != change["after"]
    assert np.isfinite(result["after"]["map50_95"])


# -- the engineer's action: POST /v1/loop/run ----------------------------------------------


@pytest.fixture
def slow_label_studio():
    """A Label Studio that accepts connections and never answers (overloaded, or a proxy in
    front of a dead one): the turn's pull waits for QC_LABEL_TIMEOUT_S, so the turn runs long
    enough to be seen running."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


@pytest.mark.slow
def test_an_engineer_starts_a_turn_on_the_api_it_refuses_a_second_and_survives_a_service_restart(
        untrained_model, slow_label_studio, tmp_path, monkeypatch):
    for key, value in {"QC_LABEL_STUDIO_URL": slow_label_studio, "QC_LABEL_STUDIO_TOKEN": "t" * 40,
                       "QC_LABEL_TIMEOUT_S": "8", "QC_LABEL_DATASET": "line"}.items():
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    with running(home, untrained_model, pass_sample_rate=1.0) as first:
        from inspection.store.labels import LabelStore

        # A frame pushed to Label Studio earlier, whose annotation the turn will ask for.
        frame_id = first.inspect(first.add_station()).json()["id"]
        labels = LabelStore(first.state.db)
        labels.enqueue("qc-defects", [frame_id])
        labels.claim("qc-defects", limit=1)
        labels.pushed("qc-defects", {frame_id: 1})
        engineer, reviewer = first.key("engineer"), first.key("reviewer")
        assert first.client.post("/v1/loop/run").status_code == 401
        refused = first.client.post("/v1/loop/run", headers=reviewer)
        assert refused.status_code == 403 and "engineer" in refused.json()["detail"]

        started = first.client.post("/v1/loop/run", headers=engineer, json={"min_new": 5, "auto_promote": False})
        assert started.status_code == 202, started.text
        job = started.json()
        assert job["state"] == "running" and job["params"]["asked"] == {"min_new": 5, "auto_promote": False}
        again = first.client.post("/v1/loop/run", headers=engineer, json={})
        assert again.status_code == 409 and job["id"] in again.json()["detail"]
        # The child adopts the job (its own process) and is pulling from the silent Label Studio.
        worker = wait_for(lambda: (j := first.client.get(f"/v1/loop/jobs/{job['id']}", headers=engineer).json())
                          ["step"] == "pull" and j, 60, "the child taking up the job")
        from inspection.store.jobs import JobStore

        owner = JobStore(first.state.db).get(worker["id"]).owner  # host:pid of the worker
        pid = int(owner.rsplit(":", 1)[1])
        assert pid != os.getpid()

    os.kill(pid, 0)  # the service stopped; the turn did not
    with running(home, None) as second:
        engineer = second.key("engineer")
        seen = second.client.get(f"/v1/loop/jobs/{job['id']}", headers=engineer).json()
        assert seen["state"] == "running" and seen["alive"] and seen["created_by"].startswith("key:")
        assert second.client.post("/v1/loop/run", headers=engineer).status_code == 409
        ended = wait_for(lambda: (j := second.client.get(f"/v1/loop/jobs/{job['id']}", headers=engineer).json())
                         ["state"] != "running" and j, 120, "the turn ending")
        # Label Studio never answered: the turn pulled what the webhook had (nothing) and found
        # no labelled frames, so there was nothing to train.
        assert ended["state"] == "skipped", ended
        assert list(ended["steps"]) == ["pull", "check"] and ended["params"]["min_new"] == 5
        assert "did not answer" in ended["steps"]["pull"]["note"] and "no version yet" in ended["result"]["note"]
        assert [j["id"] for j in second.client.get("/v1/loop/jobs", headers=engineer).json()] == [job["id"]]
        assert second.client.get("/v1/loop/jobs/nope", headers=engineer).status_code == 404
        log = (home / "logs" / f"loop-{job['id']}.log").read_text()
        assert "pulling annotations" in log


# -- the Loop page -------------------------------------------------------------------------

PROMOTED = {
    "candidate": "default@v2", "production_before": "default@v1", "production": "default@v2", "dataset": "line@v2",
    "new_images": 24, "holdout": "holdout@v1",
    "before": {"map50": 0.41, "map50_95": 0.2, "per_class": {"dent": {"ap50": 0.5, "precision": 0.6, "recall": 0.4},
                                                             "crack": {"ap50": 0.3, "precision": 0.5, "recall": 0.5}}},
    "after": {"map50": 0.52, "map50_95": 0.26, "per_class": {"dent": {"ap50": 0.6, "precision": 0.7, "recall": 0.55},
                                                            "crack": {"ap50": 0.25, "precision": 0.5, "recall": 0.5}}},
    "gate": "metric  candidate  production\nmAP50-95  0.2600  0.2000  ok",
}


def sign_in(service, name: str, role: str) -> None:
    """Create the user and sign in through the form, asking to come back to /loop."""
    from inspection.store.users import UserStore

    UserStore(service.state.db).add(name, password="a long enough password", role=role, display_name=name.title())
    form = service.client.get("/login?next=/loop")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    response = service.client.post("/login", data={"name": name, "password": "a long enough password",
                                                   "csrf": token, "next": "/loop"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/loop"


def page_csrf(service) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', service.client.get("/loop").text).group(1)


def test_the_loop_page_shows_a_turns_metrics_before_and_after_and_the_frames_whose_verdict_changed(
        start, monkeypatch):
    from inspection.store.jobs import JobKind, JobState, JobStore

    service = start(pass_sample_rate=1.0)
    assert service.client.get("/loop", follow_redirects=False).headers["location"] == "/login?next=/loop"
    frame_id = service.inspect(service.add_station()).json()["id"]
    jobs = JobStore(service.state.db)
    done = jobs.start(JobKind.LOOP, params={}, created_by="lee")
    jobs.progress(done.id, step="pull", message="pulled", outputs={"version": "line@v2"})
    jobs.finish(done.id, JobState.PROMOTED, result={**PROMOTED, "changed_verdicts": [
        {"inspection": frame_id, "station": "st-1", "before": "FAIL", "after": "PASS"}]})

    sign_in(service, "lee", "engineer")
    csrf = page_csrf(service)
    page = service.client.get("/loop")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "Refresh" not in page.headers  # nothing running: no reloading
    text = page.text
    assert done.id in text and "promoted" in text and "line@v2" in text and "default@v2" in text
    assert "0.500 → 0.600" in text and "(+0.100)" in text  # dent's AP50 before and after
    assert 'class="down">(-0.050)' in text  # crack's AP50 fell: shown as a drop
    assert f'href="/review/image/{frame_id}"' in text and ">FAIL</span> → <span class=\"verdict PASS\">PASS" in text
    assert service.client.get(f"/review/image/{frame_id}").status_code == 200  # the link opens for this session
    assert "http://" not in text and "https://" not in text  # nothing from elsewhere

    # A turn running (qc loop from a shell): the page follows it and refuses a second.
    running = jobs.start(JobKind.LOOP, params={}, created_by="ops")
    jobs.progress(running.id, step="train", message="epoch 3/10")
    page = service.client.get("/loop")
    assert page.headers["Refresh"] == "5" and "epoch 3/10" in page.text and "disabled" in page.text
    refused = service.client.post("/loop/run", data={"csrf": csrf}, follow_redirects=False)
    assert refused.status_code == 303 and refused.headers["location"] == f"/loop?busy=1&job={running.id}"
    assert "already running" in service.client.get(refused.headers["location"]).text
    assert service.client.post("/loop/run", data={"csrf": "forged"}).status_code == 403
    assert jobs.active(JobKind.LOOP).id == running.id  # nothing else started
    assert "이미 실행 중" in service.client.get("/loop?busy=1&lang=ko").text


def test_the_loop_page_is_for_engineers(start):
    service = start()
    sign_in(service, "kim", "reviewer")
    assert service.client.get("/review").status_code == 200
    refused = service.client.get("/loop")
    # A page, not the API's JSON: why, in words, and the pages a reviewer may open instead.
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
    assert "The Loop page is for engineers and admins." in refused.text
    assert 'href="/review"' in refused.text and 'href="/dashboard"' in refused.text
    assert 'href="/loop"' not in refused.text
    assert "엔지니어와 관리자만" in service.client.get("/loop?lang=ko").text
    posted = service.client.post("/loop/run?lang=en", data={"csrf": "whatever"})
    assert posted.status_code == 403 and "engineers and admins" in posted.text
    assert service.client.post("/v1/loop/run", headers={"X-CSRF-Token": "x"}).status_code == 403


@pytest.mark.slow
def test_run_a_turn_from_the_page(start, monkeypatch):
    monkeypatch.setenv("QC_LABEL_DATASET", "line")
    service = start()
    sign_in(service, "lee", "engineer")
    csrf = page_csrf(service)
    started = service.client.post("/loop/run", data={"csrf": csrf, "promote": "wait"}, follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"].startswith("/loop?job=")
    job_id = started.headers["location"].split("=", 1)[1]
    ended = wait_for(lambda: "skipped" in (page := service.client.get(f"/loop?job={job_id}").text) and page,
                     120, "the turn ending")
    assert "no version yet" in ended
    engineer = service.key("engineer")
    job = service.client.get(f"/v1/loop/jobs/{job_id}", headers=engineer).json()
    assert job["created_by"] == "lee" and job["params"]["via"] == "page" and job["params"]["auto_promote"] is False


# -- what a turn lacks, in one answer (qc loop --check, the Loop page) ------------------------


@pytest.fixture
def loop_env(qc_home, monkeypatch) -> Path:
    """A fresh QC_HOME with none of the loop's settings from the caller's environment."""
    for variable in ("QC_LOOP_RECIPE", "QC_LOOP_MIN_NEW", "QC_LOOP_EPOCHS", "QC_LABEL_STUDIO_URL",
                     "QC_LABEL_STUDIO_TOKEN", "QC_LABEL_DATASET", "QC_MODEL_NAME"):
        monkeypatch.delenv(variable, raising=False)
    return qc_home


def qc(*args: str):
    from typer.testing import CliRunner

    from qc.cli import app

    return CliRunner().invoke(app, list(args))


def onnx_only(model: Path) -> None:
    """As an engineer registers a model trained elsewhere: the ONNX file alone, no .pt."""
    added = qc("models", "add", str(model), "--name", "default", "--promote")
    assert added.exit_code == 0, added.output


def test_qc_loop_check_on_a_fresh_home_names_every_missing_piece_and_its_fix_in_one_answer(loop_env):
    checked = qc("loop", "--check")
    assert checked.exit_code == 1, checked.output
    text = checked.output
    for missing, fix in (("model default has no production version", "qc models add model.onnx --name default"),
                         ("QC_LOOP_RECIPE is not set", "export QC_LOOP_RECIPE=recipes/"),
                         ("no frozen holdout", "qc models holdout default DATASET@VERSION"),
                         ("dataset line has no version yet", "qc label pull")):
        assert "MISSING" in text.split(missing)[0].rsplit("\n", 1)[-1], text  # marked on its own line
        assert fix in text.split(missing, 1)[1].split("\n")[1], text  # the fix on the next line
    assert "Label Studio is not configured" in text and "not ready: 4 missing pieces" in text

    as_json = json.loads(qc("loop", "--check", "--json").output)
    states = {need["item"]: need["state"] for need in as_json["needs"]}
    assert as_json["ready"] is False and states == {
        "training": "met", "model": "missing", "recipe": "missing", "weights": "note", "holdout": "missing",
        "label_studio": "note", "dataset": "missing"}
    assert all(need["fix"] for need in as_json["needs"] if need["state"] == "missing")


def test_with_everything_in_place_the_check_is_ready_and_says_an_onnx_only_model_is_trained_from_its_recipe(
        loop_env, untrained_model, tmp_path, monkeypatch):
    onnx_only(untrained_model)
    write_dataset(tmp_path / "frames", n=8, seed=5, width=SIZE, height=SIZE, defects=(1, 3))
    versions.import_dataset(tmp_path / "frames" / "data.yaml", format="yolo", name="line",
                            root=Settings().datasets_dir)
    assert qc("models", "holdout", "default", "line@v1").exit_code == 0
    monkeypatch.setenv("QC_LOOP_RECIPE", str(REPO / "recipes" / "synthetic-demo.yaml"))
    checked = qc("loop", "--check", "--min-new", "8")
    assert checked.exit_code == 0, checked.output
    assert "ready: a turn can run" in checked.output
    assert "default@v1 was registered without its .pt weights: the turn trains the recipe's model " \
           "(yolo26n.yaml)" in checked.output
    assert "8 labelled images in line@v1" in checked.output


def test_a_turn_that_would_train_names_everything_it_lacks_at_once(loop_env, untrained_model, tmp_path):
    from training.loop import LoopSettings, run_turn

    onnx_only(untrained_model)
    write_dataset(tmp_path / "frames", n=6, seed=6, width=SIZE, height=SIZE, defects=(1, 3))
    versions.import_dataset(tmp_path / "frames" / "data.yaml", format="yolo", name="line",
                            root=Settings().datasets_dir)
    said: list[str] = []
    turn = run_turn(LoopSettings(loop_min_new=6), say=said.append)
    # The labels are there (line@v1, the dataset qc label pull writes when nothing names one),
    # so the turn goes as far as training, and stops there once, naming both pieces it lacks.
    assert turn.state.value == "failed" and list(turn.progress["steps"]) == ["pull", "check"]
    assert "QC_LOOP_RECIPE" in turn.error and "qc models holdout default" in turn.error, turn.error


def test_the_loop_page_lists_what_a_turn_lacks_with_the_commands_that_fix_it(start, monkeypatch):
    monkeypatch.delenv("QC_LOOP_RECIPE", raising=False)
    monkeypatch.delenv("QC_LABEL_STUDIO_URL", raising=False)
    service = start()
    sign_in(service, "lee", "engineer")
    page = service.client.get("/loop")
    assert page.status_code == 200
    needs = page.text.split('id="needs"', 1)[1].split("</section>", 1)[0]
    assert 'data-ready="false"' in page.text and "What a turn still needs" in needs
    assert 'data-item="holdout"' in needs and "qc models holdout default DATASET@VERSION" in needs
    assert 'data-item="recipe"' in needs and "QC_LOOP_RECIPE" in needs
    assert 'data-item="dataset"' in needs and "qc label pull" in needs
    assert 'data-item="weights"' in needs  # the harness registers the ONNX file alone
    korean = service.client.get("/loop?lang=ko").text
    assert "학습 회차에 아직 필요한 것" in korean
    # What the check says, in Korean too; the commands stay commands.
    assert "가중치 없이 등록됨" in korean and "대신 미세 조정하려면: qc models add model.onnx" in korean
    assert "registered without its .pt weights" not in korean


@pytest.mark.slow
def test_a_turn_from_an_onnx_only_model_trains_from_the_recipe_and_says_so(trained_model, loop_env, tmp_path,
                                                                          monkeypatch):
    from training.loop import LoopSettings, run_turn

    onnx_only(trained_model.raw)  # a model trained elsewhere: `qc models add` without --weights
    settings = Settings()
    write_dataset(tmp_path / "labelled", n=40, seed=505, width=SIZE, height=SIZE, defects=(1, 4))
    versions.import_dataset(tmp_path / "labelled" / "data.yaml", format="yolo", name="line",
                            root=settings.datasets_dir)  # as qc label pull writes it
    write_dataset(tmp_path / "holdout-parts", n=12, seed=303, width=SIZE, height=SIZE, defects=(3, 6))
    versions.import_dataset(tmp_path / "holdout-parts" / "data.yaml", format="yolo", name="holdout",
                            test_fraction=0.95, val_fraction=0.0, root=settings.datasets_dir)
    assert qc("models", "holdout", "default", "holdout@v1").exit_code == 0
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({**PRODUCTION_RECIPE, "imgsz": 160, "epochs": 1}))
    monkeypatch.setenv("QC_LOOP_RECIPE", str(recipe))
    assert qc("loop", "--check", "--min-new", "20").exit_code == 0

    said: list[str] = []
    turn = run_turn(LoopSettings(loop_min_new=20, loop_epochs=1), say=said.append)
    assert turn.state.value in ("refused", "waiting_approval"), (turn.error, turn.result.get("traceback"))
    assert any("default@v1 has no .pt weights" in message and "from scratch" in message for message in said)
    assert turn.result["trained_from"] == "yolo26n.yaml" and turn.result["candidate"] == "default@v2"
    candidate = Registry(settings.models_dir).get("default", "v2")
    assert candidate.card["trained_from"] == "yolo26n.yaml" and candidate.card["replaces"] == "default@v1"
    assert "fine_tuned_from" not in candidate.card and candidate.card["dataset_version"] == "line@v1"
    assert candidate.weights_path is not None  # the next turn fine-tunes
    assert set(turn.result["after"]["per_class"]) == set(turn.result["before"]["per_class"]) != set()
