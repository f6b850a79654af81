"""The alarm evaluator as a specification: a step in the defect rate after a frozen baseline
raises an SPC alarm once, a blurred camera raises an equipment alarm that names the lens, a
moved confidence with unchanged images asks for relabeling; alarms reach a webhook and a real
MQTT broker (Debian's mosquitto, started here; skipped when absent); through the real service,
frames posted under rules that fail a chosen share raise an alarm that a reviewer acknowledges
on the dashboard, and /metrics shows the gauges."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from inspection.rules import StationRules, Verdict
from inspection.store.analytics import AlarmKind, AnalyticsStore
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, RecordStore, utcnow
from serving.alarms import AlarmEvaluator, Mqtt, Webhook
from serving.metrics import Metrics
from serving.settings import ServeSettings

# Frames of 320x240 pass and frames of 1280x960 fail under these rules: the untrained test
# model reports the same faint boxes all over every frame, and only a large frame has box
# centres inside the ROI (x > 1000 px). So the share of large frames is the defect rate.
STEP_RULES = {"default": {"fail_conf": 1e-6, "review_conf": 1e-6},
              "roi": [[[1000, 0], [9000, 0], [9000, 9000], [1000, 9000]]]}


def part(defective: bool, seed: int) -> bytes:
    """A blocky random pattern (the same statistics at both sizes once reduced, so the drift
    check sees one camera), large when the part is to fail."""
    pattern = np.random.default_rng(seed).integers(40, 215, (30, 40, 3), dtype=np.uint8)
    size = (1280, 960) if defective else (320, 240)
    ok, data = cv2.imencode(".png", cv2.resize(pattern, size, interpolation=cv2.INTER_NEAREST))
    assert ok
    return data.tobytes()


@pytest.fixture
def line(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/qc.db")
    db.upgrade()
    RecordStore(db).add_station("line1", rules=StationRules())
    yield RecordStore(db), AnalyticsStore(db)
    db.dispose()


def frames(records: RecordStore, start: datetime, n: int, *, fail_every: int = 0, seed: int = 0,
           sharpness: float = 300.0, confidence: float = 0.6, brightness: float = 120.0,
           boxes: int = 1) -> datetime:
    """n frames 2 s apart from `start`: every `fail_every`-th fails with `boxes` scratches."""
    rng = np.random.default_rng(seed)
    when = start
    for i in range(n):
        failed = bool(fail_every) and i % fail_every == 0
        light = brightness * rng.normal(1, 0.02)
        records.save_inspection(InspectionRecord(
            station_id="line1", verdict=Verdict.FAIL if failed else Verdict.PASS, rule="t", model_name="m",
            model_version="v1", rules_version=1, width=64, height=64, timings={}, created_at=when,
            detections=[{"class": "scratch", "class_id": 0, "confidence": 0.9, "box": [0, 0, 9, 9], "area": 81.0}]
            * boxes if failed else [],
            brightness=light, contrast=0.33 * light * rng.normal(1, 0.02),
            sharpness=sharpness * (light / 120) ** 2 * rng.normal(1, 0.05), blue=0.9 * light, green=light,
            red=1.1 * light, max_confidence=float(np.clip(rng.normal(confidence, 0.05), 0, 1))))
        when += timedelta(seconds=2)
    return when


def evaluator(analytics: AnalyticsStore, notifiers=(), **settings) -> AlarmEvaluator:
    return AlarmEvaluator(analytics, ServeSettings(**{"spc_rules": "EWMA,CUSUM,WE1", **settings}),
                          metrics=Metrics(), notifiers=list(notifiers))


def test_a_step_in_the_defect_rate_raises_one_spc_alarm_that_clears_when_the_rate_returns(line):
    records, analytics = line
    start = utcnow() - timedelta(hours=3)
    end = frames(records, start, 1000, fail_every=50)  # 2%
    analytics.freeze("line1", start - timedelta(seconds=1), end, frozen_by="lee", subgroup_size=50)
    check = evaluator(analytics)
    assert check.evaluate() == []
    end = frames(records, end, 300, fail_every=8, seed=1)  # 12.5%
    raised = check.evaluate()
    assert {a.rule for a in raised} >= {"EWMA", "CUSUM"}
    ewma = next(a for a in raised if a.rule == "EWMA")
    assert ewma.kind is AlarmKind.SPC and "defect rate up" in ewma.message and "baseline 2.00%" in ewma.message
    assert ewma.class_name == "" and any(a.class_name == "scratch" for a in raised)
    assert check.evaluate() == []  # still holding: not stored again
    frames(records, end, 2000, seed=2)  # back to no failures: every chart falls back
    check.evaluate()
    assert analytics.active("line1") == {}
    assert len(analytics.alarms()) == len(raised)


def test_more_defects_per_failed_part_raise_a_u_chart_alarm_while_the_defect_rate_holds(line):
    records, analytics = line
    start = utcnow() - timedelta(hours=3)
    end = frames(records, start, 1000, fail_every=10)  # 10% fail, one scratch each: u-bar 0.1
    frozen = analytics.freeze("line1", start - timedelta(seconds=1), end, frozen_by="lee", subgroup_size=50)
    u_limits = next(f.limits for f in frozen if f.class_name == "" and f.limits.kind.value == "u")
    assert u_limits.centre == pytest.approx(0.1)
    check = evaluator(analytics, spc_rules="EWMA,CUSUM,WE1")
    assert check.evaluate() == []
    end = frames(records, end, 200, fail_every=10, boxes=4)  # the same parts fail, with 4 scratches each
    raised = check.evaluate()
    assert [(a.class_name, a.rule) for a in raised] == [("", "u:WE1")]  # the p-charts see no change
    assert "defects per part up" in raised[0].message and "baseline 0.100 per part" in raised[0].message
    assert check.evaluate() == []  # held: not stored twice
    frames(records, end, 1000, fail_every=10, seed=5)  # one scratch per failed part again
    check.evaluate()
    assert analytics.active("line1") == {}


def test_the_u_chart_raises_only_the_zone_rules_named(line):
    records, analytics = line
    start = utcnow() - timedelta(hours=3)
    end = frames(records, start, 1000, fail_every=10)
    analytics.freeze("line1", start - timedelta(seconds=1), end, frozen_by="lee", subgroup_size=50)
    frames(records, end, 200, fail_every=10, boxes=4)
    assert evaluator(analytics, spc_rules="EWMA,CUSUM").evaluate() == []  # the default: p-chart rules only


def test_a_blurred_camera_is_an_equipment_alarm_naming_the_lens_after_two_checks(line):
    records, analytics = line
    start = utcnow() - timedelta(hours=1)
    end = frames(records, start, 300, fail_every=25)
    analytics.freeze("line1", start - timedelta(seconds=1), end, frozen_by="lee", subgroup_size=50)
    check = evaluator(analytics)
    frames(records, end, 60, sharpness=180.0, seed=3)  # 40% less sharp
    assert check.evaluate() == []  # named once: not yet an alarm (QC_DRIFT_CONFIRMATIONS 2)
    raised = check.evaluate()
    assert [(a.kind, a.rule) for a in raised] == [(AlarmKind.EQUIPMENT, "drift:sharpness")]
    assert re.search(r"station line1: sharpness down (3|4)\d% since .*: lens or focus", raised[0].message)


def test_a_moved_confidence_with_steady_images_asks_for_relabeling(line):
    records, analytics = line
    start = utcnow() - timedelta(hours=1)
    end = frames(records, start, 300, fail_every=25)
    analytics.freeze("line1", start - timedelta(seconds=1), end, frozen_by="lee", subgroup_size=50)
    frames(records, end, 60, confidence=0.3, seed=4)
    raised = evaluator(analytics, drift_confirmations=1).evaluate()
    assert [(a.kind, a.rule) for a in raised] == [(AlarmKind.MODEL, "drift:confidence")]
    assert "relabel and retrain" in raised[0].message


class Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list] = []  # shared by the handler instances: one per request

    def do_POST(self):
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_new_alarms_are_posted_to_the_webhook_and_a_dead_receiver_stops_nothing(line):
    _, analytics = line
    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received = []
    dead = Webhook(f"http://127.0.0.1:{free_port()}/nobody")
    check = evaluator(analytics, notifiers=[dead, Webhook(f"http://127.0.0.1:{server.server_port}/hook")])
    try:
        alarm = analytics.raise_alarm(AlarmKind.SPC, "line1", "", "EWMA", "station line1: defect rate up")
        check.notify(alarm)
    finally:
        server.shutdown()
    assert [(m["event"], m["station"], m["rule"], m["message"]) for m in Receiver.received] == [
        ("alarm", "line1", "EWMA", "station line1: defect rate up")]


@pytest.fixture
def mosquitto(tmp_path):
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).is_file():
        pytest.skip("needs Debian's mosquitto (apt-get install mosquitto)")
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port
    broker.terminate()
    broker.wait(timeout=10)


def test_new_alarms_are_published_to_mqtt_per_station(line, mosquitto):
    import paho.mqtt.client as mqtt

    _, analytics = line
    got, subscribed = [], threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_message = lambda _c, _u, message: got.append((message.topic, json.loads(message.payload)))
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.connect("127.0.0.1", mosquitto)
    listener.subscribe("plant/alarms/#", qos=1)
    listener.loop_start()
    try:
        assert subscribed.wait(5)
        alarm = analytics.raise_alarm(AlarmKind.EQUIPMENT, "line1", "", "drift:sharpness",
                                      "station line1: sharpness down 40%: lens or focus")
        evaluator(analytics, notifiers=[Mqtt(f"mqtt://127.0.0.1:{mosquitto}/plant/alarms")]).notify(alarm)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        listener.loop_stop()
        listener.disconnect()
    assert [(topic, body["kind"], body["message"]) for topic, body in got] == [
        ("plant/alarms/line1", "equipment", "station line1: sharpness down 40%: lens or focus")]


def test_through_the_service_a_step_change_is_alarmed_shown_and_acknowledged(untrained_model, tmp_path):
    from tests.service_harness import running
    from tests.test_reviews_api import sign_in

    with running(tmp_path / "home", untrained_model, pass_sample_rate=0.0, alarm_interval_s=0,
                 spc_rules="EWMA,CUSUM") as service:
        station = service.add_station(STEP_RULES, station="line-7")
        rng = np.random.default_rng(7)
        verdicts = [service.inspect(station, part(bool(rng.random() < 0.1), i), kind="png").json()["verdict"]
                    for i in range(100)]
        assert 3 <= verdicts.count("FAIL") <= 20 and set(verdicts) <= {"PASS", "FAIL"}
        engineer = service.key("engineer")
        frozen = service.client.post("/v1/analytics/limits", headers=engineer, json={
            "station": station, "since": "2020-01-01T00:00:00Z", "until": utcnow().isoformat() + "Z",
            "subgroup_size": 10})
        assert frozen.status_code == 201, frozen.text
        assert service.client.post("/v1/analytics/evaluate", headers=engineer).json() == {"raised": []}
        for i in range(60):  # the line starts failing half its parts
            service.inspect(station, part(bool(rng.random() < 0.5), 1000 + i), kind="png")
        raised = service.client.post("/v1/analytics/evaluate", headers=engineer).json()["raised"]
        # EWMA and CUSUM, for the station and for the model's one class ("0"), each once.
        assert sorted((a["class"], a["rule"]) for a in raised) == [("", "CUSUM"), ("", "EWMA"), ("0", "CUSUM"),
                                                                    ("0", "EWMA")]
        assert all(a["station"] == station for a in raised)
        metrics = service.client.get("/metrics", headers=engineer).text
        assert re.search(r'qc_alarms_open\{kind="spc"\} 4\.0', metrics)
        assert re.search(rf'qc_defect_rate\{{station="{station}"\}} 0\.[1-4]', metrics)
        assert service.client.post("/v1/analytics/evaluate", headers=service.key("reviewer")).status_code == 403

        csrf = sign_in(service, "kim")
        page = service.client.get("/dashboard")
        assert page.status_code == 200 and "script-src 'none'" in page.headers["content-security-policy"]
        # The four alarms fired together at one station: one incident, acknowledged once.
        assert 'data-open-incidents="1"' in page.text and "<svg" in page.text
        assert len({a["incident"] for a in raised}) == 1
        incident = raised[0]["incident"]
        done = service.client.post(f"/dashboard/incidents/{incident}/acknowledge",
                                   data={"csrf": csrf, "note": "feeder jam cleared"}, follow_redirects=False)
        assert done.status_code == 303
        assert service.client.post(f"/dashboard/incidents/{incident}/acknowledge",
                                   data={"csrf": "forged"}).status_code == 403
        listed = service.client.get("/v1/analytics/alarms", params={"unacknowledged": "false"}).json()["alarms"]
        assert {(a["acknowledged_by"], a["note"]) for a in listed if a["id"] in {r["id"] for r in raised}} == {
            ("kim", "feeder jam cleared")}
        assert service.client.get("/v1/analytics/incidents", params={"unacknowledged": "true"}).json() == {
            "incidents": []}
        summary = service.client.get("/v1/analytics/summary", headers=service.key("reviewer")).json()
        assert summary["total"]["inspected"] == 160 and summary["by_station"][0]["key"] == station
        station_key = service.key("station", (station,))
        assert service.client.get("/v1/analytics/summary", headers=station_key).status_code == 403
