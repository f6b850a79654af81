"""The pages as one site, in a real browser (Debian's chromium driven by Playwright) at 1366x768,
as a specification: every page's bar links to the pages the signed-in role may open (review and
dashboard for a reviewer, the Loop page too for an engineer) and marks the one shown; a page the
role may not open answers 403 with a page that says why in words and offers the way on, never
JSON; the Loop page shows who started each turn and from where (a terminal's `qc loop` as
user@host, from the command line) and, in Korean, what the turn and its check say.

With QC_DOCS_SCREENSHOTS=1 the Loop page (English and Korean) and the refusal are written to
docs/images/ for the guides; otherwise nothing in the checkout changes. Never `playwright
install`: the browser is /usr/bin/chromium; without it these tests skip."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import CHROMIUM, docs_screenshot, launch_chromium
from tests.service_harness import served_in_thread

PASSWORD = "line-side-pc-42"
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _refused() -> dict:
    """A turn's result whose candidate the gate refused: better on average, blind to cracks."""
    from inspection.models.gate import compare

    before = {"map50": 0.41, "map50_95": 0.20, "per_class": {"crack": {"ap50": 0.5, "precision": 0.6, "recall": 0.9},
                                                             "dent": {"ap50": 0.3, "precision": 0.5, "recall": 0.5}}}
    after = {"map50": 0.52, "map50_95": 0.26, "per_class": {"crack": {"ap50": 0.4, "precision": 0.6, "recall": 0.6},
                                                            "dent": {"ap50": 0.5, "precision": 0.6, "recall": 0.6}}}
    return {"candidate": "default@v2", "production_before": "default@v1", "dataset": "line@v1", "new_images": 60,
            "holdout": "holdout@v1", "before": before, "after": after, "changed_verdicts": [],
            "gate": compare(before, after).table()}


REFUSED = _refused()

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def live(untrained_model, tmp_path_factory) -> Iterator[tuple[str, object]]:
    """The service with a reviewer (kim), an engineer (lee) and two finished turns: one from
    the Loop page, the latest from a terminal."""
    pytest.importorskip("playwright")

    from inspection.models.registry import Registry
    from inspection.store.database import Database
    from inspection.store.jobs import JobKind, JobState, JobStore
    from inspection.store.users import UserStore
    from serving.launch import free_port
    from serving.settings import ServeSettings

    settings = ServeSettings(home=tmp_path_factory.mktemp("links"), providers="cpu", log_json=False,
                             model_poll_s=3600.0, port=free_port(), pass_sample_rate=0.0, timezone="Asia/Seoul")
    settings.ensure_dirs()
    registry = Registry(settings.models_dir)
    registry.add("default", untrained_model, card={"evaluations": {}})
    registry.set_production("default", "v1")
    db = Database.from_settings(settings)
    users = UserStore(db)
    users.add("kim", password=PASSWORD, role="reviewer", display_name="Kim Jiwoo")
    users.add("lee", password=PASSWORD, role="engineer", display_name="Lee Minho")
    jobs = JobStore(db)
    from_page = jobs.start(JobKind.LOOP, params={"via": "page"}, created_by="lee")
    jobs.finish(from_page.id, JobState.REFUSED, result=REFUSED)
    # As `qc loop` in a terminal records it (training/loop.py, qc/commands/loop.py).
    from_shell = jobs.start(JobKind.LOOP, params={"via": "cli"}, created_by="lee@line-pc-3")
    jobs.progress(from_shell.id, step="pull", message="pulling annotations from Label Studio",
                  outputs={"version": None, "note": "Label Studio not configured; using the dataset as it is"})
    jobs.progress(from_shell.id, step="check", message="counting new labelled images in line",
                  outputs={"version": "line@v2", "new": 12, "inspections": []})
    jobs.finish(from_shell.id, JobState.SKIPPED, result={"message": "12 new labelled images in line@v2, 50 needed "
                                                                    "(QC_LOOP_MIN_NEW)"})
    db.dispose()
    with served_in_thread(settings) as url:
        yield url, from_page.id


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = launch_chromium(p)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(60000)  # generous: CI runs this beside a loaded 2-core machine
    yield page
    context.close()


def sign_in(page, url: str, name: str, target: str) -> None:
    page.goto(f"{url}{target}")
    assert "/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{target}**")


def bar(page) -> list[str]:
    """The pages the bar links to, in order."""
    links = page.locator("header nav.pages a")
    return [links.nth(i).get_attribute("href") or "" for i in range(links.count())]


def current(page) -> str | None:
    return page.locator("header nav.pages a[aria-current=page]").get_attribute("href")


