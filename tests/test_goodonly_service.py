"""A good-only model in the product (issue 23, item 3): registered and served like any model,
its boxes REVIEW until the rules trust them, its anomaly map on the review page, its frames
picked for labelling with the part's real classes, and a supervised model able to replace it
through the promotion gate.

    PYTHONPATH=. python -m pytest -q tests/test_goodonly_service.py

The part is the synthetic PCB of tests/test_goodonly.py (`make_sample(..., part=PART)`); the
model is built from its golden image and 20 jittered good frames (a second, offline).
The whole walk, golden image to a supervised model in production: tests/test_goodonly_walk.py.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.data.synth.generator import make_sample
from inspection.data.synth.optics import jitter
from inspection.detect.goodonly import GoodOnlyModel, Params
from inspection.detections import Detections
from inspection.rules import StationRules, Verdict, decide
from tests.conftest import CHROMIUM, docs_screenshot, launch_chromium

PART = 7
SIZE = 256


def encode(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


@pytest.fixture(scope="module")
def golden() -> np.ndarray:
    sample = make_sample(1000, width=SIZE, height=SIZE, surface="pcb", good=True, reference=True, part=PART)
    assert sample.reference is not None
    return sample.reference


@pytest.fixture(scope="module")
def part_model(golden, tmp_path_factory):
    rng = np.random.default_rng(1)
    model = GoodOnlyModel.build(golden, [jitter(golden, rng) for _ in range(20)], params=Params(false_alarms=0.1))
    return model.save(tmp_path_factory.mktemp("goodonly") / "part.qcgood")


def defective(index: int) -> np.ndarray:
    sample = make_sample(2000 + index, width=SIZE, height=SIZE, surface="pcb", good=False, reference=True, part=PART)
    assert len(sample.detections)
    return sample.image


def anomaly_boxes(*confidences: float) -> Detections:
    n = len(confidences)
    return Detections(xyxy=np.array([[10, 10, 40, 40]] * n, np.float32), confidence=np.array(confidences, np.float32),
                      class_id=np.zeros(n), names={0: "anomaly"}, image_wh=(256, 256))


# -- the rules ------------------------------------------------------------------------------


def test_a_good_only_models_boxes_are_review_by_default_never_fail():
    decision = decide(anomaly_boxes(0.99, 0.7), StationRules())

    assert decision.verdict is Verdict.REVIEW
    assert "anomaly_fail_conf" in decision.rule  # the rule says how to let them FAIL


def test_anomaly_fail_conf_makes_trusted_anomalies_fail_and_weaker_ones_stay_review():
    rules = StationRules.parse({"anomaly_fail_conf": 0.9})

    assert decide(anomaly_boxes(0.95), rules).verdict is Verdict.FAIL
    assert decide(anomaly_boxes(0.6), rules).verdict is Verdict.REVIEW
    assert decide(anomaly_boxes(), rules).verdict is Verdict.PASS


def test_an_explicit_anomaly_class_rule_wins_and_a_supervised_models_classes_are_untouched():
    explicit = StationRules.parse({"classes": {"anomaly": {"fail_conf": 0.5, "review_conf": 0.3}}})
    assert decide(anomaly_boxes(0.6), explicit).verdict is Verdict.FAIL
    scratch = Detections(xyxy=np.array([[10, 10, 40, 40]], np.float32), confidence=np.array([0.9], np.float32),
                         class_id=np.zeros(1), names={0: "scratch"}, image_wh=(256, 256))
    assert decide(scratch, StationRules()).verdict is Verdict.FAIL


def test_anomaly_fail_conf_out_of_range_is_refused_naming_it():
    from inspection.errors import ConfigError

    with pytest.raises(ConfigError, match="anomaly_fail_conf"):
        StationRules.parse({"anomaly_fail_conf": 1.5})


# -- the registry and the detector ----------------------------------------------------------


def test_a_qcgood_file_is_a_registry_version_and_loads_as_a_detector(part_model, golden, tmp_path):
    from inspection.detect.detector import Detector
    from inspection.models.card import model_card
    from inspection.models.registry import Registry

    registry = Registry(tmp_path / "models")
    entry = registry.add("part7", part_model, card=model_card(part_model))

    assert entry.goodonly and entry.model_path.name == "model.qcgood"
    assert entry.card["names"] == {"0": "anomaly"} and entry.card["goodonly"]["threshold"] > 0
    detector = Detector(entry.model_path, conf=0.01)
    assert detector.names == {0: "anomaly"} and detector.input_hw == golden.shape[:2]
    assert not detector.needs_reference  # the golden travels inside the file
    found = detector.predict([defective(0)])[0]
    assert len(found) and set(found.class_names) == {"anomaly"}
    assert len(detector.predict([jitter(golden, np.random.default_rng(9))])[0]) <= 1


def test_qc_goodonly_build_takes_the_stations_golden_and_registers_and_promotes_the_model(golden, qc_home, tmp_path):
    from typer.testing import CliRunner

    from inspection.models.registry import Registry
    from inspection.settings import Settings
    from qc.cli import app

    runner = CliRunner()
    cv2.imwrite(str(tmp_path / "golden.png"), golden)
    good = tmp_path / "good"
    good.mkdir()
    rng = np.random.default_rng(3)
    for n in range(8):
        cv2.imwrite(str(good / f"g{n}.png"), jitter(golden, rng))
    assert runner.invoke(app, ["stations", "add", "part7-cam1"]).exit_code == 0
    build = ["goodonly", "build", "--good", str(good), "--out", str(tmp_path / "part7.qcgood")]

    missing = runner.invoke(app, [*build, "--station", "part7-cam1"])
    assert missing.exit_code != 0 and "qc stations reference part7-cam1" in str(missing.exception or missing.output)
    both = runner.invoke(app, [*build, "--station", "part7-cam1", "--golden", str(tmp_path / "golden.png")])
    assert both.exit_code != 0 and "once" in str(both.exception or both.output)

    assert runner.invoke(app, ["stations", "reference", "part7-cam1", str(tmp_path / "golden.png")]).exit_code == 0
    built = runner.invoke(app, [*build, "--station", "part7-cam1", "--register", "part7", "--promote"])

    assert built.exit_code == 0, built.output
    entry = Registry(Settings().models_dir).production("part7")
    assert entry.goodonly and entry.card["goodonly"]["golden"] == "station part7-cam1 reference v1"
    assert GoodOnlyModel.load(entry.model_path).golden.shape == golden.shape[:2]


# -- the service ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def goodonly_service(part_model, tmp_path_factory):
    from tests.service_harness import running

    with running(tmp_path_factory.mktemp("goodonly-service"), part_model, pass_sample_rate=1.0,
                 label_classes="open,short") as started:
        yield started


def test_the_service_judges_a_defective_frame_review_with_anomaly_boxes_and_a_good_one_pass(goodonly_service, golden):
    service = goodonly_service
    station = service.add_station()

    flagged = service.inspect(station, encode(defective(1)), kind="png")
    good = service.inspect(station, encode(jitter(golden, np.random.default_rng(5))), kind="png")

    assert flagged.status_code == 200, flagged.text
    body = flagged.json()
    assert body["verdict"] == "REVIEW" and "anomaly" in body["rule"]
    assert body["detections"] and {d["class"] for d in body["detections"]} == {"anomaly"}
    assert good.json()["verdict"] == "PASS"


def test_while_a_good_only_model_serves_a_reviewer_names_the_parts_real_classes_and_labels_the_frame(
        goodonly_service, tmp_path):
    from inspection.store.reviews import FrameDecision
    from labeling.reviewed import reviewed_images

    service = goodonly_service
    station = service.add_station()
    flagged = service.inspect(station, encode(defective(4)), kind="png").json()
    assert {d["class"] for d in flagged["detections"]} == {"anomaly"}
    url = f"/v1/inspections/{flagged['id']}/reviews"

    unknown = service.client.post(url, headers=service.admin, json={
        "decision": "defect", "boxes": [{"decision": "wrong_class", "detection": 0, "class": "dent"}]})
    assert unknown.status_code == 422 and "short" in unknown.text  # the reply names the classes there are
    named = service.client.post(url, headers=service.admin, json={
        "decision": "defect", "boxes": [{"decision": "wrong_class", "detection": i, "class": "short"}
                                        for i in range(len(flagged["detections"]))]})
    assert named.status_code == 201, named.text

    # The reviewed frame labels the part's own class in the next dataset version (QC_LABEL_CLASSES
    # gives the dataset its class ids), with no Label Studio involved.
    items = reviewed_images(service.state.db, names={0: "open", 1: "short"}, decisions=[FrameDecision.DEFECT],
                            image_file=lambda r: service.state.images.path(r.image_sha256))
    mine = [i for i in items if getattr(i, "lineage", {}).get("inspection_id") == flagged["id"]]
    assert len(mine) == 1 and set(mine[0].detections.class_names) == {"short"}, items

def test_a_product_profile_names_the_good_only_model_and_trusts_its_strong_boxes_to_fail(goodonly_service):
    service = goodonly_service
    station = service.add_station()
    profile = {"model": "default", "rules": {"anomaly_fail_conf": 0.9}}
    saved = service.client.put(f"/v1/stations/{station}/products/part7", json=profile, headers=service.admin)
    assert saved.status_code in (200, 201), saved.text
    frame = encode(defective(1))

    as_part7 = service.inspect(station, frame, kind="png", headers={"X-Product": "part7"}).json()
    by_station = service.inspect(station, frame, kind="png").json()

    assert max(d["confidence"] for d in as_part7["detections"]) >= 0.9
    assert as_part7["verdict"] == "FAIL" and as_part7["rule"].startswith("anomaly:")
    assert by_station["verdict"] == "REVIEW"  # the station's own rules have not trusted it


def test_the_anomaly_map_of_a_flagged_frame_is_a_transparent_png_over_the_frame(goodonly_service):
    service = goodonly_service
    station = service.add_station()
    inspection = service.inspect(station, encode(defective(2)), kind="png").json()

    response = service.client.get(f"/v1/inspections/{inspection['id']}/anomaly.png", headers=service.admin)

    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    layer = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert layer.shape == (SIZE, SIZE, 4)
    alpha = layer[..., 3]
    x1, y1, x2, y2 = (int(v) for v in inspection["detections"][0]["box"])
    assert alpha[y1:y2, x1:x2].max() > 100  # warm where the anomaly is
    assert (alpha == 0).mean() > 0.8  # clear where the part looks good


def test_the_anomaly_map_is_refused_without_a_key_for_another_station_and_for_the_review_page_without_sign_in(
        goodonly_service):
    service = goodonly_service
    station = service.add_station()
    inspection_id = service.inspect(station, encode(defective(3)), kind="png").json()["id"]
    other = service.key("station", stations=(service.add_station(),))

    assert service.client.get(f"/v1/inspections/{inspection_id}/anomaly.png").status_code == 401
    assert service.client.get(f"/v1/inspections/{inspection_id}/anomaly.png", headers=other).status_code == 404
    assert service.client.get(f"/review/anomaly/{inspection_id}").status_code == 401


def test_a_frame_judged_by_an_onnx_model_has_no_anomaly_map_and_the_404_says_why(start):
    service = start(pass_sample_rate=1.0)
    station = service.add_station()
    inspection_id = service.inspect(station).json()["id"]

    response = service.client.get(f"/v1/inspections/{inspection_id}/anomaly.png", headers=service.admin)

    assert response.status_code == 404
    assert "not by a good-only model" in response.json()["detail"]


# -- the labeling loop ----------------------------------------------------------------------


def test_the_sampler_picks_anomaly_frames_first_strongest_first():
    from inspection.store.records import InspectionRecord
    from labeling.sampling.strategies import Anomaly, Candidate

    def candidate(*boxes: tuple[str, float]) -> Candidate:
        record = InspectionRecord(station_id="s", verdict=Verdict.REVIEW, rule="r", model_name="part7",
                                  model_version="v1", rules_version=1, width=64, height=64, timings={},
                                  detections=[{"class": c, "class_id": 0, "confidence": s, "box": [1, 1, 9, 9]}
                                              for c, s in boxes])
        return Candidate(record=record, rules=StationRules())

    strategy = Anomaly(share=0.2)
    strong = strategy.found(candidate(("anomaly", 0.6), ("anomaly", 0.97)))
    weak = strategy.found(candidate(("anomaly", 0.55)))

    assert strong is not None and weak is not None and strong.rank < weak.rank
    assert strong.detail == {"boxes": 2, "confidence": 0.97}
    assert strategy.found(candidate(("scratch", 0.9))) is None


def test_the_shipped_policy_samples_under_a_good_only_model_without_embeddings_anomaly_frames_first(
        goodonly_service, part_model, caplog):
    from inspection.errors import ModelError
    from labeling.bridge import Bridge
    from labeling.sampling.embeddings import DetectorEmbeddings
    from labeling.sampling.flips import FlipConsistency
    from labeling.settings import LabelSettings

    with pytest.raises(ModelError, match="good-only model: it has no learned features"):
        DetectorEmbeddings(part_model, None)
    with pytest.raises(ModelError, match=r"good-only model: .* its mirror says nothing"):
        FlipConsistency(part_model, None)
    service = goodonly_service
    station = service.add_station()
    flagged = service.inspect(station, encode(defective(5)), kind="png").json()
    bridge = Bridge(LabelSettings(home=service.settings.home), db=service.state.db)
    with caplog.at_level("WARNING", logger="labeling.bridge"):
        picks = bridge.sample()  # the shipped policy: its embedding lines pass their share on
    assert "no learned features" in caplog.text
    first = {p.inspection_id: p.reasons[0]["reason"] for p in picks}
    assert first[flagged["id"]] == "anomaly"

def test_label_studio_gets_the_parts_real_classes_while_a_good_only_model_is_in_production(part_model, tmp_path):
    from inspection.errors import ConfigError
    from inspection.models.card import model_card
    from labeling.bridge import Bridge
    from labeling.settings import LabelSettings

    home = tmp_path / "home"
    settings = LabelSettings(home=home, database_url="")
    bridge = Bridge(settings)
    bridge.registry.add("default", part_model, card=model_card(part_model))
    bridge.registry.set_production("default", "v1")

    with pytest.raises(ConfigError, match="QC_LABEL_CLASSES"):
        bridge.model_names()
    named = Bridge(LabelSettings(home=home, database_url="", label_classes="scratch, dent,crack"))
    assert named.model_names() == {0: "scratch", 1: "dent", 2: "crack"}
    with pytest.raises(ConfigError, match="not 'anomaly'"):
        Bridge(LabelSettings(home=home, database_url="", label_classes="scratch,anomaly")).model_names()


def test_a_task_for_an_anomaly_frame_leaves_its_boxes_out_of_the_pre_annotation_and_says_where_they_are():
    from inspection.store.records import InspectionRecord
    from labeling.tasks import task_for

    record = InspectionRecord(station_id="s", verdict=Verdict.REVIEW, rule="r", model_name="part7",
                              model_version="v1", rules_version=1, width=64, height=64, timings={},
                              image_sha256="a" * 64, image_format="png",
                              detections=[{"class": "anomaly", "class_id": 0, "confidence": 0.9, "box": [1, 2, 9, 10]}])

    task = task_for(record, b"png", review=None)

    assert task["predictions"][0]["result"] == []
    assert task["data"]["anomalies"] == "[1, 2, 9, 10]"


# -- the gate -------------------------------------------------------------------------------


def test_a_good_only_model_scores_zero_on_every_real_class_with_its_class_agnostic_scores_beside(part_model, tmp_path):
    from inspection.evaluate.scoring import gate_evaluation

    images, labels = tmp_path / "images" / "test", tmp_path / "labels" / "test"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    names = {}
    for index in range(4):
        sample = make_sample(3000 + index, width=SIZE, height=SIZE, surface="pcb", good=False, reference=True,
                             part=PART)
        cv2.imwrite(str(images / f"f{index}.png"), sample.image)
        names.update(sample.detections.names)
        rows = [f"{int(c)} {(x1 + x2) / 2 / SIZE} {(y1 + y2) / 2 / SIZE} {(x2 - x1) / SIZE} {(y2 - y1) / SIZE}"
                for (x1, y1, x2, y2), c in zip(sample.detections.xyxy, sample.detections.class_id, strict=True)]
        (labels / f"f{index}.txt").write_text("\n".join(rows) + "\n")
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntest: images/test\nnames: {dict(sorted(names.items()))}\n")

    evaluation = gate_evaluation(part_model, str(tmp_path / "data.yaml"), split="test", progress=False)

    assert evaluation["goodonly"] and evaluation["map50_95"] == 0
    assert all(values["recall"] == 0 for values in evaluation["per_class"].values())
    assert evaluation["agnostic"]["per_class"]["anomaly"]["recall"] > 0  # what it did find, whatever the class


def test_an_onnx_model_is_scored_on_its_classes_unless_its_one_class_is_anomaly(untrained_model, part_model):
    from inspection.evaluate.scoring import _anomaly_only

    assert not _anomaly_only(untrained_model)  # COCO's 80 classes: scored as ever (score_onnx)
    assert not _anomaly_only(part_model)  # not ONNX at all: a .qcgood goes by its suffix


def test_triton_refuses_a_good_only_version_naming_why(part_model, tmp_path):
    from inspection.errors import ModelError
    from inspection.models.registry import Registry
    from inspection.models.triton_repo import write_version

    entry = Registry(tmp_path / "models").add("part7", part_model)

    with pytest.raises(ModelError, match="not a network"):
        write_version(entry, tmp_path / "triton")


# -- the review page (a real browser) -------------------------------------------------------



@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium")
@pytest.mark.parametrize("locale", ["en-US", "ko-KR"])
def test_the_review_page_lays_the_anomaly_map_over_the_frame_at_1366x768(part_model, tmp_path, locale):
    pytest.importorskip("playwright")
    import httpx
    from playwright.sync_api import sync_playwright

    from inspection.models.card import model_card
    from inspection.models.registry import Registry
    from inspection.store.database import Database
    from inspection.store.keys import KeyStore
    from inspection.store.users import UserStore
    from serving.launch import free_port
    from serving.settings import ServeSettings
    from tests.service_harness import served_in_thread

    settings = ServeSettings(home=tmp_path / "home", providers="cpu", log_json=False, model_poll_s=3600.0,
                             port=free_port(), pass_sample_rate=1.0, database_url="", label_classes="open,short")
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    registry.add("default", part_model, card=model_card(part_model))
    registry.set_production("default", "v1")
    db = Database.from_settings(settings)
    UserStore(db).add("kim", password="line-side-pc-42", role="reviewer", display_name="Kim Jiwoo")
    admin = {"Authorization": f"Bearer {KeyStore(db).create(role='admin', name='browser test')}"}
    db.dispose()
    korean = locale == "ko-KR"
    with served_in_thread(settings) as url, sync_playwright() as p:
        assert httpx.post(f"{url}/v1/stations", json={"id": "part7-cam1"}, headers=admin).status_code == 201
        flagged = httpx.post(f"{url}/v1/stations/part7-cam1/inspect", content=encode(defective(4)),
                             headers={**admin, "Content-Type": "image/png"}).json()
        assert flagged["verdict"] == "REVIEW"
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1366, "height": 768}, locale=locale, bypass_csp=True,
                                      extra_http_headers={"Accept-Language": locale})
        page = context.new_page()
        page.set_default_timeout(60000)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        try:
            page.goto(f"{url}/login?next=/review")
            page.fill("input[name=name]", "kim")
            page.fill("input[name=password]", "line-side-pc-42")
            page.click("button[type=submit]")
            page.wait_for_selector("#queue li.current")
            toggle = page.locator("label:has(#anomaly-toggle)")
            assert toggle.text_content().strip() == ("이상 영역 맵" if korean else "Anomaly map")
            box = toggle.bounding_box()
            assert box and box["x"] + box["width"] <= 1366 and box["y"] + box["height"] <= 768
            assert page.locator("#anomaly").is_hidden()

            page.check("#anomaly-toggle")
            page.wait_for_function("(() => { const m = document.getElementById('anomaly');"
                                   " return m && !m.hidden && m.complete && m.naturalWidth > 0; })()")
            over = page.evaluate("""(() => {
                const a = document.getElementById('anomaly').getBoundingClientRect();
                const f = document.getElementById('image').getBoundingClientRect();
                return [a.x - f.x, a.y - f.y, a.width - f.width, a.height - f.height]; })()""")
            assert all(abs(v) < 1.5 for v in over), over  # exactly over the frame
            assert page.get_attribute("#anomaly", "src") == f"/review/anomaly/{flagged['id']}"
            widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert widths[0] <= widths[1]
            if not korean:  # docs/goodonly.md shows it
                docs_screenshot(page, "review-anomaly.png")

            page.keyboard.press("1")  # the first box, then W: its right class, of the part's own classes
            page.keyboard.press("w")
            page.wait_for_selector("#picker:not([hidden])")
            assert page.locator("#picker-list li span").all_text_contents() == ["anomaly", "open", "short"]
            page.keyboard.press("Escape")

            page.reload()  # the choice is remembered
            page.wait_for_function("document.getElementById('anomaly-toggle').checked")
            page.uncheck("#anomaly-toggle")
            assert page.locator("#anomaly").is_hidden()
            assert all(r.startswith(url) or r.startswith("data:") for r in requested)  # nothing from elsewhere
        finally:
            context.close()
            browser.close()
