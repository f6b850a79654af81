"""Plant analytics in the database, as a specification: rollups agree with the raw records
however often they are rebuilt, rates group by station, class, plant day and shift, frozen
limits come from the baseline's subgroups, alarms are stored once while their condition holds.

Runs on SQLite and, with QC_TEST_POSTGRES_URL set, on PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from inspection.analytics.image_stats import ImageStats, QualitySettings
from inspection.analytics.shifts import ShiftSettings
from inspection.detections import Detections
from inspection.rules import StationRules, Verdict, decide
from inspection.store.analytics import (
    AlarmKind,
    AnalyticsStore,
    Grouping,
    floor_bucket,
    frame_columns,
)
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, RecordStore
from inspection.store.schema import FRAME_COLUMNS

START = datetime(2026, 3, 2, 5, 0)  # naive UTC; 06:00 in Europe/Berlin (UTC+1 in March)
PLANT = ShiftSettings.equal("Europe/Berlin", first_start="06:00", names=("early", "late", "night"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stores(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    db = Database(url)
    db.upgrade()
    records = RecordStore(db)
    for station in ("line1", "line2"):
        records.add_station(station, rules=StationRules())
    yield records, AnalyticsStore(db)
    db.dispose()


def record(station: str, when: datetime, verdict: Verdict = Verdict.PASS, classes: tuple[str, ...] = (),
           model: str = "v1", sharpness: float = 300.0, brightness: float = 120.0,
           product: str | None = None) -> InspectionRecord:
    boxes = [{"class": name, "class_id": 0, "confidence": 0.9, "box": [0, 0, 10, 10], "area": 100.0}
             for name in classes]
    return InspectionRecord(station_id=station, verdict=verdict, rule="test", model_name="m", model_version=model,
                            rules_version=1, width=64, height=64, detections=boxes, timings={}, created_at=when,
                            brightness=brightness, contrast=40.0, sharpness=sharpness, blue=110.0, green=120.0,
                            red=130.0, max_confidence=0.9 if classes else 0.1, product=product,
                            product_version=1 if product else None)


def test_rollups_count_exactly_what_the_records_say_and_rebuilding_changes_nothing(stores):
    records, analytics = stores
    for i in range(90):  # every 2 minutes for 3 hours; every 10th fails with a scratch
        failed = i % 10 == 0
        records.save_inspection(record("line1", START + timedelta(minutes=2 * i),
                                       Verdict.FAIL if failed else Verdict.PASS, ("scratch",) if failed else ()))
    records.save_inspection(record("line2", START, Verdict.REVIEW))
    analytics.refresh(now=START + timedelta(hours=4))
    first = analytics.rates(START, START + timedelta(hours=4), by=Grouping.STATION)
    assert [(r.key, r.inspected, r.failed, r.review) for r in first] == [("line1", 90, 9, 0), ("line2", 1, 0, 1)]
    analytics.refresh(now=START + timedelta(hours=4))
    analytics.rebuild(START)
    assert analytics.rates(START, START + timedelta(hours=4), by=Grouping.STATION) == first
    # A record arriving later in the newest bucket is counted by the next refresh.
    records.save_inspection(record("line1", START + timedelta(minutes=179), Verdict.FAIL, ("pit",)))
    analytics.refresh(now=START + timedelta(hours=4))
    line1 = analytics.rates(START, START + timedelta(hours=4), by=Grouping.STATION, station="line1")[0]
    assert (line1.inspected, line1.failed) == (91, 10)
    assert line1.defect_rate == pytest.approx(10 / 91)


def test_rates_group_by_class_plant_day_and_shift_in_the_plant_zone(stores):
    records, analytics = stores
    # 04:50 UTC is 05:50 in Berlin: the night shift of 1 March; 05:10 UTC is the early shift of 2 March.
    records.save_inspection(record("line1", START - timedelta(minutes=10), Verdict.FAIL, ("scratch", "pit")))
    records.save_inspection(record("line1", START + timedelta(minutes=10), Verdict.FAIL, ("scratch",)))
    records.save_inspection(record("line1", START + timedelta(minutes=20)))
    analytics.refresh(now=START + timedelta(hours=1))
    window = (START - timedelta(hours=1), START + timedelta(hours=1))
    shifts = analytics.rates(*window, by=Grouping.SHIFT, shifts=PLANT)
    assert [(r.key, r.inspected, r.failed) for r in shifts] == [("2026-03-01 night", 1, 1), ("2026-03-02 early", 2, 1)]
    days = analytics.rates(*window, by=Grouping.DAY, shifts=PLANT)
    assert [(r.key, r.inspected) for r in days] == [("2026-03-01", 1), ("2026-03-02", 2)]
    by_class = analytics.rates(*window, by=Grouping.CLASS)
    assert [(r.key, r.failed, r.inspected) for r in by_class] == [("scratch", 2, 3), ("pit", 1, 3)]
    pareto = analytics.pareto(*window)
    assert [(p["class"], p["failed_parts"], p["cumulative"]) for p in pareto] == [
        ("scratch", 2, 0.6667), ("pit", 1, 1.0)]


def test_rates_group_by_the_product_each_part_was_judged_as_across_stations_and_changeovers(stores):
    records, analytics = stores
    # A changeover in the middle of a 15-minute bucket: M8 bolts, then M10 bolts, on line1;
    # line2 makes M8 bolts too, and one part was judged without a product.
    for i in range(6):
        product = "m8-bolt" if i < 4 else "m10-bolt"
        records.save_inspection(record("line1", START + timedelta(minutes=i), Verdict.FAIL if i in (0, 4) else
                                       Verdict.PASS, product=product))
    records.save_inspection(record("line2", START, Verdict.FAIL, product="m8-bolt"))
    records.save_inspection(record("line2", START + timedelta(minutes=1)))
    analytics.refresh(now=START + timedelta(hours=1))
    window = (START, START + timedelta(hours=1))
    by_product = analytics.rates(*window, by=Grouping.PRODUCT)
    assert [(r.key, r.inspected, r.failed) for r in by_product] == [("", 1, 0), ("m10-bolt", 2, 1), ("m8-bolt", 5, 2)]
    assert [(r.key, r.inspected) for r in analytics.rates(*window, by=Grouping.PRODUCT, station="line2")] == [
        ("", 1), ("m8-bolt", 1)]
    summary = analytics.summary(*window, shifts=PLANT)
    assert [(r["key"], r["defect_rate"]) for r in summary["by_product"]] == [("", 0.0), ("m10-bolt", 0.5),
                                                                             ("m8-bolt", 0.4)]
    assert summary["total"]["inspected"] == 8  # products split the counts; they do not add any


def test_the_version_timeline_names_the_first_bucket_of_each_model(stores):
    records, analytics = stores
    records.save_inspection(record("line1", START, model="v1"))
    records.save_inspection(record("line1", START + timedelta(minutes=40), model="v2"))
    analytics.refresh(now=START + timedelta(hours=1))
    models = [e for e in analytics.versions(START, START + timedelta(hours=1)) if e["what"] == "model"]
    assert [(e["label"], e["at"]) for e in models] == [
        ("m@v1", START), ("m@v2", floor_bucket(START + timedelta(minutes=40)))]


def test_the_timeline_marks_each_changeover_where_a_product_appears_after_another(stores):
    records, analytics = stores
    # line1: M8 bolts, then M10 from 05:40, back to M8 at 06:10; line2 only ever M8.
    for minute, product in ((0, "m8-bolt"), (20, "m8-bolt"), (40, "m10-bolt"), (55, "m10-bolt"), (70, "m8-bolt")):
        records.save_inspection(record("line1", START + timedelta(minutes=minute), product=product))
    records.save_inspection(record("line2", START, product="m8-bolt"))
    records.save_inspection(record("line2", START + timedelta(minutes=50), product="m8-bolt"))
    analytics.refresh(now=START + timedelta(hours=2))
    changeovers = [(e["station"], e["label"], e["at"]) for e in analytics.versions(START, START + timedelta(hours=2))
                   if e["what"] == "product"]
    assert changeovers == [("line1", "product m10-bolt", START + timedelta(minutes=30)),
                           ("line1", "product m8-bolt", START + timedelta(minutes=60))]
    # A window that opens on M10 already running: no changeover at its start.
    later = [e["label"] for e in analytics.versions(START + timedelta(minutes=45), START + timedelta(hours=2),
                                                     station="line1") if e["what"] == "product"]
    assert later == ["product m8-bolt"]


def test_frozen_limits_come_from_the_baselines_complete_subgroups(stores):
    records, analytics = stores
    for i in range(205):  # 4 complete subgroups of 50 (the last 5 parts make no subgroup)
        failed = i % 25 == 0  # 2 per 50
        records.save_inspection(record("line1", START + timedelta(seconds=10 * i),
                                       Verdict.FAIL if failed else Verdict.PASS, ("scratch",) if failed else ()))
    frozen = analytics.freeze("line1", START - timedelta(seconds=1), START + timedelta(hours=1), frozen_by="lee")
    by_key = {(f.class_name, f.limits.kind.value): f for f in frozen}
    whole = by_key[("", "p")].limits
    assert whole.centre == pytest.approx(8 / 200) and whole.baseline_subgroups == 4 and whole.baseline_units == 200
    assert by_key[("scratch", "p")].limits.centre == pytest.approx(8 / 200)
    assert by_key[("", "u")].limits.centre == pytest.approx(8 / 200)
    assert all(f.frozen_by == "lee" and f.subgroup_size == 50 for f in frozen)


def test_a_baseline_without_any_failure_is_refused_with_the_reason(stores):
    from inspection.errors import ConfigError

    records, analytics = stores
    for i in range(100):
        records.save_inspection(record("line1", START + timedelta(seconds=i)))
    with pytest.raises(ConfigError, match="longer baseline window"):
        analytics.freeze("line1", START - timedelta(seconds=1), START + timedelta(hours=1), frozen_by="lee")


def test_an_alarm_is_stored_once_while_its_condition_holds_and_again_after_it_cleared(stores):
    _, analytics = stores
    first = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "EWMA", "defect rate up")
    assert first is not None
    assert analytics.raise_alarm(AlarmKind.SPC, "line1", "", "EWMA", "defect rate up") is None
    other = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "CUSUM", "defect rate up")
    assert other is not None
    assert analytics.open_counts() == {"spc": 2}
    acknowledged = analytics.acknowledge(first.id, by="kim", note="nozzle cleaned")
    assert (acknowledged.acknowledged_by, acknowledged.note) == ("kim", "nozzle cleaned")
    assert analytics.raise_alarm(AlarmKind.SPC, "line1", "", "EWMA", "still") is None  # acknowledged, still holding
    analytics.clear([first.key])
    again = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "EWMA", "defect rate up again")
    assert again is not None and again.id != first.id
    assert [a.id for a in analytics.alarms(unacknowledged=True)] == [again.id, other.id]


def test_frame_columns_hold_the_image_statistics_and_the_best_confidence():
    stats = ImageStats(brightness=100, contrast=30, sharpness=250.5, blue=90, green=100, red=110)
    empty = frame_columns(stats, Detections.empty())
    assert empty == {"brightness": 100, "contrast": 30, "sharpness": 250.5, "blue": 90, "green": 100, "red": 110,
                     "max_confidence": 0.0}
    boxes = Detections(xyxy=np.array([[0, 0, 5, 5], [1, 1, 4, 4]], np.float32),
                       confidence=np.array([0.3, 0.8], np.float32), class_id=np.array([0, 0]), names={0: "pit"})
    assert frame_columns(stats, boxes)["max_confidence"] == pytest.approx(0.8)
    assert tuple(empty) == FRAME_COLUMNS  # one figure for each column of the table, in its order


def test_the_quality_gate_sends_a_dark_or_blurred_frame_to_review_and_is_off_by_default():
    dark = ImageStats(brightness=12, contrast=3, sharpness=0.5, blue=12, green=12, red=12)
    good = ImageStats(brightness=120, contrast=40, sharpness=300, blue=120, green=120, red=120)
    gated = StationRules.model_validate({"quality": {"min_brightness": 40, "max_brightness": 230, "min_sharpness": 15}})
    decision = decide(Detections.empty(), gated, stats=dark)
    assert decision.verdict is Verdict.REVIEW and decision.rule.startswith("image quality: too dark")
    assert decide(Detections.empty(), gated, stats=good).verdict is Verdict.PASS
    assert decide(Detections.empty(), StationRules(), stats=dark).verdict is Verdict.PASS  # no gate unless set
    with pytest.raises(ValueError):
        QualitySettings(min_brightness=200, max_brightness=100, min_sharpness=1)
