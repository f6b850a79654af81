"""The review API and pages over HTTP, as a specification: people sign in (and are throttled),
the cookie is HttpOnly and SameSite=Strict, every change through it needs the CSRF token,
station keys never review; decisions append to the trail, the queue shrinks, bulk decisions
cover exactly what was seen, and the metrics count it all.

Runs on SQLite and, with QC_TEST_POSTGRES_URL set, on PostgreSQL (the flow test)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from serving.pages.language import DYNAMIC_MESSAGES, catalogue
from tests.service_harness import FAIL_ALL, REVIEW_ALL, Service, frame, running

PASSWORD = "line-side-pc-42"


@pytest.fixture
def service(untrained_model, tmp_path, request) -> Iterator[Service]:
    url = request.getfixturevalue("postgres_url") if getattr(request, "param", "") == "postgresql" else ""
    with running(tmp_path / "home", untrained_model, pass_sample_rate=0.0, database_url=url) as started:
        yield started


def sign_in(service: Service, name: str = "kim", password: str = PASSWORD, role: str = "reviewer"):
    """Create the user (once) and sign in through the form; returns the page's CSRF token."""
    from inspection.store.users import UserStore

    users = UserStore(service.state.db)
    if name not in {u.name for u in users.list()}:
        users.add(name, password=password, role=role, display_name=name.title())
    form = service.client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    response = service.client.post("/login", data={"name": name, "password": password, "csrf": token,
                                                   "next": "/review"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    page = service.client.get("/review")
    assert page.status_code == 200
    return re.search(r'"csrf": "([^"]+)"', page.text).group(1)


def flag(service: Service, n: int, rules=REVIEW_ALL, station: str | None = None) -> tuple[str, list[str]]:
    station = station or service.add_station(rules)
    ids = []
    for i in range(n):
        response = service.inspect(station, frame(seed=100 + i), headers={"X-Part-Id": f"P-{i}"})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return station, ids


def test_the_review_page_sends_strangers_to_sign_in_and_refuses_station_keys(service):
    response = service.client.get("/review", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/review")
    station, _ = flag(service, 1)
    station_key = service.key("station", (station,))
    assert service.client.get("/review", headers=station_key, follow_redirects=False).status_code == 303
    listed = service.client.get("/v1/reviews", headers=station_key)
    assert listed.status_code == 403 and "station key cannot review" in listed.json()["detail"]
    assert service.client.get("/v1/reviews").status_code == 401


def test_the_session_cookie_is_httponly_and_samesite_strict_and_ends_at_sign_out(service):
    csrf = sign_in(service)
    cookie = next(c for c in service.client.cookies.jar if c.name == "qc_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite", "").lower() == "strict"
    assert service.client.get("/v1/reviews").status_code == 200
    assert service.client.post("/logout", data={"csrf": "wrong"}, follow_redirects=False).status_code == 403
    assert service.client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert service.client.get("/v1/reviews").status_code == 401
    service.client.cookies.set("qc_session", cookie.value)  # the old cookie, replayed
    assert service.client.get("/v1/reviews").status_code == 401


def test_changes_through_the_cookie_need_the_csrf_token(service):
    csrf = sign_in(service)
    _, ids = flag(service, 1)
    url = f"/v1/inspections/{ids[0]}/reviews"
    refused = service.client.post(url, json={"decision": "defect"})
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["detail"]
    assert service.client.post(url, json={"decision": "defect"}, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    assert service.client.post(url, json={"decision": "defect"}, headers={"X-CSRF-Token": csrf}).status_code == 201


def test_sign_in_is_refused_with_a_reason_and_throttled_after_repeated_failures(service):
    sign_in(service)
    service.client.cookies.clear()
    form = service.client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    statuses = []
    for _ in range(6):  # each answer is the form again, with a fresh token
        response = service.client.post("/login", data={"name": "kim", "password": "not-it-at-all", "csrf": token})
        statuses.append(response.status_code)
        token = re.search(r'name="csrf" value="([^"]+)"', response.text).group(1)
    assert statuses[:4] == [401] * 4 and statuses[-1] == 429
    assert int(response.headers["retry-after"]) > 0 and "try again" in response.text
    no_token = service.client.post("/login", data={"name": "kim", "password": PASSWORD, "csrf": "forged"})
    assert no_token.status_code == 403


def test_a_decision_appends_to_the_trail_shrinks_the_queue_and_is_counted(service):
    csrf = sign_in(service)
    station, ids = flag(service, 3)
    queue = service.client.get("/v1/reviews", params={"station": station}).json()
    assert queue["remaining"] == 3 and [i["inspection"]["id"] for i in queue["items"]] == ids[::-1]
    headers = {"X-CSRF-Token": csrf}
    first = service.client.post(f"/v1/inspections/{ids[0]}/reviews", headers=headers,
                                json={"decision": "false_alarm", "note": "dust", "client_id": "c1"})
    assert first.status_code == 201, first.text
    replay = service.client.post(f"/v1/inspections/{ids[0]}/reviews", headers=headers,
                                 json={"decision": "false_alarm", "note": "dust", "client_id": "c1"})
    assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
    known = min(service.state.manager.current.detector.names.values())  # a class the model detects
    second = service.client.post(f"/v1/inspections/{ids[0]}/reviews", headers=headers, json={
        "decision": "defect", "boxes": [{"decision": "missed", "class": known, "xyxy": [10, 10, 50, 60]}]})
    assert second.status_code == 201
    history = service.client.get(f"/v1/inspections/{ids[0]}/reviews").json()
    assert [r["decision"] for r in history["history"]] == ["false_alarm", "defect"]
    assert history["latest"]["id"] == second.json()["id"] and history["latest"]["reviewer"] == "kim"
    missed = [b for b in history["latest"]["boxes"] if b["decision"] == "missed"]
    assert missed == [{"decision": "missed", "class": known, "xyxy": [10.0, 10.0, 50.0, 60.0],
                       "detection": None, "model_class": None}]
    assert service.client.get("/v1/reviews", params={"station": station}).json()["remaining"] == 2
    metrics = service.client.get("/metrics", headers=service.admin).text
    assert f'qc_review_backlog{{station="{station}"}} 2.0' in metrics
    assert 'qc_review_outcomes_total{decision="false_alarm",model_verdict="REVIEW"} 1.0' in metrics
    assert 'qc_review_box_decisions_total{decision="missed"} 1.0' in metrics
    assert "qc_review_delay_seconds_count 2.0" in metrics


def test_one_box_corrected_writes_one_row_and_leaves_the_other_boxes_undecided(service):
    from inspection.rules import Verdict
    from inspection.store.records import InspectionRecord, RecordStore

    csrf = sign_in(service)
    station, _ = flag(service, 0)
    known = sorted(service.state.manager.current.detector.names.values())[:3]
    assert len(known) >= 2
    detections = [{"class": name, "class_id": i, "confidence": 0.9, "box": [10.0 + 30 * i, 10.0, 30.0 + 30 * i, 40.0],
                   "area": 600.0} for i, name in enumerate(known)]
    record, _ = RecordStore(service.state.db).save_inspection(InspectionRecord(
        station_id=station, verdict=Verdict.FAIL, rule="test", model_name="default", model_version="v1",
        rules_version=1, width=320, height=240, detections=detections, timings={}))
    url = f"/v1/inspections/{record.id}/reviews"
    # What the page sends when the reviewer presses 1 then X: box 0 rejected, the others undecided.
    body = {"decision": "defect", "boxes": [{"decision": "false_alarm", "detection": 0}] + [
        {"decision": "undecided", "detection": i} for i in range(1, len(known))]}
    first = service.client.post(url, headers={"X-CSRF-Token": csrf}, json={**body, "client_id": "x1"})
    assert first.status_code == 201, first.text
    assert [b["decision"] for b in first.json()["boxes"]] == ["false_alarm"] + ["undecided"] * (len(known) - 1)
    # The same decision again (a key pressed twice, with the page's next client_id): the stored row.
    again = service.client.post(url, headers={"X-CSRF-Token": csrf}, json={**body, "client_id": "x2"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert len(service.client.get(url).json()["history"]) == 1
    metrics = service.client.get("/metrics", headers=service.admin).text
    assert 'qc_review_box_decisions_total{decision="confirmed"}' not in metrics


def test_a_staff_key_reviews_without_a_session_and_is_named_in_the_trail(service):
    _, ids = flag(service, 1, FAIL_ALL)
    key = service.key("reviewer")
    response = service.client.post(f"/v1/inspections/{ids[0]}/reviews", headers=key, json={"decision": "defect"})
    assert response.status_code == 201
    assert response.json()["reviewer"].startswith("key:") and response.json()["model_verdict"] == "FAIL"
    assert {b["decision"] for b in response.json()["boxes"]} == {"confirmed"}


def test_an_inspection_read_back_shows_its_latest_review_and_the_length_of_its_trail(service):
    _, ids = flag(service, 1, FAIL_ALL)
    key = service.key("reviewer")
    before = service.client.get(f"/v1/inspections/{ids[0]}", headers=key).json()
    assert before["latest_review"] is None and before["reviews"] == 0
    for decision in ("defect", "false_alarm"):
        posted = service.client.post(f"/v1/inspections/{ids[0]}/reviews", headers=key, json={"decision": decision})
        assert posted.status_code == 201, posted.text
    after = service.client.get(f"/v1/inspections/{ids[0]}", headers=key).json()
    assert after["reviews"] == 2 and after["latest_review"]["decision"] == "false_alarm"
    assert after["verdict"] == "FAIL"  # the record keeps what the line was told


def test_a_bulk_decision_needs_the_count_the_reviewer_saw(service):
    csrf = sign_in(service)
    station, ids = flag(service, 4)
    headers = {"X-CSRF-Token": csrf}
    stale = service.client.post("/v1/reviews/bulk", params={"station": station}, headers=headers,
                                json={"decision": "false_alarm", "expected": 3})
    assert stale.status_code == 409 and "not 3" in stale.json()["detail"]
    done = service.client.post("/v1/reviews/bulk", params={"station": station, "verdict": "REVIEW"},
                               headers=headers, json={"decision": "false_alarm", "expected": 4, "note": "lens"})
    assert done.status_code == 200 and done.json()["reviewed"] == 4
    assert sorted(done.json()["inspection_ids"]) == sorted(ids)
    assert service.client.get("/v1/reviews", params={"station": station}).json()["remaining"] == 0


def test_filter_times_without_an_offset_are_the_plants_time(untrained_model, tmp_path):
    with running(tmp_path / "home", untrained_model, pass_sample_rate=0.0, timezone="Asia/Seoul") as service:
        csrf = sign_in(service)
        assert csrf
        station, ids = flag(service, 1)
        created = service.client.get(f"/v1/inspections/{ids[0]}", headers=service.admin).json()["created_at"]
        from datetime import datetime, timedelta

        utc = datetime.fromisoformat(created.rstrip("Z"))
        seoul = (utc + timedelta(hours=9)).replace(microsecond=0)
        def listed(**params: str) -> int:
            return service.client.get("/v1/reviews", params={"station": station, **params}).json()["remaining"]

        assert listed(since=(seoul - timedelta(minutes=1)).isoformat()) == 1
        assert listed(since=(seoul + timedelta(minutes=1)).isoformat()) == 0
        assert listed(since=(utc - timedelta(minutes=1)).isoformat() + "Z") == 1


def test_the_pages_follow_the_browsers_language_and_the_switch(service):
    assert "로그인" in service.client.get("/login", headers={"Accept-Language": "ko-KR,ko;q=0.9"}).text
    assert "Sign in" in service.client.get("/login", headers={"Accept-Language": "en-US"}).text
    switched = service.client.get("/login?lang=ko", headers={"Accept-Language": "en-US"})
    assert "로그인" in switched.text and service.client.cookies.get("qc_lang") == "ko"
    assert "로그인" in service.client.get("/login", headers={"Accept-Language": "en-US"}).text
    csp = switched.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp


def test_every_message_of_the_pages_has_a_korean_translation():
    from pathlib import Path

    pages = Path(__file__).resolve().parents[1] / "serving"
    used = set(DYNAMIC_MESSAGES)
    for template in (pages / "pages" / "templates").glob("*.html"):
        used |= set(re.findall(r'_\("((?:[^"\\]|\\.)*)"\)', template.read_text()))
    used |= set(re.findall(r'\bt\("((?:[^"\\]|\\.)*)"\)', (pages / "pages" / "static" / "review.js").read_text()))
    for router in (pages / "routers" / "pages").glob("*.py"):  # the page routes, in one place
        used |= set(re.findall(r'\bt\("((?:[^"\\]|\\.)*)"\)', router.read_text()))
    missing = sorted(used - set(catalogue("ko")))
    assert len(used) > 60 and missing == []


@pytest.mark.postgres
@pytest.mark.parametrize("service", ["postgresql"], indirect=True)
def test_the_review_flow_on_postgresql(service):
    csrf = sign_in(service)
    station, ids = flag(service, 2)
    headers = {"X-CSRF-Token": csrf}
    assert service.client.post(f"/v1/inspections/{ids[0]}/reviews", headers=headers,
                               json={"decision": "defect"}).status_code == 201
    assert service.client.post("/v1/reviews/bulk", params={"station": station}, headers=headers,
                               json={"decision": "false_alarm", "expected": 1}).status_code == 200
    assert service.client.get("/v1/reviews", params={"station": station}).json()["remaining"] == 0
    trail = service.client.get(f"/v1/inspections/{ids[1]}/reviews").json()["history"]
    assert [(r["reviewer"], r["decision"]) for r in trail] == [("kim", "false_alarm")]
