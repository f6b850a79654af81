"""The review page on a 1366x768 line monitor, as a specification (issue 26): the decision
buttons and the whole frame are in sight without scrolling, in English and Korean; the class
picker sits beside the frame, not over it; labels do not overlap and the selected box has its
own colour; no decision is taken before the frame's image has loaded; a missed defect is drawn
and saved with the keyboard alone; and one box correction leaves the other boxes "not decided
yet" and writes one row (the same decision again writes none).

The service, the browser and the 20 flagged frames are those of tests/test_pages_browser.py
(imported fixtures; this module gets its own service). With QC_DOCS_SCREENSHOTS=1 the
screenshots go to docs/images/review-1366x768.png and review-1366x768-ko.png (docs/review.md
shows them); a plain run writes none."""

from __future__ import annotations

import re

import pytest

from tests import test_pages_browser as shared
from tests.conftest import docs_screenshot
from tests.test_pages_browser import (
    CHROMIUM,
    Live,
    current_id,
    sign_in_by_keyboard,
    wait_loaded,
    wait_saved,
)

# The service with its 20 flagged frames, the browser, and a fresh 1366x768 page (fixtures).
browser, live, page = shared.browser, shared.live, shared.page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium (apt-get install chromium)"),
]

WIDTH, HEIGHT = 1366, 768
READY = ("document.querySelector('#decide button[data-key=d]') && "
         "!document.querySelector('#decide button[data-key=d]').disabled")


def wait_image(page) -> None:
    """The frame's image has loaded and the decisions are open."""
    page.wait_for_function(READY)


def inside_viewport(box: dict | None) -> bool:
    return (box is not None and box["x"] >= 0 and box["y"] >= 0
            and box["x"] + box["width"] <= WIDTH + 0.5 and box["y"] + box["height"] <= HEIGHT + 0.5)


def overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] - 0.5 and b["x"] < a["x"] + a["width"] - 0.5
            and a["y"] < b["y"] + b["height"] - 0.5 and b["y"] < a["y"] + a["height"] - 0.5)


def assert_fits(page) -> None:
    """Everything a decision needs is on the screen, and the page does not scroll."""
    size = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight,"
                         " window.innerWidth, window.innerHeight, window.scrollY]")
    assert size[0] <= size[2] and size[1] <= size[3] and size[4] == 0, f"the page scrolls: {size}"
    buttons = page.locator("#decide button")
    assert buttons.count() == 9
    for n in range(buttons.count()):
        box = buttons.nth(n).bounding_box()
        assert inside_viewport(box) and box["height"] >= 44, f"{buttons.nth(n).text_content()!r} at {box}"
    image, stage = page.locator("#image").bounding_box(), page.locator("#stage").bounding_box()
    assert inside_viewport(image), f"the frame is cut: {image}"
    assert image["x"] >= stage["x"] - 0.5 and image["x"] + image["width"] <= stage["x"] + stage["width"] + 0.5
    assert image["y"] >= stage["y"] - 0.5 and image["y"] + image["height"] <= stage["y"] + stage["height"] + 0.5
    assert max(image["width"] / stage["width"], image["height"] / stage["height"]) > 0.97, "scaled to fit the stage"
    # The header ("N left", "unsaved") and the one row of filters stay at the top.
    assert page.locator("#remaining").bounding_box()["y"] < 40
    filters = page.locator("#filters").bounding_box()
    assert filters["height"] < 52, "the filters are folded into one row"


def assert_labels_apart(page) -> None:
    plates = page.locator("#boxes rect.plate")
    boxes = [plates.nth(n).bounding_box() for n in range(plates.count())]
    assert len(boxes) >= 2
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            assert not overlap(boxes[a], boxes[b]), f"labels {a + 1} and {b + 1} overlap"


def open_frame(page, live: Live, frame_id: str) -> None:
    page.goto(f"{live.url}/review?station=line1&state=all#{frame_id}")
    wait_loaded(page)
    page.wait_for_function(f"document.querySelector('#queue li.current').dataset.id === '{frame_id}'")
    wait_image(page)


def test_the_decision_buttons_and_the_whole_frame_fit_1366x768_in_english_and_korean(page, live, browser,
                                                                                      tmp_path):
    sign_in_by_keyboard(page, live)
    wait_image(page)
    assert_fits(page)
    assert_labels_apart(page)
    # The selected box has a colour of its own, in the frame and in the list.
    page.keyboard.press("1")
    strokes = page.evaluate("Array.from(document.querySelectorAll('#boxes rect.box'))"
                            ".map(r => [r.classList.contains('selected'), getComputedStyle(r).stroke])")
    selected = {s for chosen, s in strokes if chosen}
    assert len(selected) == 1 and selected.isdisjoint({s for chosen, s in strokes if not chosen})
    assert "not decided yet" in page.text_content("#box-list") and "open" not in page.text_content("#box-list")
    rule = page.get_attribute("#rule", "title")  # the rule's own text, e.g. "...in the review band [0.05, 0.6)"
    assert "review band" in rule and rule not in page.text_content("#facts"), "in words, not the raw code"
    assert "a person decides" in page.text_content("#rule")
    # One calendar: the plant's year-first time in the queue and the facts, in both languages,
    # and From/To typed the same way (not the browser's own month-first date picker).
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", page.text_content("#queue li.current .when").strip())
    assert page.get_attribute("input[name=since]", "placeholder") == "YYYY-MM-DD HH:MM"
    docs_screenshot(page, "review-1366x768.png")
    # The class picker opens beside the frame, not over it, and the buttons stay in sight.
    page.keyboard.press("w")
    page.wait_for_selector("#picker:not([hidden])")
    assert not overlap(page.locator("#picker").bounding_box(), page.locator("#stage").bounding_box())
    assert_fits(page)
    page.keyboard.press("Escape")
    assert page.locator("#picker").is_hidden() and live.reviews(current_id(page)) == []

    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, locale="ko-KR", bypass_csp=True,
                                  extra_http_headers={"Accept-Language": "ko-KR,ko;q=0.9"})
    korean = context.new_page()
    korean.set_default_timeout(60000)
    try:
        sign_in_by_keyboard(korean, live)
        wait_image(korean)
        assert "남음" in korean.text_content("header") and "필터 더 보기" in korean.text_content("#filters")
        assert_fits(korean)
        korean.keyboard.press("1")
        docs_screenshot(korean, "review-1366x768-ko.png")
    finally:
        context.close()


