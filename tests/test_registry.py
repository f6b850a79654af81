"""The model registry keeps versions immutable and the production pointer consistent; the
promotion gate refuses a worse model and accepts a better one."""

from __future__ import annotations

import json
import os

import pytest

from inspection.errors import Conflict, NotFound, PromotionRefused, RegistryError
from inspection.models import promotion
from inspection.models.gate import GatePolicy, compare
from inspection.models.registry import Registry


def evaluation(map50_95: float, **recalls: float) -> dict:
    return {"map50_95": map50_95, "map50": map50_95 + 0.2,
            "per_class": {name: {"recall": value} for name, value in recalls.items()}}


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "models")


@pytest.fixture(autouse=True)
def _fake_models_load(monkeypatch):
    """These tests specify the registry and the gate on fake model bytes; that a version must
    load before a pointer moves is specified on real models in tests/test_hardening_models.py."""
    from inspection.models import promotion

    monkeypatch.setattr(promotion, "load_check", lambda entry, **kwargs: None)


@pytest.fixture
def model_file(tmp_path):
    def make(content: bytes = b"onnx bytes"):
        path = tmp_path / f"m{len(list(tmp_path.glob('m*.onnx')))}.onnx"
        path.write_bytes(content)
        return path

    return make


def test_versions_count_up_and_keep_a_card_with_the_file_hash(registry, model_file):
    first = registry.add("pcb", model_file(b"one"), card={"source": "test"})
    second = registry.add("pcb", model_file(b"two"))
    assert (first.version, second.version) == ("v1", "v2")
    assert first.card["source"] == "test" and len(first.card["sha256"]) == 64
    assert registry.versions("pcb") == ["v1", "v2"]
    assert not list((registry.root / "pcb").glob(".adding-*")), "no staging folders left behind"


def test_production_pointer_moves_and_rolls_back(registry, model_file):
    for content in (b"a", b"b", b"c"):
        registry.add("pcb", model_file(content))
    registry.set_production("pcb", "v1")
    registry.set_production("pcb", "v3")
    assert registry.production("pcb").version == "v3"
    assert registry.rollback("pcb")["version"] == "v1"
    assert registry.production("pcb").version == "v1"
    with pytest.raises(Conflict, match="no earlier production version"):
        registry.rollback("pcb")


def test_incomplete_or_corrupt_versions_are_refused_with_the_fix(registry, model_file):
    entry = registry.add("pcb", model_file())
    (entry.folder / "card.json").unlink()
    with pytest.raises(RegistryError, match=r"incomplete \(no card\.json\).*remove the folder"):
        registry.get("pcb", "v1")
    other = registry.add("pcb", model_file(b"other"))
    other.model_path.write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="does not match the sha256"):
        registry.get("pcb", "v2")
    with pytest.raises(RegistryError):
        registry.set_production("pcb", "v2")
    with pytest.raises(NotFound, match="versions: v1, v2"):
        registry.get("pcb", "v9")


def test_a_crash_while_promoting_leaves_the_old_production_intact(registry, model_file, monkeypatch):
    registry.add("pcb", model_file(b"a"))
    registry.add("pcb", model_file(b"b"))
    registry.set_production("pcb", "v1")

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        registry.set_production("pcb", "v2")
    monkeypatch.undo()
    assert registry.production("pcb").version == "v1"
    assert json.loads((registry.root / "pcb" / "production.json").read_text())["version"] == "v1"


def test_the_gate_refuses_a_lower_map_and_a_class_whose_recall_drops():
    production = evaluation(0.500, scratch=0.90, dent=0.80)
    assert compare(production, evaluation(0.503, scratch=0.91, dent=0.80)).accepted
    assert compare(production, evaluation(0.496, scratch=0.90, dent=0.80)).accepted, "within 0.005"
    assert not compare(production, evaluation(0.490, scratch=0.95, dent=0.85)).accepted
    refused = compare(production, evaluation(0.550, scratch=0.95, dent=0.77))
    assert not refused.accepted
    assert "recall[dent]" in refused.table() and "REFUSED" in refused.table()
    assert compare(production, evaluation(0.49, scratch=0.9, dent=0.8), GatePolicy(max_map_drop=0.02)).accepted


def test_promotion_uses_holdout_evaluations_in_the_cards(registry, model_file):
    registry.add("pcb", model_file(b"a"), card={"evaluations": {"pcb@v1": evaluation(0.5, scratch=0.9)}})
    promotion.promote(registry, "pcb", "v1")  # the first model has nothing to beat
    registry.add("pcb", model_file(b"b"), card={"evaluations": {"pcb@v1": evaluation(0.4, scratch=0.9)}})
    registry.add("pcb", model_file(b"c"), card={"evaluations": {"pcb@v1": evaluation(0.6, scratch=0.95)}})
    with pytest.raises(Conflict, match="no frozen holdout"):
        promotion.promote(registry, "pcb", "v2")
    registry.set_holdout("pcb", "pcb@v1")
    with pytest.raises(PromotionRefused, match="mAP50-95"):
        promotion.promote(registry, "pcb", "v2")
    assert registry.production_version("pcb") == "v1"
    promotion.promote(registry, "pcb", "v3")
    assert registry.production_version("pcb") == "v3"
    assert promotion.promote(registry, "pcb", "v2", force=True)["reason"] == "forced"


