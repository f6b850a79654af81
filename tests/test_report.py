"""`qc report` as a specification: a shift, a day or a window, CSV that adds up and a printable
HTML report with its plots inline (nothing fetched), and clear refusals for a bad choice."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from inspection.rules import StationRules, Verdict
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, RecordStore
from qc.cli import app
from qc.commands.report import window_of
from serving.settings import ServeSettings

DAY = datetime(2026, 3, 2)


@pytest.fixture
def plant(qc_home, monkeypatch):
    monkeypatch.setenv("QC_TIMEZONE", "Asia/Seoul")  # UTC+9: early shift 06:00-14:00 is 21:00-05:00 UTC
    db = Database.from_settings(ServeSettings())
    records = RecordStore(db)
    records.add_station("line1", rules=StationRules())
    start = datetime(2026, 3, 1, 21, 0)  # 06:00 on 2 March in Seoul
    for i in range(40):  # 40 parts in the early shift, every 10 minutes; every 4th fails
        failed = i % 4 == 0
        # 24 M8 bolts (6 fail), 8 M10 bolts (2 fail), then 8 parts judged without a product (2 fail).
        product = "m8-bolt" if i < 24 else "m10-bolt" if i < 32 else None
        records.save_inspection(InspectionRecord(
            station_id="line1", verdict=Verdict.FAIL if failed else Verdict.PASS, rule="t", model_name="m",
            model_version="v1", rules_version=1, width=8, height=8, timings={}, product=product,
            product_version=1 if product else None,
            detections=[{"class": "short", "class_id": 0, "confidence": 0.9, "box": [0, 0, 2, 2], "area": 4.0}]
            if failed else [], created_at=start + timedelta(minutes=10 * i)))
    db.dispose()
    return qc_home


def test_a_shift_report_writes_csv_and_printable_html(plant, tmp_path):
    result = CliRunner().invoke(app, ["report", "--shift", "2026-03-02 early", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "Shift early of 2026-03-02" in result.output
    rows = list(csv.DictReader((tmp_path / "r" / "report.csv").open()))
    total = rows[0]
    assert (total["group"], total["inspected"], total["failed"]) == ("total", "40", "10")
    assert float(total["defect_rate"]) == pytest.approx(0.25)
    assert [(r["key"], r["failed"]) for r in rows if r["group"] == "class"] == [("short", "10")]
    assert [(r["key"], r["inspected"], r["failed"], r["defect_rate"]) for r in rows if r["group"] == "product"] == [
        ("", "8", "2", "0.25"), ("m10-bolt", "8", "2", "0.25"), ("m8-bolt", "24", "6", "0.25")]
    assert [(r["key"], r["inspected"]) for r in rows if r["group"] == "shift"] == [("2026-03-02 early", "40")]
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<h2>By product</h2>" in html and "(no product)" in html
    assert html.count("<svg") == 2 and "25.00%" in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")


def test_the_other_shift_of_the_day_is_empty_and_a_day_report_holds_all(plant, tmp_path):
    late = CliRunner().invoke(app, ["report", "--shift", "2026-03-02 late", "--out", str(tmp_path / "late")])
    assert late.exit_code == 0
    assert next(csv.DictReader((tmp_path / "late" / "report.csv").open()))["inspected"] == "0"
    day = CliRunner().invoke(app, ["report", "--day", "2026-03-02", "--out", str(tmp_path / "day")])
    assert day.exit_code == 0
    assert next(csv.DictReader((tmp_path / "day" / "report.csv").open()))["inspected"] == "40"


def test_a_bare_shift_name_is_the_latest_that_has_started():
    settings = ServeSettings(timezone="Asia/Seoul")
    now = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 12:00 in Seoul: the early shift runs, night has not begun
    since, until, title = window_of(shift="night", day=None, start=None, end=None, settings=settings, now=now)
    assert title == "Shift night of 2026-03-01"
    assert (since, until) == (datetime(2026, 3, 1, 13), datetime(2026, 3, 1, 21))


def test_choosing_two_windows_or_none_is_refused_with_the_fix(plant):
    both = CliRunner().invoke(app, ["report", "--day", "today", "--shift", "early"])
    assert both.exit_code != 0 and "exactly one of --shift, --day or --from/--to" in str(both.exception)
    backwards = CliRunner().invoke(app, ["report", "--from", "2026-03-02T10:00", "--to", "2026-03-02T09:00"])
    assert "--to must be after --from" in str(backwards.exception)
