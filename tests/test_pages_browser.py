"""The review pages in a real browser (Debian's chromium driven by Playwright), as a
specification of what a reviewer who has never seen the system does: sign in, clear a queue of
20 flagged frames with the keyboard, correct boxes, draw a missed defect, survive a reload and a
dropped connection, filter by station, bulk-mark, sign out and be refused; no page asks for
anything outside 127.0.0.1. Screenshots for docs/review.md are made here, not by hand
(with QC_DOCS_SCREENSHOTS=1: tests/conftest.py's docs_screenshot).

The service is the real one (uvicorn on a free port) with the briefly trained test model, on
SQLite and, with QC_TEST_POSTGRES_URL set, on PostgreSQL. Never `playwright install`: the
browser is /usr/bin/chromium (apt-get install chromium); without it these tests skip."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import CHROMIUM, POSTGRES_URL, docs_screenshot, launch_chromium, postgres_schema_url
from tests.service_harness import served_in_thread

PASSWORD = "line-side-pc-42"
FLAGGING = {"default": {"fail_conf": 0.6, "review_conf": 0.05}}


pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium (apt-get install chromium)"),
]


@dataclass
class Live:
    url: str
    settings: object
    admin: dict[str, str]
    line1: list[str]  # flagged inspection ids
    line2: list[str]

    def reviews(self, inspection_id: str) -> list[dict]:
        response = httpx.get(f"{self.url}/v1/inspections/{inspection_id}/reviews", headers=self.admin)
        return response.json()["history"]

    def remaining(self, **filters) -> int:
        return httpx.get(f"{self.url}/v1/reviews", params=filters, headers=self.admin).json()["remaining"]


def _flag(db, settings, station: str, images: list[Path], names: dict[int, str], want: int) -> list[str]:
    """`want` flagged frames at `station`: synthetic images whose true defects are the "model's"
    boxes (the briefly trained test model scores every box alike, which makes no review to
    speak of), stored as the service stores them: image file first, then the record."""
    import cv2

    from inspection.rules import StationRules, Verdict
    from inspection.store.images import ImageStore
    from inspection.store.records import InspectionRecord, RecordStore

    records, files = RecordStore(db), ImageStore(settings.images_dir)
    records.add_station(station, rules=StationRules.model_validate(FLAGGING))
    flagged = []
    for n, image in enumerate(images[:want]):
        height, width = cv2.imread(str(image)).shape[:2]
        detections = []
        label = image.parent.parent.parent / "labels" / image.parent.name / f"{image.stem}.txt"
        for row, line in enumerate(label.read_text().split("\n")[:4]):
            if not line.strip():
                continue
            cls, cx, cy, w, h = line.split()
            cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
            detections.append({"class": names[int(cls)], "class_id": int(cls), "confidence": round(0.9 - 0.15 * row, 2),
                               "box": [round(cx - w / 2, 2), round(cy - h / 2, 2), round(cx + w / 2, 2),
                                       round(cy + h / 2, 2)], "area": round(w * h, 1)})
        verdict = Verdict.FAIL if n % 3 == 0 else Verdict.REVIEW
        top = detections[0]["class"] if detections else "scratch"  # the rule's words, as rules.decide writes them
        record = InspectionRecord(
            station_id=station, verdict=verdict, rule=f"{top}: 1 at or above fail_conf 0.6 (best 0.90), 0 tolerated"
            if verdict is Verdict.FAIL else f"{top}: confidence 0.45 in the review band [0.05, 0.6)",
            model_name="default", model_version="v1", rules_version=1,
            width=width, height=height, detections=detections, timings={"total_ms": 12.0},
            part_id=f"{station.upper()}-{n:04d}", image_sha256=files.put(image.read_bytes(), "jpeg"),
            image_format="jpeg")
        records.save_inspection(record)
        flagged.append(record.id)
        time.sleep(0.002)  # ids are ordered by the millisecond
    return flagged


def _labelled(image: Path) -> bool:
    label = image.parent.parent.parent / "labels" / image.parent.name / f"{image.stem}.txt"
    return label.is_file() and len(label.read_text().split()) >= 10  # two boxes or more


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def live(request, trained_model, tmp_path_factory) -> Iterator[Live]:
    pytest.importorskip("playwright")

    from inspection.models.registry import Registry
    from inspection.store.database import Database
    from inspection.store.keys import KeyStore
    from inspection.store.users import UserStore
    from serving.launch import free_port
    from serving.settings import ServeSettings

    database_url, schema, admin_db = "", None, None
    if request.param == "postgresql":
        if not POSTGRES_URL:
            pytest.skip("QC_TEST_POSTGRES_URL is not set")
        from sqlalchemy import text

        schema = f"qc_test_{secrets.token_hex(6)}"
        admin_db = Database(POSTGRES_URL)
        with admin_db.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        database_url = postgres_schema_url(POSTGRES_URL, schema)
    home = tmp_path_factory.mktemp(f"browser-{request.param}")
    port = free_port()
    settings = ServeSettings(home=home, providers="cpu", log_json=False, model_poll_s=3600.0, port=port,
                             pass_sample_rate=0.0, database_url=database_url, timezone="Asia/Seoul")
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    registry.add("default", trained_model.raw, card={"evaluations": {}})
    registry.set_production("default", "v1")
    db = Database.from_settings(settings)
    UserStore(db).add("kim", password=PASSWORD, role="reviewer", display_name="Kim Jiwoo")
    admin = {"Authorization": f"Bearer {KeyStore(db).create(role='admin', name='browser test')}"}
    import yaml

    names = {int(k): v for k, v in yaml.safe_load(Path(trained_model.data_yaml).read_text())["names"].items()}
    images = sorted((Path(trained_model.data_yaml).parent / "images").rglob("*.jpg"))
    line1 = _flag(db, settings, "line1", [i for i in images if i.stat().st_size and _labelled(i)], names, 20)
    line2 = _flag(db, settings, "line2", [i for i in images[::-1] if _labelled(i)], names, 5)
    db.dispose()

    try:
        with served_in_thread(settings) as url:
            yield Live(url=url, settings=settings, admin=admin, line1=line1, line2=line2)
    finally:
        if admin_db is not None:
            from sqlalchemy import text

            with admin_db.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin_db.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = launch_chromium(p)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, live):
    """A fresh browser context at 1366x768 that records every URL the page asks for."""
    # bypass_csp: Playwright's waits evaluate strings, which the pages' own policy forbids.
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US", bypass_csp=True)
    page = context.new_page()
    page.requested = []
    page.on("request", lambda r: page.requested.append(r.url))
    page.set_default_timeout(60000)  # generous: CI runs these beside a loaded 2-core machine
    yield page
    context.close()


def sign_in_by_keyboard(page, live: Live, target: str = "/review?station=line1") -> None:
    page.goto(f"{live.url}{target}")
    assert "/login" in page.url
    # The name field takes the keys once autofocus has put the caret there (on a loaded machine
    # that can come after the load event; typed earlier, the keys would go nowhere).
    page.wait_for_function("document.activeElement && document.activeElement.name === 'name'")
    page.keyboard.type("kim")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#remaining")
    assert "/login" not in page.url
    wait_loaded(page)


def wait_loaded(page) -> None:
    assert page.locator("#remaining").count() == 1, f"not the review page: {page.url}\n{page.content()[:3000]}"
    page.wait_for_function("document.getElementById('remaining').textContent !== '…'")
    page.wait_for_function("document.querySelector('#queue li.current') !== null || "
                           "!document.getElementById('empty').hidden")


def wait_image(page) -> None:
    """The open frame's image has loaded: only then does the page take a decision."""
    page.wait_for_function("document.querySelector('#decide button[data-key=d]') && "
                           "!document.querySelector('#decide button[data-key=d]').disabled")


