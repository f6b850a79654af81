"""A trained reference model end to end: a station registers the golden image of a product
the model never trained on, and the service judges that product's frames against it.

The model (fixture `trained_reference_model`) learnt on synthetic parts of many designs, each
composed with its own golden part; the station's product is another design."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.data.synth.generator import make_sample, sample_seed

pytestmark = pytest.mark.slow

PRODUCT = 4242  # a part design absent from the training data (tests/conftest.py seeds 13)


def encode(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def product_frame(index: int, *, good: bool | None = None):
    return make_sample(sample_seed(99, index), width=320, height=320, part=PRODUCT, reference=True,
                       defects=(2, 5), good=good)


def test_the_reference_model_scores_its_val_split_against_the_references(trained_reference_model, qc_home):
    from inspection.evaluate.scoring import score_onnx

    scored = score_onnx(trained_reference_model.raw, str(trained_reference_model.data_yaml), split="val",
                        progress=False)
    assert not scored.skipped
    assert scored.evaluation.map50 > 0.3


def test_a_station_judges_an_unseen_product_against_its_golden_image(trained_reference_model, tmp_path):
    from tests.service_harness import running

    rules = {"default": {"fail_conf": 0.4, "review_conf": 0.2}}
    golden = product_frame(0, good=True).reference
    with running(tmp_path, trained_reference_model.raw, pass_sample_rate=1.0) as service:
        station = service.add_station(rules)
        assert service.client.put(f"/v1/stations/{station}/reference", content=encode(golden),
                                  headers={**service.admin, "Content-Type": "image/png"}).status_code == 200
        outcomes = {"right": 0, "review": 0, "wrong": 0}
        for index in range(1, 13):
            sample = product_frame(index, good=index % 4 == 0)
            judged = service.inspect(station, encode(sample.image), kind="png").json()
            assert judged["reference"]["alignment_score"] > 0.9
            defective = len(sample.detections) > 0
            outcome = ("review" if judged["verdict"] == "REVIEW" else
                       "right" if (judged["verdict"] == "FAIL") == defective else "wrong")
            outcomes[outcome] += 1
    assert outcomes["right"] >= 8, outcomes
    assert outcomes["wrong"] <= 2, outcomes
