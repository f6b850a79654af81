"""A loop turn's last step re-judges the turn's labelled frames with the production model and
the candidate, to show the engineer which verdicts would change. For a reference station (a
golden part per station, the product's recipe for DeepPCB) each frame is judged again against
the golden part it was judged against at the line, never without one."""

from __future__ import annotations

import cv2
import numpy as np

from inspection.detect.detector import Detector
from inspection.models.registry import Registry
from inspection.rules import StationRules, Verdict
from inspection.settings import Settings
from inspection.store.database import Database
from inspection.store.image_stores import open_image_store
from inspection.store.records import InspectionRecord, RecordStore
from inspection.store.references import StationReferences

RULES = StationRules.model_validate({"default": {"fail_conf": 0.5, "review_conf": 0.25}})


def test_a_reference_stations_frames_are_judged_again_against_their_own_golden_part(
        untrained_reference_model, tmp_path, monkeypatch):
    from training.loop import _changed_verdicts

    settings = Settings(home=tmp_path)
    db = Database(settings.db_url)
    db.upgrade()
    store, references, images = RecordStore(db), StationReferences(db), open_image_store(settings)
    store.add_station("line", rules=RULES)
    rng = np.random.default_rng(0)
    goldens = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(2)]
    for golden in goldens:  # the golden part, version 1 then 2 (a new part on the line)
        sha = images.put(cv2.imencode(".png", golden)[1].tobytes(), "png")
        references.set("line", image_sha256=sha, image_format="png", image_wh=(128, 96), created_by="test")
    frame = images.put(cv2.imencode(".png", goldens[0])[1].tobytes(), "png")
    records = [InspectionRecord(station_id="line", verdict=Verdict.PASS, rule="r", model_name="pcb",
                                model_version="v1", rules_version=1, width=128, height=96, detections=[],
                                timings={}, image_sha256=frame, image_format="png", reference_version=version)
               for version in (1, 2, None)]
    for record in records:
        store.save_inspection(record)
    registry = Registry(settings.models_dir)
    for _ in range(2):
        registry.add("pcb", untrained_reference_model)

    judged = []
    original = Detector.predict_bytes

    def spy(self, data, **options):
        judged.append(options.get("reference"))
        return original(self, data, **options)

    monkeypatch.setattr(Detector, "predict_bytes", spy)
    changed = _changed_verdicts(settings, db, registry, "pcb", "v1", "v2", [r.id for r in records])

    assert changed == []  # the same model twice: no verdict changes
    assert len(judged) == 4  # two frames with a golden part, by both models; the one without is left out
    expected = [cv2.cvtColor(golden, cv2.COLOR_BGR2GRAY) for golden in goldens]
    assert all(np.array_equal(judged[i], expected[0]) for i in (0, 1))
    assert all(np.array_equal(judged[i], expected[1]) for i in (2, 3))
    db.dispose()
