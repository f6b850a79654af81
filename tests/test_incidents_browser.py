"""Incidents, plant time and Korean in a real browser at 1366x768 (Debian's chromium driven by
Playwright), as a specification of issue 26: through the real service (uvicorn on a free port)
a step in one station's defect rate raises its alarms (EWMA, CUSUM and WE1 for the station and
its class, the u-chart's WE1) as exactly one incident, shown beside the figures and charts with
all of them above the fold, acknowledged once; the incident's time, its alarm texts, the Loop
page's turn and the printed report read in plant time (Asia/Seoul, UTC+9); in Korean the alarm
texts are Korean and no chart legend overlaps another. No request leaves 127.0.0.1.

With QC_DOCS_SCREENSHOTS=1 the dashboard with the incident, in English and in Korean, is
written to docs/images/ (dashboard-incident.png, dashboard-incident-ko.png) for docs/analytics.md.

Never `playwright install`: the browser is /usr/bin/chromium; without it these tests skip."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from inspection.analytics.plant_time import PlantClock
from tests.conftest import CHROMIUM, docs_screenshot, launch_chromium
from tests.service_harness import served_in_thread
from tests.test_alarms import STEP_RULES, part

PASSWORD = "line-side-pc-42"
PLANT = PlantClock("Asia/Seoul")
FOLD = 768

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def live(untrained_model, tmp_path_factory):
    pytest.importorskip("playwright")

    from inspection.models.registry import Registry
    from inspection.store.database import Database
    from inspection.store.jobs import JobKind, JobState, JobStore
    from inspection.store.keys import KeyStore
    from inspection.store.users import UserStore
    from serving.launch import free_port
    from serving.settings import ServeSettings

    port = free_port()
    settings = ServeSettings(home=tmp_path_factory.mktemp("incidents"), providers="cpu", log_json=False,
                             model_poll_s=3600.0, port=port, pass_sample_rate=0.0, timezone="Asia/Seoul",
                             alarm_interval_s=0, spc_rules="EWMA,CUSUM,WE1")
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    registry.add("default", untrained_model, card={"evaluations": {}})
    registry.set_production("default", "v1")
    db = Database.from_settings(settings)
    users = UserStore(db)
    users.add("kim", password=PASSWORD, role="reviewer", display_name="Kim Jiwoo")
    users.add("lee", password=PASSWORD, role="engineer", display_name="Lee Minho")
    admin = {"Authorization": f"Bearer {KeyStore(db).create(role='admin', name='browser test')}"}
    jobs = JobStore(db)  # a turn of the loop that ran, for the Loop page's times
    turn = jobs.start(JobKind.LOOP, params={}, created_by="lee")
    jobs.finish(turn.id, JobState.SKIPPED, result={"message": "nothing new to learn"})
    turn = jobs.get(turn.id)
    db.dispose()
    with served_in_thread(settings) as url:
        yield url, admin, settings, turn


def post_parts(url: str, admin: dict, station: str, n: int, share: float, rng, first: int) -> None:
    with httpx.Client(base_url=url, headers={**admin, "Content-Type": "image/png"}, timeout=30) as client:
        for i in range(n):
            image = part(bool(rng.random() < share), first + i)
            response = client.post(f"/v1/stations/{station}/inspect", content=image)
            assert response.status_code == 200, response.text


def step_in_one_station(url: str, admin: dict) -> list[dict]:
    """line-5 runs at about 8% FAIL, its limits are frozen, then it fails half its parts."""
    station = "line-5"
    assert httpx.post(f"{url}/v1/stations", json={"id": station, "rules": STEP_RULES}, headers=admin).status_code == 201
    rng = np.random.default_rng(20261207)
    post_parts(url, admin, station, 150, 0.08, rng, 0)
    frozen = httpx.post(f"{url}/v1/analytics/limits", headers=admin, json={
        "station": station, "since": "2020-01-01T00:00:00Z", "until": datetime.now(UTC).isoformat(),
        "subgroup_size": 10})
    assert frozen.status_code == 201, frozen.text
    post_parts(url, admin, station, 60, 0.5, rng, 1000)
    return httpx.post(f"{url}/v1/analytics/evaluate", headers=admin).json()["raised"]


def sign_in(page, url: str, name: str, target: str) -> None:
    page.goto(f"{url}{target}")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{target}**")


def overlapping(boxes: list[dict]) -> list[tuple[int, int]]:
    return [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes) if i < j
            and a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]]


def test_a_step_in_one_station_is_one_incident_in_plant_time_acknowledged_once_in_english_and_korean(live, tmp_path):
    from playwright.sync_api import sync_playwright

    url, admin, settings, turn = live
    raised = step_in_one_station(url, admin)
    rules = {(a["class"], a["rule"]) for a in raised}
    assert {("", "EWMA"), ("", "CUSUM"), ("", "u:WE1")} <= rules and len(raised) >= 5
    assert {a["kind"] for a in raised} == {"spc"}  # nothing blames the lens or the light
    [incident] = httpx.get(f"{url}/v1/analytics/incidents", headers=admin, params={"unacknowledged": True}).json()[
        "incidents"]
    assert sorted(a["id"] for a in incident["alarms"]) == sorted(a["id"] for a in raised)
    since = PLANT.format(incident["since"])
    assert since != PlantClock("UTC").format(incident["since"])

    with sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1366, "height": FOLD}, locale="en-US")
        page = context.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.set_default_timeout(60000)  # generous: CI runs this beside a loaded 2-core machine
        sign_in(page, url, "kim", "/dashboard")

        cards = page.locator("li.incident")
        assert cards.count() == 1  # one problem, one incident
        card = cards.first
        assert page.locator("[data-open-incidents]").get_attribute("data-open-incidents") == "1"
        chips = [c.inner_text() for c in card.locator(".rule").all()]
        assert {"EWMA", "CUSUM", "WE1", "u:WE1"} <= set(chips)
        assert "WE1: one subgroup beyond 3σ" in (card.locator(".rule", has_text="WE1").first.get_attribute("title"))
        assert [c.inner_text() for c in card.locator(".class").all()] == ["all", "0"]
        # Plant time: the incident's start, and each alarm's subgroup in its text.
        assert card.locator("time[data-plant-time]").first.inner_text() == since
        assert "defect rate up" in card.locator(".message").inner_text()
        member = next(a for a in raised if a["rule"] == "EWMA" and a["class"] == "")
        card.locator("details summary").click()
        text = card.locator(f"[data-alarm='{member['id']}']").inner_text()
        assert f"at {PLANT.format(member['since'])}:" in text and "defect rate up" in text

        # Above the fold at 1366x768: the figures, the rate chart and the station's control
        # charts on the left, the incident list beside them on the right.
        figures = page.locator("section.tiles").bounding_box()
        charts = [f.bounding_box() for f in page.locator("section.charts figure").all()]
        aside = page.locator("aside.incidents").bounding_box()
        box = card.bounding_box()
        assert figures["y"] + figures["height"] <= FOLD
        assert len(charts) >= 3 and all(c["y"] + c["height"] <= FOLD for c in charts[:3]), charts
        assert aside["x"] >= max(c["x"] + c["width"] for c in charts) and box["y"] < 200
        card.locator("details summary").click()  # closed again for the picture
        docs_screenshot(page, "dashboard-incident.png")

        # Korean: the server's alarm text, the rules' meaning, legends apart.
        page.goto(f"{url}/dashboard?lang=ko")
        card = page.locator("li.incident").first
        assert "불량률 상승" in card.locator(".message").inner_text()
        assert "검사대 line-5" in card.locator(".message").inner_text()
        assert "이상 사례" in page.content() and "발생 규칙" in card.inner_text()
        assert card.locator("time[data-plant-time]").first.inner_text() == since
        for chart in page.locator("svg.chart").all():
            legends = [g.bounding_box() for g in chart.locator("g.legend").all()]
            texts = [t.bounding_box() for t in chart.locator(":scope > text").all()]  # title, axes, times
            assert overlapping(legends) == [], chart.get_attribute("aria-label")
            assert [(i, j) for i, j in overlapping(legends + texts) if i < len(legends)] == [], \
                chart.get_attribute("aria-label")  # no legend entry over another, a time or an axis label
        docs_screenshot(page, "dashboard-incident-ko.png")

        # Acknowledged once, with a note: every alarm of the incident with it.
        page.goto(f"{url}/dashboard?lang=en")
        card = page.locator("li.incident").first
        card.locator("input[name=note]").fill("feeder 2 jammed; cleared at 14:20")
        card.locator("button[type=submit]").click()
        page.wait_for_load_state()
        assert page.locator("[data-open-incidents]").get_attribute("data-open-incidents") == "0"
        assert page.locator("li.incident form.ack").count() == 0
        assert "feeder 2 jammed" in page.locator("li.incident [data-acknowledged]").inner_text()
        context.close()

        # The Loop page: its turn in plant time.
        context = browser.new_context(viewport={"width": 1366, "height": FOLD}, locale="en-US")
        page = context.new_page()
        page.on("request", lambda r: requested.append(r.url))
        page.set_default_timeout(60000)
        sign_in(page, url, "lee", "/loop")
        started = PLANT.format(turn.created_at)
        assert page.locator("#job time[data-plant-time]").first.inner_text() == started
        assert page.locator("#jobs time[data-plant-time]").first.inner_text() == started
        assert "Asia/Seoul" in page.locator("#job").inner_text()

        # The printed report, in Korean, in plant time, its legends apart.
        from inspection.store.database import Database
        from qc.commands.report import window_of, write_report
        from serving.pages.language import translator

        db = Database.from_settings(settings)
        try:
            since_utc, until_utc, title = window_of(shift=None, day="today", start=None, end=None, settings=settings,
                                                    t=translator("ko"))
            _, html = write_report(db, settings, since_utc, until_utc, title, tmp_path / "report", lang="ko")
        finally:
            db.dispose()
        page.goto(html.as_uri())
        window = page.locator("p.window").inner_text()
        assert f"{PLANT.format(since_utc)} – {PLANT.format(until_utc)} (Asia/Seoul)" == window
        assert "품질 보고서" in page.locator("h1").inner_text() and "이상 사례" in page.content()
        assert "불량률 상승" in page.content() and "feeder 2 jammed" in page.content()
        for chart in page.locator("svg.chart").all():
            assert overlapping([g.bounding_box() for g in chart.locator("g.legend").all()]) == []
        context.close()
        browser.close()
    outside = [u for u in requested if not u.startswith(url) and u != html.as_uri()]  # the report is a file
    assert requested and outside == []
    listed = httpx.get(f"{url}/v1/analytics/alarms", headers=admin).json()["alarms"]
    assert {(a["acknowledged_by"], a["note"]) for a in listed} == {("kim", "feeder 2 jammed; cleared at 14:20")}
