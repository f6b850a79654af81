"""Incidents as a specification (issue 26): the alarms that fire together at a station are one
incident that lists its rules and classes and is acknowledged once; an image drift that came
with the defect rate (the defective parts look different, the passing ones do not) names no
equipment, while a dimmer lamp still does; alarm texts read in the plant's time and in Korean."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np
import pytest

from inspection.analytics.phrases import Phrase, When, Word
from inspection.analytics.plant_time import PlantClock
from inspection.rules import StationRules, Verdict
from inspection.store.analytics import AlarmKind, AnalyticsStore
from inspection.store.records import InspectionRecord, RecordStore, utcnow
from serving.alarms import AlarmEvaluator
from serving.metrics import Metrics
from serving.pages.language import catalogue, translator
from serving.settings import ServeSettings


@pytest.fixture
def analytics(db):
    RecordStore(db).add_station("line1", rules=StationRules())
    RecordStore(db).add_station("line2", rules=StationRules())
    return AnalyticsStore(db)


def test_alarms_raised_together_at_a_station_are_one_incident_acknowledged_once(analytics):
    ewma = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "EWMA", "defect rate up")
    cusum = analytics.raise_alarm(AlarmKind.SPC, "line1", "scratch", "CUSUM", "defect rate up")
    other = analytics.raise_alarm(AlarmKind.SPC, "line2", "", "EWMA", "defect rate up")
    assert ewma.incident_id == cusum.incident_id != other.incident_id
    line1 = analytics.incident(ewma.incident_id)
    assert (line1.station_id, line1.rules, line1.classes, line1.open) == ("line1", ["CUSUM", "EWMA"], ["", "scratch"],
                                                                          True)
    done = analytics.acknowledge_incident(line1.id, by="kim", note="nozzle 2 cleaned")
    assert {(a.acknowledged_by, a.note) for a in done.alarms} == {("kim", "nozzle 2 cleaned")}
    late = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "WE1", "defect rate up")  # still the same problem
    assert late.incident_id == line1.id and late.acknowledged_by == "kim"
    assert [i.station_id for i in analytics.incidents(unacknowledged=True)] == ["line2"]
    assert analytics.open_counts() == {"spc": 1}  # only line2's alarm waits for a person


def test_an_incident_closes_when_all_its_alarms_clear_and_the_next_alarm_opens_another(analytics):
    first = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "EWMA", "up")
    second = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "CUSUM", "up")
    analytics.clear([first.key])
    assert analytics.incident(first.incident_id).open  # CUSUM still holds
    analytics.clear([second.key])
    closed = analytics.incident(first.incident_id)
    assert not closed.open and closed.closed_at is not None
    again = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "EWMA", "up again")
    assert again.incident_id != first.incident_id
    assert [i.id for i in analytics.incidents(open_only=True)] == [again.incident_id]


def test_an_unknown_incident_is_not_found(analytics):
    from inspection.errors import NotFound

    with pytest.raises(NotFound, match="incident 99 does not exist"):
        analytics.acknowledge_incident(99, by="kim")


# -- the evaluator ----------------------------------------------------------------------------


def frames(records: RecordStore, start: datetime, n: int, *, fail_share: float, seed: int,
           light: float = 120.0, failed_light: float = 120.0) -> datetime:
    """n frames 2 s apart: a share fail (with one scratch) and are lit `failed_light`, the rest `light`."""
    rng = np.random.default_rng(seed)
    when = start
    for _ in range(n):
        failed = bool(rng.random() < fail_share)
        level = (failed_light if failed else light) * rng.normal(1, 0.02)
        records.save_inspection(InspectionRecord(
            station_id="line1", verdict=Verdict.FAIL if failed else Verdict.PASS, rule="t", model_name="m",
            model_version="v1", rules_version=1, width=64, height=64, timings={}, created_at=when,
            detections=[{"class": "scratch", "class_id": 0, "confidence": 0.9, "box": [0, 0, 9, 9], "area": 81.0}]
            if failed else [],
            brightness=level, contrast=0.33 * level * rng.normal(1, 0.02),
            sharpness=300 * (level / 120) ** 2 * rng.normal(1, 0.05), blue=0.9 * level, green=level,
            red=1.1 * level, max_confidence=float(np.clip(rng.normal(0.6, 0.05), 0, 1))))
        when += timedelta(seconds=2)
    return when


def baseline(records: RecordStore, analytics: AnalyticsStore, **light) -> datetime:
    start = utcnow() - timedelta(hours=3)
    end = frames(records, start, 1000, fail_share=0.03, seed=0, **light)
    analytics.freeze("line1", start - timedelta(seconds=1), end, frozen_by="lee", subgroup_size=50)
    return end


def evaluator(analytics: AnalyticsStore, **settings) -> AlarmEvaluator:
    return AlarmEvaluator(analytics, ServeSettings(**{"spc_rules": "EWMA,CUSUM,WE1", "timezone": "Asia/Seoul",
                                                      "drift_confirmations": 1, **settings}),
                          metrics=Metrics(), notifiers=[])


def test_a_step_in_the_defect_rate_is_one_incident_and_dark_defective_parts_name_no_equipment(db, analytics):
    records = RecordStore(db)
    # Defective parts read darker (a scratch scatters the light away), so more of them darken the
    # frames as a whole; the passing parts look as before.
    end = baseline(records, analytics, failed_light=60.0)
    check = evaluator(analytics)
    assert check.evaluate() == []
    frames(records, end, 300, fail_share=0.6, seed=1, failed_light=60.0)
    raised = check.evaluate()
    kinds = {a.kind for a in raised}
    assert AlarmKind.SPC in kinds and AlarmKind.EQUIPMENT not in kinds, [(a.kind, a.rule) for a in raised]
    assert len({a.incident_id for a in raised}) == 1
    [incident] = analytics.incidents(unacknowledged=True)
    assert {"EWMA", "CUSUM"} <= set(incident.rules) and incident.classes == ["", "scratch"]
    mix = [a for a in raised if a.kind is AlarmKind.MIX]
    assert mix and all("not the equipment" in a.message and "lighting" not in a.message for a in mix)


def test_a_dimmer_lamp_that_darkens_the_passing_parts_too_is_still_the_equipment(db, analytics):
    records = RecordStore(db)
    end = baseline(records, analytics)
    check = evaluator(analytics)
    assert check.evaluate() == []
    frames(records, end, 300, fail_share=0.03, seed=2, light=80.0, failed_light=80.0)
    raised = check.evaluate()
    assert [(a.kind, a.rule) for a in raised] == [(AlarmKind.EQUIPMENT, "drift:brightness")]
    # The change's time in plant time (Seoul, UTC+9), in the stored English text and in Korean.
    since = PlantClock("Asia/Seoul").format(raised[0].since)
    assert re.search(rf"station line1: brightness down 3\d% since {since}: lighting or exposure", raised[0].message)
    korean = raised[0].text(translator("ko"), PlantClock("Asia/Seoul"), lang="ko")
    assert since in korean and "밝기" in korean and "조명" in korean, korean


def test_every_alarm_text_the_server_makes_has_a_korean_translation():
    """Each template and word an alarm phrase can hold (serving/alarms.py builds them)."""
    import ast
    from pathlib import Path

    from inspection.analytics.drift import Cause
    from inspection.analytics.image_stats import Statistic

    source = ast.parse((Path(__file__).resolve().parents[1] / "serving" / "alarms.py").read_text())
    used = {node.args[0].value for node in ast.walk(source) if isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "Phrase" and node.args and isinstance(node.args[0], ast.Constant)}
    used |= {"up {percent}%", "down {percent}%"}
    used |= {c.value for c in Cause} | {s.value for s in Statistic} | {"alignment residual", "confidence"}
    missing = sorted(used - set(catalogue("ko")))
    assert len(used) > 20 and missing == []


def test_a_phrase_survives_storage_and_renders_in_plant_time():
    text = Phrase("{what}: {change}", what=Phrase("station {station}", station="line1"),
                  change=Phrase("since {since}", since=When(datetime(2026, 3, 1, 21, 0))), cause=Word("x"))
    assert Phrase.loads(text.dumps()) == text
    assert text.render(clock=PlantClock("Asia/Seoul")) == "station line1: since 2026-03-02 06:00"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def before_incidents(request, tmp_path):
    """A database migrated up to the revision before incidents (0008)."""
    from inspection.store.database import Database

    url = f"sqlite:///{tmp_path / 'qc.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url)
    database.upgrade("0008_login_attempts")
    yield database
    database.dispose()


def test_alarms_stored_before_incidents_become_an_incident_each_and_new_ones_group(before_incidents):
    from inspection.store.schema import alarms

    db = before_incidents
    now = utcnow()
    with db.engine.begin() as conn:
        for rule, active, by in (("EWMA", True, None), ("CUSUM", False, "kim")):
            conn.execute(alarms.insert().values(
                station_id="line1", class_name="", kind="spc", rule=rule, side="above", message=f"{rule} up",
                raised_at=now, active_key=f"line1||{rule}" if active else None, acknowledged_by=by,
                acknowledged_at=now if by else None, cleared_at=None if active else now, note=""))
    db.upgrade()
    analytics = AnalyticsStore(db)
    old = {i.rules[0]: i for i in analytics.incidents()}
    assert set(old) == {"EWMA", "CUSUM"}
    assert old["EWMA"].open and old["EWMA"].acknowledged_by is None
    assert not old["CUSUM"].open and old["CUSUM"].acknowledged_by == "kim"
    assert old["EWMA"].alarms[0].text() == "EWMA up"  # no phrase: the stored text
    new = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "WE1", "WE1 up")
    assert new.incident_id not in {i.id for i in old.values()}  # ids continue past the old ones
    assert analytics.raise_alarm(AlarmKind.SPC, "line1", "x", "WE1", "up").incident_id == new.incident_id
