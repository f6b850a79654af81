"""Product changeover at the station, as a specification, against real servers: a `qc serve`,
an asyncua OPC UA server standing in for the PLC and Debian's mosquitto broker. The PLC names
the product on the line; every frame captured while it holds is sent with it (X-Product), so
the service judges it with that product's profile and records it, and the service is told of
each changeover. An operator makes the changeover with `qc station product` instead.

Station "passing" judges every frame PASS with its own rules; its product "strict" fails every
frame (tests/agent_fixtures.py, FAIL_ALL), its product "lenient" uses the station's rules."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import httpx
import pytest

from agent.client import Outcome, ServiceClient
from agent.config import PRODUCT_ID, AgentConfig
from agent.runner import Agent
from agent.spool import Spool, SpooledFrame
from inspection.errors import ConfigError
from inspection.products import PRODUCT_ID as SERVICE_PRODUCT_ID
from tests.agent_fixtures import FAIL_ALL, QC, Mosquitto, Server, make_home, write_frames

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(untrained_model, tmp_path_factory):
    home = make_home(tmp_path_factory.mktemp("products") / "qc-home", untrained_model)
    started = Server(home)
    with httpx.Client(base_url=started.url, headers=home.headers, timeout=30) as client:
        for product, body in (("strict", {"rules": FAIL_ALL}), ("lenient", {})):
            assert client.put(f"/v1/stations/passing/products/{product}", json=body).status_code == 200
    yield started
    started.stop()


@pytest.fixture
def broker(tmp_path):
    started = Mosquitto(tmp_path)
    yield started
    started.stop()


def config(server, tmp_path, **fields) -> AgentConfig:
    base = {"station": "passing", "service": {"url": server.url, "key": server.home.station_key},
            "source": {"uri": str(tmp_path / "frames" / "*.png"), "exit_when_done": True},
            "spool": {"dir": str(tmp_path / "spool")}, "heartbeat": {"interval_s": 3600},
            "line": {"deadline_ms": 30000, "outputs": []}}
    return AgentConfig.load(overrides={**base, **fields})


def run(agent: Agent) -> None:
    try:
        agent.run()
    finally:
        agent.close()


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def judged(server, part_ids: list[str]) -> list[tuple[str, str, str | None, int | None]]:
    by_part = {r["part_id"]: r for r in server.records("passing")}
    return [(p, by_part[p]["verdict"], by_part[p]["product"], by_part[p]["product_version"])
            for p in part_ids if p in by_part]


def selected(server) -> str | None:
    return httpx.get(f"{server.url}/v1/stations/passing", headers=server.home.headers).json()["product"]


def test_the_plcs_product_node_decides_how_each_part_is_judged_and_the_service_is_told(server, tmp_path):
    from asyncua import ua
    from asyncua.sync import Server as OpcServer

    from serving.launch import free_port

    write_frames(tmp_path / "frames", 2, start=700)
    plc = OpcServer()
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc/"
    plc.set_endpoint(endpoint)
    ns = plc.register_namespace("urn:test:plc")
    cell = plc.nodes.objects.add_object(ns, "Press3")
    trigger = cell.add_variable(ua.NodeId("Trigger", ns), "Trigger", 0, varianttype=ua.VariantType.Int32)
    recipe = cell.add_variable(ua.NodeId("Recipe", ns), "Recipe", "strict", varianttype=ua.VariantType.String)
    plc.start()
    try:
        cfg = config(server, tmp_path, part_id="filename",
                     trigger={"mode": "external", "external": {"kind": "opcua", "endpoint": endpoint,
                                                               "node": f"ns={ns};s=Trigger"}},
                     changeover={"kind": "opcua", "endpoint": endpoint, "node": f"ns={ns};s=Recipe"})
        agent = Agent(cfg)
        thread = threading.Thread(target=run, args=(agent,))
        thread.start()
        wait_for(lambda: agent.product == "strict", "the agent read the product node at start")
        time.sleep(1.0)  # the trigger subscription is up too
        trigger.write_value(ua.Variant(1, ua.VariantType.Int32))
        wait_for(lambda: judged(server, ["part-00700"]), "part 700 recorded")
        recipe.write_value("lenient")  # the changeover
        wait_for(lambda: agent.product == "lenient", "the agent heard the changeover")
        trigger.write_value(ua.Variant(2, ua.VariantType.Int32))
        thread.join(timeout=60)
    finally:
        plc.stop()
    assert judged(server, ["part-00700", "part-00701"]) == [
        ("part-00700", "FAIL", "strict", 1), ("part-00701", "PASS", "lenient", 1)]
    assert agent.report()["changeovers"] == 2  # none -> strict -> lenient
    wait_for(lambda: selected(server) == "lenient", "the service was told the changeover", timeout=10)


def start_plc(endpoint: str, recipe: str):
    """An OPC UA server standing in for the press's PLC: Trigger and Answer (Int32, 0) and Recipe."""
    from asyncua import ua
    from asyncua.sync import Server as OpcServer

    plc = OpcServer()
    plc.set_endpoint(endpoint)
    ns = plc.register_namespace("urn:test:plc")
    cell = plc.nodes.objects.add_object(ns, "Press3")
    trigger = cell.add_variable(ua.NodeId("Trigger", ns), "Trigger", 0, varianttype=ua.VariantType.Int32)
    cell.add_variable(ua.NodeId("Recipe", ns), "Recipe", recipe, varianttype=ua.VariantType.String)
    answer = cell.add_variable(ua.NodeId("Answer", ns), "Answer", 0, varianttype=ua.VariantType.Int32)
    answer.set_writable()
    plc.start()
    return plc, trigger, answer, ns


