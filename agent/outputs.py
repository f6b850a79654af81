"""Telling the line: OK / NG / REVIEW per part, to stdout, a command, a webhook, MQTT or OPC UA.

Example::

    outputs = open_outputs([OutputConfig(kind="mqtt", host="broker", topic="line/3/verdict")],
                           station="press-3")
    outputs.send(LineSignal(answer=LineAnswer.NG, verdict="FAIL", part_id="A123", ...))
    outputs.close()

Each output gets every signal; one that fails is logged and counted, and never keeps the
others from being told. A signal is JSON (`LineSignal.as_json`): answer, verdict, part id,
inspection id, station, the frame's key, who decided (`service` or `deadline`), and the
milliseconds from capture to the answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import httpx

from agent.config import LineAnswer, OutputConfig, OutputKind

log = logging.getLogger("qc.agent.line")


@dataclass(frozen=True)
class LineSignal:
    answer: LineAnswer
    verdict: str | None  # PASS / FAIL / REVIEW from the service; None when the deadline answered
    part_id: str | None
    inspection_id: str | None
    station: str
    key: str
    decided_by: str  # "service" or "deadline"
    latency_ms: float  # capture to this answer

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["answer"] = self.answer.value
        body["latency_ms"] = round(self.latency_ms, 2)
        return body


class Output:
    name = "output"

    def send(self, signal: LineSignal) -> None:
        raise NotImplementedError

    def close(self) -> None: ...


class StdoutOutput(Output):
    name = "stdout"

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()

    def send(self, signal: LineSignal) -> None:
        with self._lock:
            self.stream.write(json.dumps(signal.as_json()) + "\n")
            self.stream.flush()


class CommandOutput(Output):
    """Runs argv per signal ({line}, {verdict}, {part_id}, {inspection_id}, {station} filled in)
    with the signal as JSON on stdin; a command slower than timeout_s is killed."""

    name = "command"

    def __init__(self, argv: list[str], timeout_s: float) -> None:
        self.argv, self.timeout_s = argv, timeout_s

    def send(self, signal: LineSignal) -> None:
        values = {"line": signal.answer.value, "answer": signal.answer.value, "verdict": signal.verdict or "",
                  "part_id": signal.part_id or "", "inspection_id": signal.inspection_id or "",
                  "station": signal.station}
        argv = [arg.format(**values) for arg in self.argv]
        done = subprocess.run(argv, input=json.dumps(signal.as_json()).encode(), capture_output=True,
                              timeout=self.timeout_s, check=False)  # its exit code is read below
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited with {done.returncode}: "
                               f"{done.stderr.decode(errors='replace')[-300:].strip()}")


class WebhookOutput(Output):
    name = "webhook"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self._http = httpx.Client(timeout=timeout_s)

    def send(self, signal: LineSignal) -> None:
        self._http.post(self.url, json=signal.as_json()).raise_for_status()

    def close(self) -> None:
        self._http.close()


class MqttOutput(Output):
    """Publishes the signal as JSON (QoS 1 by default) and waits until the broker has it."""

    name = "mqtt"

    def __init__(self, host: str, port: int, topic: str, qos: int, timeout_s: float) -> None:
        from inspection.mqtt import mqtt_client

        self.topic, self.qos, self.timeout_s = topic, qos, timeout_s
        self.client = mqtt_client("qc-agent-output", reconnect=True)
        self.client.connect_async(host, port)  # the broker may come later; paho reconnects itself
        self.client.loop_start()

    def send(self, signal: LineSignal) -> None:
        info = self.client.publish(self.topic, json.dumps(signal.as_json()), qos=self.qos)
        info.wait_for_publish(timeout=self.timeout_s)
        if not info.is_published():
            raise RuntimeError(f"MQTT broker did not take the message within {self.timeout_s:g} s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class OpcUaOutput(Output):
    """Writes the answer (and part id, inspection id, verdict, if named) to a PLC's nodes. Each
    value is written with the node's own data type (read once), so a String, an Int32 or a
    Boolean node works: for a number node OK is 1, NG 2, REVIEW 3; for a Boolean, OK is True."""

    name = "opcua"
    CODES: ClassVar[dict[LineAnswer, int]] = {LineAnswer.OK: 1, LineAnswer.NG: 2, LineAnswer.REVIEW: 3}

    def __init__(self, endpoint: str, nodes: dict[str, str], timeout_s: float) -> None:
        self.endpoint, self.node_ids, self.timeout_s = endpoint, nodes, timeout_s
        self.client: Any = None
        self._connected = False
        self._types: dict[str, Any] = {}

    def _connect(self) -> None:
        if not self._connected:
            from asyncua.sync import Client

            # A new client each time: disconnecting stops a client's own event loop thread,
            # so one that lost its PLC cannot connect again.
            self.client = Client(self.endpoint, timeout=self.timeout_s)
            self._connected = True  # from here on, _disconnect closes it, whatever fails next
            self.client.connect()
            self._nodes = {name: self.client.get_node(node) for name, node in self.node_ids.items()}
            self._types = {name: node.read_data_type_as_variant_type() for name, node in self._nodes.items()}

    def send(self, signal: LineSignal) -> None:
        """Write the signal; a session that has gone stale (the PLC restarted since the last
        part) is replaced once, at once, so this part's answer is not lost with it."""
        for attempt in (1, 2):
            fresh = not self._connected
            try:
                self._connect()
                self._write(signal)
                return
            except Exception:
                self._disconnect()  # the next try opens a new session
                if fresh or attempt == 2:
                    raise
                log.info("the session with the PLC at %s had ended; writing over a new one", self.endpoint)

    def _write(self, signal: LineSignal) -> None:
        from asyncua import ua

        values = {"answer": signal.answer, "verdict": signal.verdict or "", "part_id": signal.part_id or "",
                  "inspection_id": signal.inspection_id or "", "key": signal.key}
        # The answer last: a PLC that reacts to the answer node finds the part id already there.
        for name in sorted(self._nodes, key=lambda n: n == "answer"):
            kind = self._types[name]
            value: object = values.get(name, "")
            if isinstance(value, LineAnswer):
                value = (self.CODES[value] if kind not in (ua.VariantType.String, ua.VariantType.Boolean)
                         else value is LineAnswer.OK if kind is ua.VariantType.Boolean else value.value)
            self._nodes[name].write_value(ua.DataValue(ua.Variant(value, kind)))

    def _disconnect(self) -> None:
        if self._connected:
            # A broken connection may refuse to close too; it is dropped either way.
            with contextlib.suppress(Exception):
                self.client.disconnect()
            self._connected = False

    def close(self) -> None:
        self._disconnect()