def test_a_candidate_without_a_holdout_evaluation_is_not_promoted_blindly(registry, model_file):
    registry.add("pcb", model_file(b"a"), card={"evaluations": {"h": evaluation(0.5)}})
    registry.set_production("pcb", "v1")
    registry.set_holdout("pcb", "h")
    registry.add("pcb", model_file(b"b"))
    with pytest.raises(Conflict, match="not evaluated on the holdout h"):
        promotion.promote(registry, "pcb", "v2")


def test_a_corrupt_holdout_file_is_a_registry_error_with_the_fix(registry, model_file):
    registry.add("pcb", model_file())
    registry.set_holdout("pcb", "pcb-data@v1")
    assert registry.holdout("pcb") == "pcb-data@v1"
    holdout_json = registry.root / "pcb" / "holdout.json"
    for corrupt in ("{not json", '{"dataset": "pcb-data@v1"}', "[]"):
        holdout_json.write_text(corrupt)
        with pytest.raises(RegistryError, match=r"holdout\.json is corrupt.*qc models holdout pcb"):
            registry.holdout("pcb")


def test_a_model_file_is_hashed_once_while_it_is_unchanged(registry, model_file, monkeypatch):
    from inspection.models import registry as registry_module

    hashed = []
    real = registry_module.sha256_file
    monkeypatch.setattr(registry_module, "sha256_file", lambda path: hashed.append(path) or real(path))
    registry.add("pcb", model_file(b"a"), card={"evaluations": {"h": evaluation(0.5)}})
    registry.add("pcb", model_file(b"b"), card={"evaluations": {"h": evaluation(0.6)}})
    registry.set_holdout("pcb", "h")
    promotion.promote(registry, "pcb", "v1")
    decision = promotion.check(registry, "pcb", "v2")
    promotion.promote(registry, "pcb", "v2", decision=decision)
    registry.resolve("pcb@production")
    assert len(hashed) == 2, "one hash per file, at add"
    registry.get("pcb", "v2").model_path.write_bytes(b"changed")
    with pytest.raises(RegistryError, match="does not match the sha256"):
        registry.get("pcb", "v2")


def test_promote_uses_a_decision_the_caller_already_computed(registry, model_file, monkeypatch):
    registry.add("pcb", model_file(b"a"), card={"evaluations": {"h": evaluation(0.5)}})
    registry.add("pcb", model_file(b"b"), card={"evaluations": {"h": evaluation(0.4)}})
    registry.set_production("pcb", "v1")
    registry.set_holdout("pcb", "h")
    decision = promotion.check(registry, "pcb", "v2")
    assert decision is not None and not decision.accepted
    monkeypatch.setattr(promotion, "check", lambda *a, **k: pytest.fail("the gate ran twice"))
    with pytest.raises(PromotionRefused):
        promotion.promote(registry, "pcb", "v2", decision=decision)


def test_qc_models_holdout_refuses_a_model_without_versions_and_data_that_is_not_there(
    tmp_path, qc_home, model_file, monkeypatch
):
    from typer.testing import CliRunner

    from qc.cli import app

    def holdout(*args: str):
        return CliRunner().invoke(app, ["models", "holdout", *args])

    result = holdout("nope", "data.yaml")
    assert isinstance(result.exception, NotFound) and "model nope has no versions" in str(result.exception)
    assert not (qc_home / "models" / "nope").exists(), "no phantom model folder"

    registry = Registry(qc_home / "models")
    registry.add("pcb", model_file())
    result = holdout("pcb", str(tmp_path / "missing.yaml"))
    assert "missing.yaml: no such data.yaml" in str(result.exception)
    result = holdout("pcb", "no-such-dataset@v1")
    assert "no dataset named 'no-such-dataset'" in str(result.exception)
    assert registry.holdout("pcb") is None

    (tmp_path / "data.yaml").write_text("names: {0: scratch}\n")
    monkeypatch.chdir(tmp_path)
    result = holdout("pcb", "data.yaml")
    assert result.exit_code == 0, result.output
    assert registry.holdout("pcb") == str((tmp_path / "data.yaml").resolve()), "stored absolute"


def test_qc_models_rollback_moves_production_back_and_exits_0(qc_home, model_file):
    from typer.testing import CliRunner

    from qc.cli import app

    registry = Registry(qc_home / "models")
    for content in (b"a", b"b"):
        registry.add("pcb", model_file(content))
    registry.set_production("pcb", "v1")
    registry.set_production("pcb", "v2")

    result = CliRunner().invoke(app, ["models", "rollback", "pcb"])

    assert result.exit_code == 0, result.output
    assert "pcb: production is now v1 (was v2)" in result.output
    assert registry.production("pcb").version == "v1"