def test_after_a_plc_restart_the_agent_subscribes_again_and_judges_with_the_product_then_on_the_line(
        server, tmp_path):
    """A PLC restart ends its OPC UA sessions, and with them the agent's subscriptions; the
    agent opens new ones by itself (agent/opcua_watch.py), takes the product the PLC names
    after the restart, the next trigger takes a frame, and its answer reaches the restarted
    PLC over a new session (not lost with the old one)."""
    from asyncua import ua

    from serving.launch import free_port

    write_frames(tmp_path / "frames", 2, start=900)
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/plc/"
    plc, trigger, answer, ns = start_plc(endpoint, "strict")
    try:
        cfg = config(server, tmp_path, part_id="filename",
                     trigger={"mode": "external", "external": {"kind": "opcua", "endpoint": endpoint,
                                                               "node": f"ns={ns};s=Trigger"}},
                     changeover={"kind": "opcua", "endpoint": endpoint, "node": f"ns={ns};s=Recipe"},
                     line={"deadline_ms": 30000, "outputs": [
                         {"kind": "opcua", "endpoint": endpoint, "nodes": {"answer": f"ns={ns};s=Answer"}}]})
        agent = Agent(cfg)
        thread = threading.Thread(target=run, args=(agent,))
        thread.start()
        wait_for(lambda: agent._listener is not None and agent._listener.watch.connected.is_set(),
                 "the trigger subscription is up")
        wait_for(lambda: agent.product == "strict", "the agent read the product node at start")
        trigger.write_value(ua.Variant(1, ua.VariantType.Int32))
        wait_for(lambda: judged(server, ["part-00900"]), "part 900 recorded")
        wait_for(lambda: answer.read_value() == 2, "NG for part 900 reached the PLC")

        plc.stop()  # the PLC restarts, with another recipe loaded
        wait_for(lambda: not agent._listener.watch.connected.is_set(), "the agent noticed the PLC went away")
        plc, trigger, answer, ns = start_plc(endpoint, "lenient")
        wait_for(lambda: agent._listener.watch.sessions == 2, "the trigger subscription is up again")
        wait_for(lambda: agent.product == "lenient", "the agent read the product the restarted PLC names")
        trigger.write_value(ua.Variant(1, ua.VariantType.Int32))  # the new PLC counts from 0 again
        thread.join(timeout=60)
        assert not thread.is_alive(), "the agent never took its second frame"
        assert answer.read_value() == 1, "OK for part 901 reached the restarted PLC"
    finally:
        plc.stop()
    assert judged(server, ["part-00900", "part-00901"]) == [
        ("part-00900", "FAIL", "strict", 1), ("part-00901", "PASS", "lenient", 1)]