def wait_saved(page) -> None:
    page.wait_for_function("document.getElementById('unsaved').hidden", timeout=20000)


def left(page) -> int:
    return int(page.text_content("#remaining"))


def current_id(page) -> str:
    return page.get_attribute("#queue li.current", "data-id")


def test_a_new_reviewer_clears_a_queue_of_20_flagged_frames_by_keyboard(page, live):
    sign_in_by_keyboard(page, live)
    assert left(page) == 20
    assert page.locator("#queue li").count() == 20
    wait_image(page)
    assert page.locator("#boxes rect").count() >= 1, "the detections are drawn over the frame"
    trail = page.locator("#trail").get_attribute("href")  # from the frame to its datasets and models
    followed = page.request.get(f"{live.url}{trail}")
    assert trail.endswith("/trail") and followed.status == 200 and "datasets" in followed.json()
    docs_screenshot(page, "review-queue.png")

    decided: dict[str, str] = {}
    # Frame 1: per box: the first box is a false alarm, the frame stays a defect via the others
    # or a drawn box; then the whole frame is confirmed with D.
    first = current_id(page)
    page.keyboard.press("1")
    page.keyboard.press("x")
    page.keyboard.press("d")
    decided[first] = "defect"
    # Frame 2: wrong class on its first box (class picker by digit), then a missed defect drawn with the mouse.
    wait_image(page)
    second = current_id(page)
    page.keyboard.press("1")
    page.keyboard.press("w")
    page.wait_for_selector("#picker:not([hidden])")
    page.keyboard.press("2")
    page.keyboard.press("m")
    box = page.locator("#boxes").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.60, box["y"] + box["height"] * 0.60)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.80, box["y"] + box["height"] * 0.75, steps=5)
    page.mouse.up()
    page.wait_for_selector("#picker:not([hidden])")
    page.keyboard.press("1")
    docs_screenshot(page, "review-frame.png")
    page.keyboard.press("n")
    page.keyboard.type("solder bridge near the edge")
    page.keyboard.press("Enter")
    page.keyboard.press("j")
    decided[second] = "defect"
    # Frames 3 to 10: one key each.
    for n in range(8):
        wait_image(page)
        frame_id = current_id(page)
        key = "f" if n % 2 else "d"
        page.keyboard.press(key)
        decided[frame_id] = "false_alarm" if key == "f" else "defect"
    wait_saved(page)
    assert left(page) == 10

    # Reload mid-queue: every decision is kept, and the queue holds the other ten.
    page.reload()
    wait_loaded(page)
    assert left(page) == 10 and page.locator("#queue li").count() == 10
    assert live.remaining(station="line1") == 10

    # The connection drops: decisions wait in the browser, shown as unsaved, and go when it is back.
    # (A frame is decided only once its image has loaded; the page fetches the next frame's
    # image ahead, so the next one shows even offline.)
    wait_image(page)
    page.wait_for_function("document.getElementById('frame').dataset.ahead === "
                           "document.querySelector('#queue li.current + li').dataset.id")
    page.context.set_offline(True)
    for _ in range(2):
        wait_image(page)
        frame_id = current_id(page)
        page.keyboard.press("f")
        decided[frame_id] = "false_alarm"
    page.wait_for_function("!document.getElementById('unsaved').hidden")
    assert "2" in page.text_content("#unsaved")
    page.context.set_offline(False)
    page.reload()  # even a reload before they were sent loses nothing
    wait_loaded(page)
    wait_saved(page)

    # Undo: the last decision is taken back (a new row in the trail), then made again.
    undone = list(decided)[-1]
    page.keyboard.press("u")
    wait_saved(page)
    assert live.reviews(undone)[-1]["decision"] == "retracted"
    page.wait_for_function(f"document.querySelector('#queue li.current').dataset.id === '{undone}'")
    wait_image(page)
    page.keyboard.press("f")
    wait_saved(page)

    page.reload()
    wait_loaded(page)
    while left(page) > 0:
        wait_image(page)
        frame_id = current_id(page)
        page.keyboard.press("d")
        decided[frame_id] = "defect"
        page.wait_for_function(f"document.querySelector('#queue li.current') === null || "
                               f"document.querySelector('#queue li.current').dataset.id !== '{frame_id}' || "
                               f"document.getElementById('remaining').textContent === '0'")
    wait_saved(page)
    assert live.remaining(station="line1") == 0
    assert sorted(decided) == sorted(live.line1)

    # The audit trail: who, when, what, and the corrected boxes in image pixels.
    for frame_id, decision in decided.items():
        trail = live.reviews(frame_id)
        assert trail[-1]["decision"] == decision and trail[-1]["reviewer"] == "kim"
        assert trail[-1]["created_at"].endswith("Z")
    first_boxes = live.reviews(first)[-1]["boxes"]
    assert first_boxes[0]["decision"] == "false_alarm" and first_boxes[0]["detection"] == 0
    second_review = live.reviews(second)[-1]
    kinds = [b["decision"] for b in second_review["boxes"]]
    assert kinds[0] == "wrong_class" and second_review["boxes"][0]["class"] != second_review["boxes"][0]["model_class"]
    missed = [b for b in second_review["boxes"] if b["decision"] == "missed"]
    assert len(missed) == 1
    x1, y1, x2, y2 = missed[0]["xyxy"]
    shown = httpx.get(f"{live.url}/v1/inspections/{second}", headers=live.admin).json()
    width, height = shown["width"], shown["height"]
    assert 0.55 * width < x1 < 0.65 * width and 0.75 * width < x2 < 0.85 * width, "where it was drawn"
    assert 0.55 * height < y1 < 0.65 * height and 0.70 * height < y2 < 0.80 * height
    assert second_review["note"] == "solder bridge near the edge"

    outside = [u for u in page.requested if not u.startswith(f"{live.url}/")]
    assert outside == [], "a page asked for something outside 127.0.0.1"