class Outputs:
    """All of a station's outputs; `send` tells each, logging (never raising) a failure."""

    def __init__(self, outputs: list[Output]) -> None:
        self.outputs = outputs
        self.failures = 0

    def send(self, signal: LineSignal) -> None:
        for output in self.outputs:
            try:
                output.send(signal)
            except Exception as error:  # noqa: BLE001 - a failing output never stops the others
                self.failures += 1
                log.error("could not tell the line through %s (%s): %s", output.name, signal.answer.value, error)

    def close(self) -> None:
        for output in self.outputs:
            try:
                output.close()
            except Exception as error:  # noqa: BLE001 - one that cannot close never keeps the rest open
                log.warning("closing %s: %s", output.name, error)


def open_outputs(configs: list[OutputConfig], *, station: str, stdout=None) -> Outputs:
    made: list[Output] = []
    for config in configs:
        if config.kind is OutputKind.STDOUT:
            made.append(StdoutOutput(stdout))
        elif config.kind is OutputKind.COMMAND:
            made.append(CommandOutput(config.argv or [], config.timeout_s))
        elif config.kind is OutputKind.WEBHOOK:
            made.append(WebhookOutput(config.url or "", config.timeout_s))
        elif config.kind is OutputKind.MQTT:
            made.append(MqttOutput(config.host, config.port or 1883, config.topic or f"qc/{station}/verdict",
                                   config.qos, config.timeout_s))
        else:
            made.append(OpcUaOutput(config.endpoint or "", config.nodes, config.timeout_s))
    return Outputs(made)
