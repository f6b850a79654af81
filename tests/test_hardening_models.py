"""Promotions that cannot break a restart (issue 9, defect 4), as a specification.

A version must load (open with ONNX Runtime and run one warm-up batch) before any production
pointer moves to it, forced or not; a rollback skips versions that no longer load; a service
whose production version cannot load starts on the newest earlier one that does, loudly, and
/readyz reports the pointer it could not follow (without file paths: it needs no key).

"Broken" here is what the issue's probe promoted: a registered version whose model.onnx is not
a model (its card's sha256 matches, so only loading it tells).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inspection.errors import Conflict, ModelError
from inspection.models import promotion
from inspection.models.registry import Registry
from tests.service_harness import EVALUATED, HOLDOUT, running


@pytest.fixture
def broken_model(tmp_path) -> Path:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07this is not an ONNX model" * 40)
    return path


@pytest.fixture
def registry(tmp_path, untrained_model, broken_model) -> Registry:
    """default: v1 good, v2 broken, v3 good; v1 in production, holdout set."""
    registry = Registry(tmp_path / "models")
    for model in (untrained_model, broken_model, untrained_model):
        registry.add("default", model, card=EVALUATED)
    registry.set_holdout("default", HOLDOUT)
    registry.set_production("default", "v1")
    return registry


def test_a_forced_promotion_of_a_version_that_does_not_load_moves_no_pointer(registry):
    before = registry.pointer("default")
    with pytest.raises(ModelError, match=r"default@v2 does not load .*no pointer was moved"):
        promotion.promote(registry, "default", "v2", force=True)
    assert registry.pointer("default") == before


def test_a_gated_promotion_load_checks_too(registry):
    with pytest.raises(ModelError, match="does not load"):
        promotion.promote(registry, "default", "v2")
    assert registry.production_version("default") == "v1"
    promotion.promote(registry, "default", "v3")
    assert registry.production_version("default") == "v3"


def test_qc_models_promote_force_refuses_a_version_that_does_not_load(registry, qc_home, monkeypatch):
    from qc.cli import app

    monkeypatch.setenv("QC_HOME", str(registry.root.parent))
    monkeypatch.setenv("QC_PROVIDERS", "cpu")
    result = CliRunner().invoke(app, ["models", "promote", "default", "v2", "--force"])
    assert isinstance(result.exception, ModelError) and "does not load" in str(result.exception)
    assert registry.production_version("default") == "v1"


def test_promoting_the_production_version_again_adds_no_history_entry(registry):
    promotion.promote(registry, "default", "v3")
    history = registry.pointer("default")["history"]
    promotion.promote(registry, "default", "v3")
    promotion.promote(registry, "default", "v3", force=True)
    assert registry.pointer("default")["history"] == history == ["v1", "v3"]


def test_rollback_skips_versions_that_no_longer_load(registry):
    for version in ("v2", "v3"):  # as a forced promotion used to leave it
        registry.set_production("default", version)
    assert registry.pointer("default")["history"] == ["v1", "v2", "v3"]
    pointer = promotion.rollback(registry, "default")
    assert pointer["version"] == "v1" and pointer["history"] == ["v1"]


def test_rollback_with_no_loadable_earlier_version_names_what_it_skipped(registry):
    registry.set_production("default", "v2")
    registry.set_production("default", "v3")
    registry._write_pointer("default", "v3", registry.pointer("default"), ["v2", "v3"], "test")
    with pytest.raises(Conflict, match=r"no earlier production version loads .*v2: "):
        promotion.rollback(registry, "default")
    assert registry.production_version("default") == "v3"


# -- the service ---------------------------------------------------------------------------


def _home_with_broken_production(home: Path, good: Path, broken: Path) -> None:
    registry = Registry(home / "models")
    registry.add("default", good, card=EVALUATED)
    registry.add("default", broken, card=EVALUATED)
    registry.set_holdout("default", HOLDOUT)
    registry.set_production("default", "v1")
    registry.set_production("default", "v2")  # what `promote --force` did before the fix


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_service_whose_production_cannot_load_starts_on_the_last_version_that_did(
        tmp_path, untrained_model, broken_model):
    home = tmp_path / "home"
    _home_with_broken_production(home, untrained_model, broken_model)
    kept = _Kept()
    logging.getLogger("qc.models").addHandler(kept)
    with running(home, None) as service:
        ready = service.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["model"] == "default@v1" and body["production"] == "default@v2"
        assert "default@v2, which cannot load" in body["pointer_problem"]
        assert str(tmp_path) not in ready.text, "no absolute paths on an unauthenticated route"
        metrics = service.client.get("/metrics", headers=service.admin).text
        assert "qc_model_pointer_followed 0.0" in metrics
        station = service.add_station()
        answer = service.inspect(station)
        assert answer.status_code == 200 and answer.json()["model"]["version"] == "v1"
    logging.getLogger("qc.models").removeHandler(kept)
    assert any(r.levelname == "ERROR" and "cannot load" in r.getMessage() for r in kept.records), "loudly"


def test_a_service_with_no_loadable_production_version_refuses_to_start(tmp_path, broken_model):
    home = tmp_path / "home"
    registry = Registry(home / "models")
    registry.add("default", broken_model, card=EVALUATED)
    registry.set_production("default", "v1")
    with pytest.raises(ModelError, match="no production version of default loads"), running(home, None):
        pass


def test_readyz_reports_a_pointer_the_service_could_not_follow_and_api_rollback_skips_it(
        tmp_path, untrained_model, broken_model):
    with running(tmp_path / "home", untrained_model, model_poll_s=0.1) as service:
        registry = Registry(service.settings.models_dir)
        registry.add("default", broken_model, card=EVALUATED)  # v2
        registry.set_production("default", "v2")  # by hand, as an old forced promotion did
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not service.client.get("/readyz").json()["pointer_problem"]:
            time.sleep(0.1)
        body = service.client.get("/readyz").json()
        assert body["model"] == "default@v1" and body["production"] == "default@v2"
        assert "could not load" in body["pointer_problem"] and str(tmp_path) not in str(body)
        rolled = service.client.post("/v1/models/default/rollback", headers=service.admin)
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["version"] == "v1"
        body = service.client.get("/readyz").json()
        assert body["production"] == "default@v1" and body["pointer_problem"] is None
        assert "qc_model_pointer_followed 1.0" in service.client.get("/metrics", headers=service.admin).text


def test_api_promote_of_a_version_that_does_not_load_is_422_and_moves_nothing(
        tmp_path, untrained_model, broken_model):
    with running(tmp_path / "home", untrained_model) as service:
        registry = Registry(service.settings.models_dir)
        registry.add("default", broken_model, card=EVALUATED)
        response = service.client.post("/v1/models/default/promote", json={"version": "v2"},
                                       headers=service.admin)
        assert response.status_code == 422
        assert registry.production_version("default") == "v1"
        assert service.client.get("/readyz").json()["model"] == "default@v1"