def test_a_decision_before_the_image_has_loaded_is_refused(page, live):
    held, released = [], []

    def hold(route) -> None:  # the image request waits, unanswered, until released below
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r".*/review/image/.*"), hold)
    sign_in_by_keyboard(page, live)
    frame_id = current_id(page)
    page.wait_for_function("document.getElementById('image').getAttribute('src') !== null")
    assert held, "the image is on its way, and held back"
    for key in ("d", "f", "1", "c", "m"):
        page.keyboard.press(key)
    assert "not loaded" in page.text_content("#status")
    assert page.locator("#decide button[data-key=d]").is_disabled()
    assert page.locator("#unsaved").is_hidden() and live.reviews(frame_id) == []

    released.append(True)
    for route in held:
        route.continue_()
    wait_image(page)
    page.keyboard.press("d")
    wait_saved(page)
    assert [r["decision"] for r in live.reviews(frame_id)] == ["defect"]


def test_a_missed_defect_is_drawn_and_saved_with_the_keyboard_alone(page, live):
    sign_in_by_keyboard(page, live)
    wait_image(page)
    frame_id = current_id(page)
    assert live.reviews(frame_id) == []
    page.keyboard.press("m")
    for key in ["ArrowRight"] * 3 + ["ArrowUp"] * 2 + ["Shift+ArrowRight"] * 4 + ["Shift+ArrowDown"] * 2:
        page.keyboard.press(key)
    assert current_id(page) == frame_id, "the arrow keys move the box, not the queue"
    page.keyboard.press("Enter")
    page.wait_for_selector("#picker:not([hidden])")
    page.keyboard.press("1")
    wait_saved(page)

    review = live.reviews(frame_id)[-1]
    width = page.evaluate("document.getElementById('image').naturalWidth")
    height = page.evaluate("document.getElementById('image').naturalHeight")
    side, step = min(width, height) / 6, max(1, round(min(width, height) / 40))
    x1, y1 = width / 2 - side / 2 + 3 * step, height / 2 - side / 2 - 2 * step
    expected = [x1, y1, x1 + side + 4 * step, y1 + side + 2 * step]
    missed = [b for b in review["boxes"] if b["decision"] == "missed"]
    assert len(missed) == 1 and missed[0]["xyxy"] == pytest.approx(expected, abs=0.2)
    assert review["decision"] == "defect"
    assert {b["decision"] for b in review["boxes"] if b["decision"] != "missed"} == {"undecided"}, \
        "drawing a missed defect decides no model box"
    assert "missed defect" in page.text_content("#box-list")


def test_one_box_correction_leaves_the_other_boxes_undecided_and_writes_one_row(page, live):
    sign_in_by_keyboard(page, live)
    frame_id = live.line1[-5]
    open_frame(page, live, frame_id)
    assert page.locator("#box-list li").count() >= 2
    page.keyboard.press("1")
    page.keyboard.press("x")
    wait_saved(page)
    trail = live.reviews(frame_id)
    assert len(trail) == 1
    rest = len(trail[0]["boxes"]) - 1
    assert [b["decision"] for b in trail[0]["boxes"]] == ["false_alarm"] + ["undecided"] * rest
    assert page.text_content("#box-list li:nth-child(2)").endswith("not decided yet")

    # The same correction again, or after a reload: nothing new to write.
    page.keyboard.press("x")
    assert "nothing changed" in page.text_content("#status")
    page.reload()
    wait_loaded(page)
    page.wait_for_function(f"document.querySelector('#queue li.current').dataset.id === '{frame_id}'")
    wait_image(page)
    page.keyboard.press("1")
    page.keyboard.press("x")
    wait_saved(page)
    assert len(live.reviews(frame_id)) == 1, "an identical decision is not a second audit row"

    # D then decides the rest: the boxes not decided yet become defects, the correction stays.
    page.keyboard.press("d")
    wait_saved(page)
    trail = live.reviews(frame_id)
    assert len(trail) == 2
    rest = len(trail[-1]["boxes"]) - 1
    assert [b["decision"] for b in trail[-1]["boxes"]] == ["false_alarm"] + ["confirmed"] * rest
