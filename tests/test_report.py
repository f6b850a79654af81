"""`qc report` as a specification: a shift, a day or a window, CSV that adds up and a printable
HTML report with its plots inline (nothing fetched), every time in plant time, in English or
Korean; `--day today` after midnight in a night shift is the plant day that shift belongs to;
clear refusals for a bad choice."""

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
    assert "<h2>By product</h2>" in html and "No product" in html
    # The window in plant time, labelled with the plant's zone (not UTC labelled Asia/Seoul).
    assert "2026-03-02 06:00 – 2026-03-02 14:00 (Asia/Seoul)" in html
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


def test_a_korean_report_reads_korean_with_its_shift_names_and_plant_time(plant, tmp_path):
    result = CliRunner().invoke(app, ["report", "--shift", "2026-03-02 early", "--lang", "ko",
                                      "--out", str(tmp_path / "ko")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "ko" / "report.html").read_text()
    assert '<html lang="ko">' in html and "품질 보고서: 2026-03-02 오전조" in html
    assert "<h2>제품별</h2>" in html and "불량률" in html and "2026-03-02 06:00 – 2026-03-02 14:00" in html
    assert "2026-03-02 오전조" in html  # the by-shift table's row


def test_day_today_after_midnight_in_the_night_shift_is_the_day_the_shift_belongs_to(plant):
    settings = ServeSettings(timezone="Asia/Seoul")
    night = datetime(2026, 3, 2, 17, 30, tzinfo=UTC)  # 02:30 on 3 March in Seoul: the night shift of the 2nd
    since, until, title = window_of(shift=None, day="today", start=None, end=None, settings=settings, now=night)
    assert title == "Day 2026-03-02"
    assert (since, until) == (datetime(2026, 3, 1, 21), datetime(2026, 3, 2, 21))  # 06:00 to 06:00 in Seoul
    from qc.commands.report import day_note

    assert day_note("today", settings, night, str) == (
        "It is 2026-03-03 02:30, in the night shift of 2026-03-02: --day today is plant day 2026-03-02.")
    assert day_note("today", settings, datetime(2026, 3, 2, 3, 0, tzinfo=UTC), str) == ""  # noon: no surprise


def test_the_report_run_after_midnight_holds_the_night_s_parts_and_says_which_day(plant, tmp_path, monkeypatch):
    import qc.commands.report as command

    records = RecordStore(Database.from_settings(ServeSettings()))
    for i in range(6):  # six parts in the night shift of 2 March, after midnight in Seoul
        records.save_inspection(InspectionRecord(
            station_id="line1", verdict=Verdict.PASS, rule="t", model_name="m", model_version="v1",
            rules_version=1, width=8, height=8, timings={}, detections=[],
            created_at=datetime(2026, 3, 2, 16, 0) + timedelta(minutes=i)))
    records.db.dispose()

    monkeypatch.setattr(command, "current_time", lambda: datetime(2026, 3, 2, 17, 30, tzinfo=UTC))  # 02:30 in Seoul
    result = CliRunner().invoke(app, ["report", "--day", "today", "--out", str(tmp_path / "n")])
    assert result.exit_code == 0, result.output
    assert "--day today is plant day 2026-03-02" in result.output and "Day 2026-03-02" in result.output
    assert next(csv.DictReader((tmp_path / "n" / "report.csv").open()))["inspected"] == "46"
