"""The labeling loop's round trip, as a specification: frames flagged by the service go to a real
Label Studio as tasks (image inline, pre-annotations in percent, the reviewer's boxes where a
reviewer corrected the frame), come back as a new dataset version with lineage, never twice,
and survive Label Studio going down mid-push.

Tests marked `labelstudio` share one Label Studio from .ls-venv/ per session (fixture
`label_studio` in conftest.py; starting takes 40 s to 2 min on 2 cores) and skip when it is not
installed (`python -m labeling.server install`)."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import pytest

from inspection.store.reviews import BoxCorrection, BoxDecision, FrameDecision, ReviewStore
from labeling.config import check_label_config, label_config
from labeling.server import free_port

NAMES = {0: "scratch", 1: "dent", 2: "crack", 3: "particle", 4: "missing"}
FAIL_ALL = {"default": {"fail_conf": 0.01, "review_conf": 0.01}}


# -- the label config ----------------------------------------------------------------------


def test_the_label_config_made_for_a_model_fits_it():
    assert check_label_config(label_config(NAMES), NAMES) == []


def test_a_config_with_other_names_or_classes_is_refused_naming_each_mismatch():
    wrong = label_config(NAMES).replace('name="label"', 'name="defects"')
    assert "no RectangleLabels name=\"label\"" in check_label_config(wrong, NAMES)[0]
    assert "'defects'" in check_label_config(wrong, NAMES)[0]
    wrong = label_config(NAMES).replace('toName="image"', 'toName="photo"')
    assert 'toName="photo"' in check_label_config(wrong, NAMES)[0]
    fewer = label_config({0: "scratch", 1: "dent"})
    assert check_label_config(fewer, NAMES) == [
        "classes of the model missing from its labels: crack, missing, particle"]
    assert "not XML" in check_label_config("<View>", NAMES)[0]


def test_a_reference_model_s_config_shows_the_golden_image_beside_the_frame():
    from xml.etree import ElementTree

    xml = label_config(NAMES, reference=True)
    images = {tag.get("name"): tag.get("value") for tag in ElementTree.fromstring(xml).iter("Image")}
    assert images == {"image": "$image", "reference": "$reference"}
    assert check_label_config(xml, NAMES, reference=True) == []
    # A project made for a plain model lacks it: setup names it (and --update replaces the config).
    [problem] = check_label_config(label_config(NAMES), NAMES, reference=True)
    assert 'no <Image name="reference" value="$reference">' in problem and "golden image" in problem


def test_every_class_has_a_bright_colour_of_its_own_and_boxes_are_drawn_thick():
    from xml.etree import ElementTree

    root = ElementTree.fromstring(label_config(NAMES))
    colours = [label.get("background") for label in root.iter("Label")]
    assert len(set(colours)) == len(NAMES)
    for colour in colours:  # readable on a dark board: no channel mix darker than mid-grey
        red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
        assert 0.299 * red + 0.587 * green + 0.114 * blue > 110, colour
    assert int(next(root.iter("RectangleLabels")).get("strokeWidth")) >= 2


# -- tasks ---------------------------------------------------------------------------------


def _record(**values):
    from inspection.rules import Verdict
    from inspection.store.records import InspectionRecord

    base = {"station_id": "s1", "verdict": Verdict.FAIL, "rule": "r", "model_name": "default", "model_version": "v1",
            "rules_version": 1, "width": 400, "height": 200, "timings": {}, "image_format": "png",
            "image_sha256": "ab" * 32,
            "detections": [{"class": "dent", "class_id": 1, "confidence": 0.42, "box": [40, 20, 80, 60]}]}
    return InspectionRecord(**{**base, **values})


def test_a_task_carries_the_image_inline_the_inspection_id_and_the_models_boxes_in_percent():
    from labeling.tasks import task_for

    record = _record()
    task = task_for(record, b"\x89PNG-bytes", review=None, reasons=[{"reason": "review"}])
    assert task["data"]["inspection_id"] == record.id
    assert task["data"]["image"] == "data:image/png;base64," + base64.b64encode(b"\x89PNG-bytes").decode()
    [prediction] = task["predictions"]
    assert prediction["model_version"] == "default@v1"
    [region] = prediction["result"]
    assert (region["original_width"], region["original_height"]) == (400, 200)
    assert region["value"] | {} == {"x": 10.0, "y": 10.0, "width": 10.0, "height": 20.0, "rotation": 0,
                                    "rectanglelabels": ["dent"]}
    assert region["score"] == 0.42 and (region["from_name"], region["to_name"]) == ("label", "image")
    assert "reference" not in task["data"]  # a plain model's project shows no golden image


def test_the_prediction_score_is_the_frames_the_surest_box_not_the_weakest():
    from labeling.tasks import task_for

    boxes = [{"class": "dent", "class_id": 1, "confidence": c, "box": [40, 20, 80, 60]} for c in (0.91, 0.12)]
    [prediction] = task_for(_record(detections=boxes), b"x", review=None)["predictions"]
    assert prediction["score"] == 0.91
    [clean] = task_for(_record(detections=[]), b"x", review=None)["predictions"]
    assert clean["score"] == 0.0  # no box: nothing says defect


def test_a_reference_project_s_task_carries_the_golden_image_or_says_it_has_none():
    from labeling.tasks import NO_REFERENCE, task_for

    task = task_for(_record(), b"frame", review=None, with_reference=True, reference=(b"golden", "png"))
    assert task["data"]["reference"] == "data:image/png;base64," + base64.b64encode(b"golden").decode()
    # Label Studio refuses a task lacking a field its config names: a frame judged without one says so.
    bare = task_for(_record(), b"frame", review=None, with_reference=True)
    assert bare["data"]["reference"] == NO_REFERENCE and NO_REFERENCE.startswith("data:image/svg+xml;base64,")


def test_where_a_reviewer_corrected_the_frame_the_task_shows_the_reviewers_boxes():
    from inspection.store.reviews import Review
    from labeling.tasks import task_for

    review = Review(id=1, inspection_id="x", reviewer="kim", created_at=None, decision=FrameDecision.DEFECT,
                    disposition=None, note="", model_verdict="FAIL", boxes=[
                        BoxCorrection(BoxDecision.FALSE_ALARM, "dent", (40, 20, 80, 60), detection=0),
                        BoxCorrection(BoxDecision.MISSED, "crack", (200, 100, 240, 150))])
    [prediction] = task_for(_record(), b"x", review=review)["predictions"]
    assert prediction["model_version"] == "review:kim"
    assert [r["value"]["rectanglelabels"] for r in prediction["result"]] == [["crack"]]
    assert prediction["result"][0]["value"]["x"] == 50.0
    assert prediction["score"] == 1.0  # the reviewer stands by a defect
    cleared = Review(id=2, inspection_id="x", reviewer="kim", created_at=None, decision=FrameDecision.FALSE_ALARM,
                     disposition=None, note="", model_verdict="FAIL", boxes=[])
    assert task_for(_record(), b"x", review=cleared)["predictions"][0]["score"] == 0.0


# -- a model that judges against a golden image (no Label Studio needed) --------------------


class _RecordingStudio:
    """Label Studio as far as setup talks to it: no project yet; the one made is kept."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def find_project(self, title):
        return None

    def create_project(self, title, label_config):
        from labeling.client import Project

        self.created.append(label_config)
        return Project(id=7, title=title, label_config=label_config)