def test_an_mqtt_product_topic_decides_from_its_retained_message_on_and_frames_carry_it(server, tmp_path, broker):
    import paho.mqtt.client as mqtt

    write_frames(tmp_path / "frames", 2, start=800)
    plc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    plc.connect("127.0.0.1", broker.port)
    plc.loop_start()
    try:
        # Published before the agent starts, retained: the product the agent finds on the line.
        plc.publish("line/3/product", "lenient", qos=1, retain=True).wait_for_publish(5)
        # Not announced, and none selected at the service: only the frames say which product.
        httpx.put(f"{server.url}/v1/stations/passing/product", json={"product": None}, headers=server.home.headers)
        cfg = config(server, tmp_path, part_id="trigger",
                     trigger={"mode": "external", "external": {"kind": "mqtt", "port": broker.port,
                                                               "topic": "line/3/trigger"}},
                     changeover={"kind": "mqtt", "port": broker.port, "topic": "line/3/product", "announce": False})
        agent = Agent(cfg)
        thread = threading.Thread(target=run, args=(agent,))
        thread.start()
        wait_for(lambda: agent.product == "lenient", "the retained product reached the agent")
        time.sleep(1.0)  # the trigger subscription is up too
        plc.publish("line/3/trigger", "MQ-1", qos=1).wait_for_publish(5)
        wait_for(lambda: judged(server, ["MQ-1"]), "MQ-1 recorded")
        plc.publish("line/3/product", '{"product": "strict"}', qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: agent.product == "strict", "the agent heard the changeover")
        plc.publish("line/3/trigger", "MQ-2", qos=1).wait_for_publish(5)
        thread.join(timeout=60)
    finally:
        plc.loop_stop()
        plc.disconnect()
    assert judged(server, ["MQ-1", "MQ-2"]) == [("MQ-1", "PASS", "lenient", 1), ("MQ-2", "FAIL", "strict", 1)]
    assert selected(server) is None


def qc(*args: str, key: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "QC_STATION_KEY": key}
    return subprocess.run([str(QC), *args], capture_output=True, text=True, env=environment, timeout=120,
                          check=False)


def test_the_operator_changes_over_with_qc_station_product_and_frames_without_a_product_follow(server):
    from tests.service_harness import frame

    key = server.home.station_key
    done = qc("station", "product", "passing", "strict", "--url", server.url, key=key)
    assert done.returncode == 0, done.stderr
    assert "product strict on the line" in done.stdout and selected(server) == "strict"
    posted = httpx.post(f"{server.url}/v1/stations/passing/inspect", content=frame(seed=900),
                        headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"}).json()
    assert (posted["verdict"], posted["product"]) == ("FAIL", "strict")

    unknown = qc("station", "product", "passing", "m12-bolt", "--url", server.url, key=key)
    assert unknown.returncode == 2
    assert "qc stations profile passing m12-bolt" in unknown.stderr and selected(server) == "strict"
    cleared = qc("station", "product", "passing", "--clear", "--url", server.url, key=key)
    assert cleared.returncode == 0 and selected(server) is None
    neither = qc("station", "product", "passing", "--url", server.url, key=key)
    assert neither.returncode == 2 and "--clear" in neither.stderr


def test_a_spooled_frame_keeps_its_product_across_a_restart(tmp_path):
    Spool(tmp_path).put(SpooledFrame.new(b"jpeg", capture_ns=1, part_id="A1", product="m8-bolt"))
    Spool(tmp_path).put(SpooledFrame.new(b"jpeg", capture_ns=2, part_id="A2"))
    reopened = Spool(tmp_path)
    first = reopened.oldest()
    assert first is not None and (first.part_id, first.product) == ("A1", "m8-bolt")
    reopened.remove(first)
    second = reopened.oldest()
    assert second is not None and (second.part_id, second.product) == ("A2", None)


def test_a_product_the_plc_named_that_is_no_product_name_is_refused_without_asking_the_service(tmp_path):
    # Nothing listens on this port: an answer other than REFUSED would mean the client tried.
    client = ServiceClient("http://127.0.0.1:9", key="qc_x_y", station="press-3", connect_timeout_s=0.2)
    try:
        answer = client.inspect(SpooledFrame.new(b"jpeg", capture_ns=1, product="M8 bolt Ä"))
    finally:
        client.close()
    assert answer.kind is Outcome.REFUSED and "not a product name" in answer.reason


def test_the_agent_and_the_service_agree_on_what_a_product_name_is():
    assert PRODUCT_ID.pattern == SERVICE_PRODUCT_ID.pattern


def test_an_opcua_changeover_without_its_node_is_refused_naming_it():
    with pytest.raises(ConfigError, match="endpoint and node"):
        AgentConfig.load(overrides={"station": "press-3", "source": {"uri": "0"},
                                    "changeover": {"kind": "opcua", "endpoint": "opc.tcp://plc:4840"}})
