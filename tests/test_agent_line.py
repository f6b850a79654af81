"""Telling the line, as a specification, against real servers: a `qc serve`, Debian's mosquitto
broker and an asyncua OPC UA server standing in for the PLC. Each part gets one answer: the
service's verdict (FAIL → NG, PASS → OK) in time, or the safe default (never OK) at the
line's deadline, counted, with the frame still recorded by the service."""

from __future__ import annotations

import io
import json
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.config import AgentConfig
from agent.runner import Agent
from tests.agent_fixtures import Mosquitto, Server, make_home, write_frames

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(untrained_model, tmp_path_factory):
    home = make_home(tmp_path_factory.mktemp("line") / "qc-home", untrained_model)
    started = Server(home)
    yield started
    started.stop()


@pytest.fixture
def broker(tmp_path):
    started = Mosquitto(tmp_path)
    yield started
    started.stop()


def config(server, tmp_path, station="failing", **fields) -> AgentConfig:
    base = {"station": station, "service": {"url": server.url, "key": server.home.station_key},
            "source": {"uri": str(tmp_path / "frames" / "*.png"), "exit_when_done": True},
            "part_id": "filename", "spool": {"dir": str(tmp_path / "spool")},
            "heartbeat": {"interval_s": 3600}}
    return AgentConfig.load(overrides={**base, **fields})


def run(agent: Agent) -> dict:
    try:
        agent.run()
    finally:
        agent.close()
    return agent.report()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_verdicts_in_time_reach_the_line_as_json_lines_and_a_command(server, tmp_path):
    write_frames(tmp_path / "frames", 4)
    told = tmp_path / "told.txt"
    script = f"import sys; open({str(told)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')"
    stdout = io.StringIO()
    cfg = config(server, tmp_path, source={"uri": str(tmp_path / "frames" / "*.png"), "exit_when_done": True,
                                           "fps": 2},
                 line={"deadline_ms": 30000, "outputs": [
                     {"kind": "stdout"}, {"kind": "command", "argv": [sys.executable, "-c", script, "{line}",
                                                                     "{part_id}", "{inspection_id}"]}]})
    report = run(Agent(cfg, stdout=stdout))
    signals = lines(stdout)
    assert [(s["answer"], s["verdict"], s["decided_by"], s["part_id"]) for s in signals] == [
        ("NG", "FAIL", "service", f"part-{i:05d}") for i in range(4)]
    recorded = {r["id"]: r["part_id"] for r in server.records("failing")}
    assert all(recorded[s["inspection_id"]] == s["part_id"] for s in signals)
    assert sorted(told.read_text().split("\n")[:-1]) == sorted(
        f"NG {s['part_id']} {s['inspection_id']}" for s in signals)
    assert report["misses_this_run"] == 0 and report["latency"]["n"] == 4
    import httpx

    listed = {s["id"]: s for s in httpx.get(f"{server.url}/v1/stations", headers=server.home.headers).json()}
    assert listed["failing"]["health"]["agent_version"] == "0.1.0"  # the agent's first heartbeat


@pytest.mark.parametrize("safe_default", ["NG", "REVIEW"])
def test_without_a_verdict_by_the_deadline_the_line_hears_the_safe_default_and_the_frame_is_still_recorded(
        server, tmp_path, safe_default):
    write_frames(tmp_path / "frames", 3, start=100 if safe_default == "NG" else 200)
    stdout = io.StringIO()
    before = {r["id"] for r in server.records("passing")}
    # The passing station's verdicts are PASS: a line told OK here would be the bug.
    cfg = config(server, tmp_path, station="passing",
                 line={"deadline_ms": 1, "safe_default": safe_default, "outputs": [{"kind": "stdout"}]})
    report = run(Agent(cfg, stdout=stdout))
    signals = lines(stdout)
    assert [(s["answer"], s["decided_by"]) for s in signals] == [(safe_default, "deadline")] * 3
    assert report["misses_this_run"] == 3 and report["deadline_misses"] >= 3  # counted, and kept in the spool dir
    assert report["late_verdicts"] == 3 and report["spool_depth"] == 0
    new = [r for r in server.records("passing") if r["id"] not in before]
    assert sorted(r["part_id"] for r in new) == sorted(s["part_id"] for s in signals)
    assert {r["verdict"] for r in new} == {"PASS"}