def test_filter_by_station_bulk_mark_then_sign_out_and_be_refused(page, live):
    sign_in_by_keyboard(page, live, "/review")
    page.select_option("select[name=station]", "line2")
    page.select_option("select[name=verdict]", "")
    page.click("#filters button[type=submit]")
    page.wait_for_function("document.getElementById('remaining').textContent === '5'")
    stations = {page.text_content(f"#queue li:nth-child({n}) .station") for n in range(1, 6)}
    assert stations == {"line2"}
    page.locator("body").click(position={"x": 5, "y": 300})  # leave the filter form; keys go to the page
    page.keyboard.press("a")
    page.wait_for_selector("#bulk:not([hidden])")
    assert "5" in page.text_content("#bulk-text")
    page.keyboard.press("f")
    page.wait_for_function("document.getElementById('remaining').textContent === '0'")
    assert live.remaining(station="line2") == 0
    assert all(live.reviews(i)[-1]["decision"] == "false_alarm" for i in live.line2)

    page.click("#sign-out")
    page.wait_for_url("**/login")
    page.goto(f"{live.url}/review")
    assert "/login" in page.url
    refused = page.request.get(f"{live.url}/v1/reviews")
    assert refused.status == 401
    outside = [u for u in page.requested if not u.startswith(f"{live.url}/")]
    assert outside == []