def fits(page) -> None:
    """No sideways scrolling (at 1366 px, or the tablet's width)."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.url


def test_a_reviewer_goes_between_review_and_dashboard_and_is_shown_the_way_from_the_loop_page(live, page):
    url, _ = live
    sign_in(page, url, "kim", "/review")
    assert bar(page) == ["/review", "/dashboard"] and current(page) == "/review"
    fits(page)
    page.click("header nav.pages a[href='/dashboard']")
    page.wait_for_url("**/dashboard")
    assert bar(page) == ["/review", "/dashboard"] and current(page) == "/dashboard"
    fits(page)
    # Freezing control limits is an engineer's: a reviewer's form post gets the page that says so.
    csrf = page.locator("form.logout input[name=csrf]").get_attribute("value") or ""
    frozen = page.request.post(f"{url}/dashboard/limits", form={"csrf": csrf, "station": "line1", "hours": "8"})
    assert frozen.status == 403 and "Freezing control limits is for engineers and admins." in frozen.text()
    assert "the role engineer or above" in frozen.text()

    # A bookmark to the Loop page: a page that says no, in words, with the way on.
    answer = page.goto(f"{url}/loop")
    assert answer is not None and answer.status == 403
    assert answer.headers["content-type"].startswith("text/html")
    refusal = page.locator("#forbidden")
    assert "The Loop page is for engineers and admins." in refusal.inner_text()
    assert "Kim Jiwoo" in refusal.inner_text() and "engineer" in refusal.inner_text()
    ways = refusal.locator("ul.ways a")
    assert [ways.nth(i).get_attribute("href") for i in range(ways.count())] == ["/review", "/dashboard"]
    assert page.locator("#sign-out").is_visible()
    fits(page)
    docs_screenshot(page, "forbidden-loop.png")
    ways.first.click()
    page.wait_for_url("**/review")

    # The form a reviewer cannot use either: the same page, not {"detail": ...}.
    posted = page.request.post(f"{url}/loop/run", form={"csrf": "x"})
    assert posted.status == 403 and "<main class=\"forbidden-box\"" in posted.text()

    page.goto(f"{url}/loop?lang=ko")
    assert "학습 루프 페이지는 엔지니어와 관리자만" in page.locator("#forbidden").inner_text()
    assert page.locator("header nav.pages a[href='/dashboard']").inner_text() == "대시보드"

    # On a 10-inch tablet held upright the bar wraps; nothing goes off the side.
    page.set_viewport_size({"width": 800, "height": 1280})
    for target in ("/review", "/dashboard", "/loop"):
        page.goto(f"{url}{target}")
        assert page.locator("header nav.pages a[href='/review']").is_visible()
        fits(page)


def test_an_engineer_reaches_every_page_and_the_loop_page_says_who_started_a_turn_and_where(live, page):
    url, _ = live
    sign_in(page, url, "lee", "/loop")
    assert bar(page) == ["/review", "/dashboard", "/loop"] and current(page) == "/loop"
    job = page.locator("#job")
    assert "lee@line-pc-3 (from the command line)" in job.inner_text()
    rows = page.locator("#jobs tbody tr")
    assert rows.count() == 2
    assert "(from the command line)" in rows.nth(0).inner_text()
    assert "lee (on the Loop page)" in rows.nth(1).inner_text()
    page.wait_for_selector("#needs")
    fits(page)
    docs_screenshot(page, "loop.png")

    for target in ("/review", "/dashboard", "/loop"):
        page.click(f"header nav.pages a[href='{target}']")
        page.wait_for_url(f"**{target}")
        assert current(page) == target
        fits(page)


def test_the_loop_page_in_korean_says_what_the_turn_and_the_check_say_in_korean(live, page):
    url, refused_turn = live
    sign_in(page, url, "lee", "/loop")
    page.goto(f"{url}/loop?lang=ko")
    job = page.locator("#job").inner_text()
    assert "lee@line-pc-3 (명령줄에서)" in job
    assert "line@v2에 새 라벨링 이미지 12장, 50장 필요 (QC_LOOP_MIN_NEW)" in job  # the result's message
    steps = page.locator("#job ol.steps li")
    assert steps.nth(0).inner_text() == "라벨 가져오기: Label Studio가 설정되지 않음: 데이터셋을 그대로 사용"
    assert page.locator("#jobs tbody tr").nth(1).inner_text().count("학습 루프 페이지에서") == 1
    # Each need of the check: Korean words; a fix that is only a command stays that command.
    needs = page.locator("#needs li")
    assert needs.count() >= 3
    for i in range(needs.count()):
        says = needs.nth(i).inner_text().split("\n")[0]
        assert HANGUL.search(says.split(":", 1)[1]), says
    fits(page)
    docs_screenshot(page, "loop-ko.png")

    # The gate's table, with its headers and verdicts in Korean: the crack class's recall fell.
    page.goto(f"{url}/loop?job={refused_turn}")
    gate = page.locator("#gate")
    assert gate.locator("thead th").all_inner_texts() == ["지표", "후보 모델", "운영 모델", "변화", "허용 하락", "결과"]
    results = {row.locator("td").first.inner_text(): row.locator("td").last.inner_text()
               for row in gate.locator("tbody tr").all()}
    assert results == {"mAP50-95": "통과", "recall[crack]": "거부", "recall[dent]": "통과"}
    assert "승격 기준 미달" in page.locator("#job h2").inner_text()