def test_for_a_reference_model_setup_shows_the_golden_image_and_each_task_carries_it(tmp_path, untrained_model):
    from types import SimpleNamespace

    from inspection.models.registry import Registry
    from inspection.rules import StationRules
    from inspection.store.database import Database
    from inspection.store.images import ImageStore
    from inspection.store.records import RecordStore
    from inspection.store.references import StationReferences
    from labeling.bridge import Bridge
    from labeling.settings import LabelSettings
    from labeling.tasks import NO_REFERENCE

    settings = LabelSettings(home=tmp_path)
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    # The card says how the model reads its input (as qc models add writes it for a reference export).
    registry.add("default", untrained_model, card={"names": NAMES, "input": {"reference": True}})
    registry.set_production("default", "v1")
    db = Database.from_settings(settings)
    try:
        studio = _RecordingStudio()
        bridge = Bridge(settings, studio=studio, db=db)  # type: ignore[arg-type]
        bridge.setup()
        [config] = studio.created
        assert '<Image name="reference" value="$reference"' in config
        assert check_label_config(config, NAMES, reference=True) == []

        records, images = RecordStore(db), ImageStore(settings.images_dir)
        records.add_station("s1", rules=StationRules())
        golden = StationReferences(db).set("s1", image_sha256=images.put(b"golden-png", "png"), image_format="png",
                                           image_wh=(400, 200))
        judged = _record(image_sha256=images.put(b"frame-png", "png"), reference_version=golden.version)
        older = _record(image_sha256=images.put(b"older-png", "png"))  # judged before the station had one
        for record in (judged, older):
            records.save_inspection(record)
        tasks = bridge._tasks([SimpleNamespace(inspection_id=r.id, reasons=[]) for r in (judged, older)])
        assert tasks[0]["data"]["reference"] == "data:image/png;base64," + base64.b64encode(b"golden-png").decode()
        assert tasks[1]["data"]["reference"] == NO_REFERENCE
    finally:
        db.dispose()