def test_the_pages_in_korean_on_a_10_inch_tablet(browser, live):
    context = browser.new_context(viewport={"width": 800, "height": 1280}, locale="ko-KR",
                                  extra_http_headers={"Accept-Language": "ko-KR,ko;q=0.9"}, has_touch=True,
                                  bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{live.url}/login")
        assert page.locator("h1").text_content() == "로그인"
        page.fill("input[name=name]", "kim")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#remaining")
        page.goto(f"{live.url}/review?state=all&station=line1")
        wait_loaded(page)
        assert "남음" in page.text_content("header")
        config = json.loads(page.text_content("#config"))
        assert config["timezone"] == "Asia/Seoul" and config["lang"] == "ko"
        # Dates are the plant's (Seoul) time, whatever the tablet's own zone.
        first = page.text_content("#queue li.current .when")
        created = httpx.get(f"{live.url}/v1/inspections/{current_id(page)}", headers=live.admin).json()["created_at"]
        seoul = datetime.fromisoformat(created).astimezone(ZoneInfo("Asia/Seoul"))
        assert first == seoul.strftime("%Y-%m-%d %H:%M:%S")  # one calendar, year first, in Korean too
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], "nothing wider than the tablet's screen"
        targets = page.evaluate("Array.from(document.querySelectorAll('#frame .actions button'))"
                                ".map(b => b.getBoundingClientRect().height)")
        assert min(targets) >= 44
        page.wait_for_function("document.getElementById('image').complete")
        docs_screenshot(page, "review-tablet-ko.png")
        page.click("nav.langs a[data-lang=en]")
        page.wait_for_function("document.querySelector('h1, .brand').textContent.includes('QC review')")
    finally:
        context.close()
