"""The plant dashboard in a real browser (Debian's chromium driven by Playwright), as a
specification of what a shift lead sees: frames posted through the real service (uvicorn on a
free port) under rules that fail a chosen share, a baseline frozen by an engineer, a changeover
from M8 to M10 bolts that steps the line from ~8% to ~50% FAIL, the evaluator's alarms (the
p-chart's EWMA and CUSUM, the u-chart's Western Electric rule 1) as one incident on the
dashboard beside both control charts and the defect rate per product, acknowledged once with a
note by a reviewer; no request leaves 127.0.0.1. Screenshots for docs/analytics.md are written here.

Never `playwright install`: the browser is /usr/bin/chromium; without it these tests skip."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from tests.conftest import CHROMIUM, docs_screenshot, launch_chromium
from tests.service_harness import served_in_thread
from tests.test_alarms import STEP_RULES, part

PASSWORD = "line-side-pc-42"

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
    from inspection.store.keys import KeyStore
    from inspection.store.users import UserStore
    from serving.launch import free_port
    from serving.settings import ServeSettings

    port = free_port()
    settings = ServeSettings(home=tmp_path_factory.mktemp("dashboard"), providers="cpu", log_json=False,
                             model_poll_s=3600.0, port=port, pass_sample_rate=0.0, timezone="Asia/Seoul",
                             alarm_interval_s=0, spc_rules="EWMA,CUSUM,WE1")
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    registry.add("default", untrained_model, card={"evaluations": {}})
    registry.set_production("default", "v1")
    db = Database.from_settings(settings)
    UserStore(db).add("kim", password=PASSWORD, role="reviewer", display_name="Kim Jiwoo")
    keys = KeyStore(db)
    admin = {"Authorization": f"Bearer {keys.create(role='admin', name='browser test')}"}
    db.dispose()
    with served_in_thread(settings) as url:
        yield url, admin


def post_parts(url: str, admin: dict, station: str, n: int, share: float, rng, first: int) -> None:
    with httpx.Client(base_url=url, headers={**admin, "Content-Type": "image/png"}, timeout=30) as client:
        for i in range(n):
            image = part(bool(rng.random() < share), first + i)
            response = client.post(f"/v1/stations/{station}/inspect", content=image)
            assert response.status_code == 200, response.text


def test_a_step_change_is_alarmed_on_the_dashboard_and_acknowledged_with_a_note(live):
    from playwright.sync_api import sync_playwright

    url, admin = live
    station = "line-3"
    assert httpx.post(f"{url}/v1/stations", json={"id": station, "rules": STEP_RULES}, headers=admin).status_code == 201
    for product in ("m8-bolt", "m10-bolt"):  # both judged with the station's rules
        assert httpx.put(f"{url}/v1/stations/{station}/products/{product}", json={}, headers=admin).status_code == 200

    def changeover(product: str) -> None:
        selected = httpx.put(f"{url}/v1/stations/{station}/product", json={"product": product}, headers=admin)
        assert selected.status_code == 200, selected.text

    rng = np.random.default_rng(20261201)
    changeover("m8-bolt")
    post_parts(url, admin, station, 150, 0.08, rng, 0)  # the baseline: about 8% FAIL
    frozen = httpx.post(f"{url}/v1/analytics/limits", headers=admin, json={
        "station": station, "since": "2020-01-01T00:00:00Z", "until": datetime.now(UTC).isoformat(),
        "subgroup_size": 10})
    assert frozen.status_code == 201, frozen.text
    assert {f["limits"]["kind"] for f in frozen.json()["limits"] if f["class"] == ""} == {"p", "u"}
    changeover("m10-bolt")
    post_parts(url, admin, station, 60, 0.5, rng, 1000)  # the step
    raised = httpx.post(f"{url}/v1/analytics/evaluate", headers=admin).json()["raised"]
    assert any(a["rule"] == "EWMA" and a["class"] == "" for a in raised)
    assert any(a["rule"] == "u:WE1" and a["class"] == "" for a in raised)

    with sync_playwright() as p:
        browser = launch_chromium(p)
        context = browser.new_context(viewport={"width": 1366, "height": 900}, locale="en-US")
        page = context.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.set_default_timeout(60000)  # generous: CI runs this beside a loaded 2-core machine
        page.goto(f"{url}/dashboard")
        assert "/login" in page.url
        page.fill("input[name=name]", "kim")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/dashboard**")
        incidents = page.locator("li.incident")
        assert incidents.count() == 1  # the alarms fired together at one station: one problem
        incident = incidents.first
        incident.locator("details summary").click()
        assert incident.locator("[data-alarm]").count() == len(raised)
        ewma = next(a for a in raised if a["rule"] == "EWMA" and a["class"] == "")
        assert "defect rate up" in incident.locator(f"[data-alarm='{ewma['id']}']").inner_text()
        u_alarm = next(a for a in raised if a["rule"] == "u:WE1")
        assert "defects per part up" in incident.locator(f"[data-alarm='{u_alarm['id']}']").inner_text()
        # The rate over time, the station's p-chart and its u-chart (each with its ringed alarms).
        assert page.locator("svg.chart").count() >= 3
        assert page.locator("svg.chart", has_text="u-chart · line-3").count() == 1
        products = page.locator("table[data-by=product] tbody tr")
        assert [products.nth(i).locator("th").inner_text() for i in range(products.count())] == ["m10-bolt", "m8-bolt"]
        m10 = float(products.nth(0).locator("td").nth(2).inner_text().rstrip("%"))
        m8 = float(products.nth(1).locator("td").nth(2).inner_text().rstrip("%"))
        assert m10 > 25 > m8  # the step came with the changeover
        docs_screenshot(page, "dashboard-alarm.png", full_page=True)

        incident.locator("input[name=note]").fill("nozzle 2 clogged; cleaned at 14:20")
        incident.locator("button[type=submit]").click()
        page.wait_for_load_state()
        assert page.locator("li.incident form.ack").count() == 0  # acknowledged once, for all its alarms
        done = page.locator("li.incident [data-acknowledged]").first.inner_text()
        assert "Kim" in done or "kim" in done
        assert "nozzle 2 clogged" in done
        docs_screenshot(page, "dashboard-acknowledged.png", full_page=True)

        page.goto(f"{url}/dashboard?lang=ko")
        assert "이상 사례" in page.content() and "제품별" in page.content() and "u 관리도" in page.content()
        context.close()
        browser.close()
    assert requested and all(u.startswith(url) for u in requested), [u for u in requested if not u.startswith(url)]
    listed = httpx.get(f"{url}/v1/analytics/alarms", headers=admin).json()["alarms"]
    assert sum(a["acknowledged_by"] == "kim" for a in listed) == len(raised)