# -- the server for trying the loop ----------------------------------------------------------


def test_start_runs_label_studio_from_the_venv_install_put_it_into(tmp_path, monkeypatch):
    from inspection.errors import ConfigError
    from labeling import server

    venv = tmp_path / "elsewhere-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "label-studio").write_text("#!/bin/sh\n")
    started = []

    def start(self, **_):
        started.append(self.executable)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(server.LabelStudioServer, "start", start)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="stopped by the test"):
        server.main(["start", "data", "--venv", "elsewhere-venv", "--port", "18080"])
    assert started == [venv.resolve() / "bin" / "label-studio"]


def test_start_without_label_studio_in_the_venv_names_the_venv_and_the_fix(tmp_path, monkeypatch):
    from labeling import server

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        server.main(["start", "data", "--venv", "no-venv"])
    message = str(stopped.value.code)
    assert str(tmp_path / "no-venv") in message and "python -m labeling.server install" in message
    assert "--venv" in message


# -- against a real Label Studio -----------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def loop_service(request, label_studio, trained_model, tmp_path, monkeypatch):
    """The service with the trained synthetic model, stations failing every frame with a box,
    and the Label Studio settings of this test (a project of its own), on SQLite and on
    PostgreSQL."""
    from tests.service_harness import running

    monkeypatch.setenv("QC_LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("QC_LABEL_STUDIO_TOKEN", label_studio.token)
    monkeypatch.setenv("QC_LABEL_PROJECT", f"qc-{tmp_path.name[-20:]}")
    monkeypatch.setenv("QC_LABEL_WEBHOOK_SECRET", "s3cret-hook")
    monkeypatch.setenv("QC_LABEL_PUSH_BATCH", "2")
    home = tmp_path / "home"
    monkeypatch.setenv("QC_HOME", str(home))
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""
    with running(home, trained_model.raw, pass_sample_rate=1.0, database_url=url) as service:
        yield service


def _post_frames(service, n: int) -> list[str]:
    station = service.add_station(FAIL_ALL)
    frames = sorted(Path(service_data_dir()).glob("*.jpg"))[:n]
    ids = []
    for path in frames:
        response = service.inspect(station, path.read_bytes())
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


def service_data_dir() -> Path:
    from tests.conftest import CACHE, MODEL_CACHE_VERSION

    return CACHE / f"test-model-v{MODEL_CACHE_VERSION}-data" / "images" / "val"


def _bridge(service):
    from labeling.bridge import Bridge
    from labeling.settings import LabelSettings

    return Bridge(LabelSettings(home=service.settings.home), db=service.state.db)


@pytest.mark.labelstudio
@pytest.mark.slow
def test_setup_creates_the_project_with_the_models_classes_and_refuses_one_that_does_not_fit(loop_service):
    from inspection.errors import ConfigError

    bridge = _bridge(loop_service)
    project, done = bridge.setup()
    assert "created project" in done[0]
    assert check_label_config(project.label_config, bridge.model_names()) == []
    assert "fits" in bridge.setup()[1][0]
    bridge.studio.set_label_config(project.id, label_config(NAMES).replace('toName="image"', 'toName="img"')
                                   .replace('name="image"', 'name="img"'))
    with pytest.raises(ConfigError, match=r'no <Image name="image">.*toName="img"'):
        bridge.setup()
    assert "replaced" in bridge.setup(update=True)[1][0]


@pytest.mark.labelstudio
@pytest.mark.slow
def test_push_survives_label_studio_going_down_mid_push_and_never_sends_a_frame_twice(loop_service, label_studio):
    bridge = _bridge(loop_service)
    project, _ = bridge.setup()
    ids = _post_frames(loop_service, 6)
    real_import = bridge.studio.import_tasks
    calls = []

    def import_then_die(project_id, tasks):
        calls.append(len(tasks))
        created = real_import(project_id, tasks)
        if len(calls) == 1:
            label_studio.stop()  # down between the first batch and the second
        return created

    bridge.studio.import_tasks = import_then_die
    result = bridge.push(ids)
    assert len(result.pushed) == 2 and result.waiting == 4 and "did not answer" in result.error
    assert bridge.labels.counts(bridge.project_title)["queued"] == 4
    assert bridge.status()["last_error"]

    label_studio.start()
    bridge.studio.import_tasks = real_import
    result = bridge.push(wait_s=60)
    assert result.error is None and result.waiting == 0 and len(result.pushed) == 4
    bridge.push(ids)  # again: nothing new
    in_studio = bridge.studio.task_ids_by_inspection(project.id)
    assert sorted(in_studio) == sorted(ids)  # each frame exactly once (the map would hide a second)
    tasks = list(bridge.studio.client.tasks.list(project=project.id, fields="task_only"))
    assert len(tasks) == 6
    assert bridge.labels.counts(bridge.project_title)["pushed"] == 6


@pytest.mark.labelstudio
@pytest.mark.slow
def test_a_push_that_died_mid_request_is_found_in_label_studio_not_sent_again(loop_service):
    bridge = _bridge(loop_service)
    project, _ = bridge.setup()
    ids = _post_frames(loop_service, 2)
    bridge.enqueue(ids)
    claimed = bridge.labels.claim(bridge.project_title, limit=10)  # as if a push claimed them ...
    bridge.studio.import_tasks(project.id, bridge._tasks(claimed))  # ... sent them and died here
    result = bridge.push()
    assert sorted(result.recovered) == sorted(ids) and result.pushed == {}
    assert len(list(bridge.studio.client.tasks.list(project=project.id, fields="task_only"))) == 2


@pytest.mark.labelstudio
@pytest.mark.slow
def test_annotations_come_back_by_webhook_and_pull_as_a_version_with_lineage(loop_service):
    import uvicorn

    from serving.app import create_app

    bridge = _bridge(loop_service)
    ids = _post_frames(loop_service, 3)
    reviews = ReviewStore(loop_service.state.db)
    record = loop_service.state.store.inspection(ids[0])
    reviews.add(ids[0], reviewer="kim", decision=FrameDecision.DEFECT,
                boxes=[BoxCorrection(BoxDecision.FALSE_ALARM, d["class"], tuple(d["box"]), detection=i)
                       for i, d in enumerate(record.detections)]
                + [BoxCorrection(BoxDecision.MISSED, "crack", (10, 10, 60, 50))])

    port = free_port()  # a real HTTP server: Label Studio posts the webhook to it
    hook_server = uvicorn.Server(uvicorn.Config(create_app(loop_service.settings), host="127.0.0.1", port=port,
                                                log_level="warning"))
    thread = threading.Thread(target=hook_server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not hook_server.started and time.monotonic() < deadline:
            time.sleep(0.2)
        _project, done = bridge.setup(webhook_url=f"http://127.0.0.1:{port}/v1/hooks/label-studio")
        assert any("webhook" in line for line in done)
        result = bridge.push(ids, reasons={ids[0]: [{"reason": "reviewer_disagreement"}]})
        assert len(result.pushed) == 3
        task_of = result.pushed
        task = bridge.studio.client.tasks.get(id=task_of[ids[0]])
        [prediction] = task.predictions
        assert prediction.model_version == "review:kim"  # the reviewer's boxes, not the model's
        assert [r["value"]["rectanglelabels"] for r in prediction.result] == [["crack"]]

        # A labeller accepts the reviewer's box on the first frame and draws one on the second.
        first = bridge.studio.annotate(task_of[ids[0]], prediction.result)
        drawn = [{"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 320,
                  "original_height": 320, "value": {"x": 25, "y": 50, "width": 10, "height": 5, "rotation": 0,
                                                    "rectanglelabels": ["dent"]}}]
        second = bridge.studio.annotate(task_of[ids[1]], drawn)
        deadline = time.monotonic() + 60  # the webhook, not pull, records them
        while time.monotonic() < deadline and bridge.labels.counts(bridge.project_title)["labelled"] < 2:
            time.sleep(0.5)
        assert bridge.labels.counts(bridge.project_title)["labelled"] == 2
    finally:
        hook_server.should_exit = True
        thread.join(30)

    version = bridge.pull()
    assert version is not None and version.manifest["source"]["new_images"] == 2
    by_inspection = {e["lineage"].get("inspection_id"): e for e in version.entries}
    assert set(by_inspection) == {ids[0], ids[1]}
    lineage = by_inspection[ids[0]]["lineage"]
    assert (lineage["labelstudio_task_id"], lineage["labelstudio_annotation_id"]) == (task_of[ids[0]], first["id"])
    assert lineage["reasons"] == [{"reason": "reviewer_disagreement"}] and lineage["station"] == record.station_id
    images = {i.lineage["inspection_id"]: i for i in version.images()}
    assert images[ids[0]].detections.class_names == ["crack"]
    assert images[ids[0]].detections.xyxy.ravel().tolist() == pytest.approx([10, 10, 60, 50], abs=1e-3)
    assert images[ids[1]].detections.xyxy.ravel().tolist() == pytest.approx([80, 160, 112, 176], abs=1e-3)
    assert by_inspection[ids[1]]["lineage"]["labelstudio_annotation_id"] == second["id"]

    assert bridge.pull() is None  # nothing new: no second version
    counts = bridge.labels.counts(bridge.project_title)
    assert (counts["pulled"], counts["pushed"]) == (2, 1)

    # A correction after the pull becomes the next version; the earlier one is unchanged.
    bridge.studio.annotate(task_of[ids[2]], drawn)
    later = bridge.pull()
    assert later.version != version.version and later.manifest["source"]["base"] == version.ref
    assert {e["lineage"].get("inspection_id") for e in later.entries} == set(ids)
    assert version.verify() == []


def test_the_webhook_needs_the_shared_secret(service, monkeypatch):
    monkeypatch.setenv("QC_LABEL_WEBHOOK_SECRET", "right")
    body = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "result": []}, "task": {"id": 99}}
    assert service.client.post("/v1/hooks/label-studio", json=body).status_code == 401
    wrong = {"X-QC-Webhook-Secret": "wrong"}
    assert service.client.post("/v1/hooks/label-studio", json=body, headers=wrong).status_code == 401
    right = {"X-QC-Webhook-Secret": "right"}
    response = service.client.post("/v1/hooks/label-studio", json=body, headers=right)
    assert response.status_code == 200 and response.json()["recorded"] is False  # not a task of ours
    assert service.client.post("/v1/hooks/label-studio", json={"action": "ANNOTATION_CREATED"},
                               headers=right).status_code == 400
    monkeypatch.setenv("QC_LABEL_WEBHOOK_SECRET", "")
    assert service.client.post("/v1/hooks/label-studio", json=body, headers=right).status_code == 401
