"""When to take a frame: every frame, every n-th, on motion, or when the line says so.

Example::

    gate = FrameGate(TriggerConfig(mode="motion", motion_threshold=0.02))
    if gate.wants(image): ...                 # every / nth / motion decide per frame

    events = queue.Queue()
    listener = start_listener(ExternalTrigger(kind="mqtt", topic="line/3/trigger"), events)
    event = events.get()                      # TriggerEvent(part_id="A123", at_ns=...)
    listener.stop()

External listeners put a `TriggerEvent` on a queue; its part id is the message's text (a
stdin line, an HTTP `part_id` parameter, an MQTT payload, or the value of an OPC UA part-id
node read when the trigger node changed). The agent takes the next frame after the event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from agent.config import ExternalKind, ExternalTrigger, TriggerConfig, TriggerMode

log = logging.getLogger("qc.agent.trigger")
MOTION_SIDE = 160  # motion is judged on a small grey copy: cheap, and blind to sensor noise
MOTION_LEVEL = 25  # grey levels a pixel must change by to count as changed


@dataclass(frozen=True)
class TriggerEvent:
    part_id: str | None
    at_ns: int


class FrameGate:
    """every / nth / motion: whether this frame is taken."""

    def __init__(self, config: TriggerConfig) -> None:
        self.config = config
        self._count = 0
        self._last: np.ndarray | None = None

    def wants(self, image: np.ndarray) -> bool:
        mode = self.config.mode
        if mode in (TriggerMode.EVERY, TriggerMode.EXTERNAL):
            return True
        if mode is TriggerMode.NTH:
            self._count += 1
            return (self._count - 1) % self.config.n == 0
        small = cv2.cvtColor(cv2.resize(image, (MOTION_SIDE, MOTION_SIDE), interpolation=cv2.INTER_AREA),
                             cv2.COLOR_BGR2GRAY)
        small = cv2.GaussianBlur(small, (5, 5), 0)
        if self._last is None:
            self._last = small
            return True
        changed = float(np.mean(cv2.absdiff(small, self._last) > MOTION_LEVEL))
        if changed >= self.config.motion_threshold:
            self._last = small
            return True
        return False


def _part(text: str | bytes | bytearray | None) -> str | None:
    if text is None:
        return None
    if isinstance(text, bytes | bytearray):  # an MQTT payload may be either
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    if text.startswith("{"):
        with contextlib.suppress(ValueError, AttributeError):
            text = str(json.loads(text).get("part_id") or "")
    return text[:128] or None


class Listener:
    def stop(self) -> None: ...


class StdinListener(Listener):
    def __init__(self, events: queue.Queue, stream=None) -> None:
        self.stream = stream or sys.stdin
        thread = threading.Thread(target=self._run, args=(events,), name="trigger-stdin", daemon=True)
        thread.start()

    def _run(self, events: queue.Queue) -> None:
        for line in self.stream:
            events.put(TriggerEvent(_part(line), time.time_ns()))
        log.info("stdin closed: no more external triggers")


class HttpListener(Listener):
    """POST /trigger?part_id=A123 (or a JSON body {"part_id": ...}) on host:port; 202 back."""

    def __init__(self, events: queue.Queue, host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                url = urlparse(self.path)
                if url.path != "/trigger":
                    self.send_error(404, "POST /trigger?part_id=...")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                part = parse_qs(url.query).get("part_id", [None])[0] or _part(body)
                events.put(TriggerEvent(_part(part), time.time_ns()))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # the agent logs what matters itself
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="trigger-http", daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def mqtt_subscription(host: str, port: int, topic: str, on_payload: Callable[[bytes], None], *, name: str):
    """A started MQTT client that hands each payload on `topic` to `on_payload`, subscribing
    again on every (re)connect; it reconnects by itself with backoff. Stop it with
    `client.disconnect(); client.loop_stop()`."""
    from inspection.mqtt import mqtt_client

    client = mqtt_client(f"qc-agent-{name}", reconnect=True)
    client.on_connect = lambda c, userdata, flags, rc, props=None: c.subscribe(topic, qos=1)
    client.on_message = lambda c, userdata, message: on_payload(bytes(message.payload))
    client.connect_async(host, port)
    client.loop_start()
    return client


class MqttListener(Listener):
    def __init__(self, events: queue.Queue, host: str, port: int, topic: str) -> None:
        self.client = mqtt_subscription(
            host, port, topic, lambda payload: events.put(TriggerEvent(_part(payload), time.time_ns())),
            name="trigger")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class OpcUaListener(Listener):
    """A data-change subscription on the trigger node that outlives PLC restarts
    (agent/opcua_watch.py); the part-id node is read on each change, in a thread of ours:
    asyncua's callbacks run on its event loop, where a blocking read would deadlock."""

    def __init__(self, events: queue.Queue, endpoint: str, node: str, part_node: str | None) -> None:
        from agent.opcua_watch import NodeWatch

        self._events, self._part_node = events, part_node
        self._changes: queue.Queue = queue.Queue()
        self._last: object = _UNSEEN
        self._worker = threading.Thread(target=self._run, name="trigger-opcua", daemon=True)
        self._worker.start()
        self.watch = NodeWatch(endpoint, node, self._changed, name="trigger")

    def _changed(self, value: object, first: bool) -> None:
        last, self._last = self._last, value
        if not first:
            self._changes.put(time.time_ns())
        elif last is not _UNSEEN and value != last:
            # A new session reports the node's value, not a change; one that differs from the
            # last value seen means the line triggered while the PLC was out of reach.
            log.warning("the trigger node changed from %r to %r while the PLC was unreachable: parts "
                        "may have passed without a frame", last, value)

    def _run(self) -> None:
        while (at_ns := self._changes.get()) is not None:
            part_id = None
            if self._part_node is not None:
                try:
                    part_id = _part(str(self.watch.read(self._part_node)))
                except Exception as error:  # noqa: BLE001 - the PLC went away: a trigger without a part id
                    log.error("cannot read the part-id node: %s", error)
            self._events.put(TriggerEvent(part_id, at_ns))

    def stop(self) -> None:
        self._changes.put(None)
        self.watch.stop()


_UNSEEN = object()  # no value of the trigger node seen yet


def start_listener(config: ExternalTrigger, events: queue.Queue) -> Listener:
    if config.kind is ExternalKind.STDIN:
        return StdinListener(events)
    if config.kind is ExternalKind.HTTP:
        return HttpListener(events, config.host, config.port or 0)
    if config.kind is ExternalKind.MQTT:
        return MqttListener(events, config.host, config.port or 1883, config.topic)
    if not (config.endpoint and config.node):
        raise ValueError("an opcua trigger needs endpoint and node")
    return OpcUaListener(events, config.endpoint, config.node, config.part_node)