def test_verdicts_are_published_to_mqtt_and_an_mqtt_message_triggers_a_capture(server, tmp_path, broker):
    import paho.mqtt.client as mqtt

    write_frames(tmp_path / "frames", 2, start=300)
    received: queue.Queue = queue.Queue()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_message = lambda c, u, m: received.put((m.topic, json.loads(m.payload)))
    listener.connect("127.0.0.1", broker.port)
    listener.subscribe("line/3/verdict", qos=1)
    listener.loop_start()
    try:
        cfg = config(server, tmp_path, part_id="trigger",
                     source={"uri": str(tmp_path / "frames" / "*.png"), "exit_when_done": True},
                     trigger={"mode": "external", "external": {"kind": "mqtt", "port": broker.port,
                                                               "topic": "line/3/trigger"}},
                     line={"deadline_ms": 30000, "outputs": [{"kind": "mqtt", "port": broker.port,
                                                              "topic": "line/3/verdict"}]})
        agent = Agent(cfg)
        thread = threading.Thread(target=run, args=(agent,))
        thread.start()
        time.sleep(1.0)  # the agent's subscription is up
        for part in ("PLC-1", "PLC-2"):
            listener.publish("line/3/trigger", part, qos=1).wait_for_publish(5)
            time.sleep(0.3)
        got = [received.get(timeout=30) for _ in range(2)]
        thread.join(timeout=60)
    finally:
        listener.loop_stop()
    verdicts = [body for topic, body in got if topic == "line/3/verdict"]
    assert [(v["part_id"], v["answer"], v["verdict"]) for v in verdicts] == [("PLC-1", "NG", "FAIL"),
                                                                             ("PLC-2", "NG", "FAIL")]
    recorded = {r["part_id"]: r["id"] for r in server.records("failing")}
    assert [recorded[v["part_id"]] for v in verdicts] == [v["inspection_id"] for v in verdicts]


def test_an_opcua_plc_triggers_with_a_part_id_and_reads_answer_part_and_inspection_from_its_nodes(
        server, tmp_path):
    from asyncua import ua
    from asyncua.sync import Server as OpcServer

    from serving.launch import free_port

    write_frames(tmp_path / "frames", 2, start=400)
    plc = OpcServer()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc/"
    plc.set_endpoint(endpoint)
    ns = plc.register_namespace("urn:test:plc")
    station = plc.nodes.objects.add_object(ns, "Station3")
    nodes = {name: station.add_variable(ua.NodeId(name, ns), name, value, varianttype=kind)
             for name, value, kind in (("Trigger", 0, ua.VariantType.Int32), ("PartNo", "", ua.VariantType.String),
                                       ("Answer", 0, ua.VariantType.Int32), ("PartId", "", ua.VariantType.String),
                                       ("InspectionId", "", ua.VariantType.String))}
    for node in nodes.values():
        node.set_writable()
    plc.start()
    try:
        ids = {name: f"ns={ns};s={name}" for name in nodes}
        cfg = config(server, tmp_path, part_id="trigger",
                     trigger={"mode": "external", "external": {"kind": "opcua", "endpoint": endpoint,
                                                               "node": ids["Trigger"], "part_node": ids["PartNo"]}},
                     line={"deadline_ms": 30000, "outputs": [
                         {"kind": "stdout"},
                         {"kind": "opcua", "endpoint": endpoint, "nodes": {
                             "answer": ids["Answer"], "part_id": ids["PartId"],
                             "inspection_id": ids["InspectionId"]}}]})
        stdout = io.StringIO()
        agent = Agent(cfg, stdout=stdout)
        thread = threading.Thread(target=run, args=(agent,))
        thread.start()
        time.sleep(1.5)  # subscribed
        seen = []
        for count, part in enumerate(("SN-0001", "SN-0002"), start=1):
            nodes["Answer"].write_value(ua.Variant(0, ua.VariantType.Int32))
            nodes["PartNo"].write_value(part)
            nodes["Trigger"].write_value(ua.Variant(count, ua.VariantType.Int32))
            deadline = time.monotonic() + 30
            while nodes["Answer"].read_value() == 0 or nodes["PartId"].read_value() != part:
                assert time.monotonic() < deadline, "the PLC never got an answer"
                time.sleep(0.05)
            seen.append((nodes["Answer"].read_value(), nodes["PartId"].read_value(),
                         nodes["InspectionId"].read_value()))
        thread.join(timeout=60)
    finally:
        plc.stop()
    assert [(a, p) for a, p, _ in seen] == [(2, "SN-0001"), (2, "SN-0002")]  # 2 = NG on an Int32 node
    recorded = {r["part_id"]: r["id"] for r in server.records("failing")}
    assert [recorded[p] for _, p, _ in seen] == [i for _, _, i in seen]


def test_a_webhook_gets_each_answer_as_json(server, tmp_path):
    write_frames(tmp_path / "frames", 2, start=500)
    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        cfg = config(server, tmp_path, line={"deadline_ms": 30000, "outputs": [
            {"kind": "webhook", "url": f"http://127.0.0.1:{hook.server_address[1]}/line"}]})
        run(Agent(cfg))
    finally:
        hook.shutdown()
    assert [(g["part_id"], g["answer"]) for g in got] == [("part-00500", "NG"), ("part-00501", "NG")]
