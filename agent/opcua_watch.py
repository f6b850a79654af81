"""A subscription to one OPC UA node that outlives the PLC's restarts.

Example::

    watch = NodeWatch("opc.tcp://plc:4840", "ns=2;s=Recipe", name="product",
                      on_change=lambda value, first: print(value, first))
    watch.connected.wait(5)                   # False while the PLC is unreachable
    watch.read("ns=2;s=PartNo")               # a read over the same session
    watch.stop()

Why: an OPC UA subscription lives in a session, and the session ends when the PLC restarts, is
power-cycled or the network drops; asyncua then stops delivering changes without raising
anywhere the agent would see, and does not open a session again. A line PC whose trigger
subscription died waits for parts forever. So a thread of its own connects (again and
again, with backoff), subscribes, and checks the session every `check_s` by reading the
server's state node; when that fails it drops the session and starts over. While the PLC is
unreachable the agent keeps running and says so in its log, once per attempt.

`on_change(value, first)` runs on asyncua's event loop thread (no blocking calls there);
`first` marks the value a new subscription reports when it starts, which is the node's
current value, not a change: a changeover follower uses it (the product on the line after a
restart), a trigger ignores it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from agent.backoff import Backoff

log = logging.getLogger("qc.agent.opcua")

OnChange = Callable[[Any, bool], None]
SERVER_STATE = "i=2259"  # Server.ServerStatus.State, which every OPC UA server has


class NodeWatch:
    def __init__(self, endpoint: str, node: str, on_change: OnChange, *, name: str, check_s: float = 1.0,
                 timeout_s: float = 4.0, publish_ms: int = 20, backoff: Backoff | None = None) -> None:
        self.endpoint, self.node, self.name = endpoint, node, name
        self.check_s, self.timeout_s, self.publish_ms = check_s, timeout_s, publish_ms
        self._on_change = on_change
        self._backoff = backoff or Backoff(initial_s=0.5, max_s=10.0)
        self.connected = threading.Event()
        self.sessions = 0  # sessions opened so far: 1 after the first connection, +1 per reconnection
        self._client: Any = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"opcua-{name}", daemon=True)
        self._thread.start()

    def read(self, node: str) -> Any:
        """The value of `node`, read over the watch's session; ConnectionError without one."""
        with self._lock:
            client = self._client
        if client is None:
            raise ConnectionError(f"no session with the PLC at {self.endpoint} (reconnecting)")
        return client.get_node(node).read_value()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=self.timeout_s + self.check_s + 5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._session()
            self._stopping.wait(self._backoff.next())

    def _session(self) -> None:
        """One session: connect, subscribe, check it until it fails or the watch stops."""
        from asyncua.sync import Client

        client = None
        try:
            client = Client(self.endpoint, timeout=self.timeout_s)
            client.connect()
            subscription = client.create_subscription(self.publish_ms, _Handler(self._on_change))
            subscription.subscribe_data_change(client.get_node(self.node))
            state = client.get_node(SERVER_STATE)
            with self._lock:
                self._client = client
            self.sessions += 1
            self.connected.set()
            self._backoff.reset()
            log.info("%s: subscribed to %s at %s%s", self.name, self.node, self.endpoint,
                     " again" if self.sessions > 1 else "")
            while not self._stopping.wait(self.check_s):
                state.read_value()
        except Exception as error:  # noqa: BLE001 - any failure ends the session; the next one starts over
            if not self._stopping.is_set():
                log.warning("%s: no subscription to %s at %s (%s: %s); trying again", self.name, self.node,
                            self.endpoint, type(error).__name__, error)
        finally:
            self.connected.clear()
            with self._lock:
                self._client = None
            if client is not None:
                # A broken session may refuse to close too; disconnect also stops the client's
                # own event loop thread, which would otherwise be left behind each time.
                with contextlib.suppress(Exception):
                    client.disconnect()


class _Handler:
    """asyncua's subscription handler: the first report of each subscription is marked."""

    def __init__(self, on_change: OnChange) -> None:
        self._on_change, self._first = on_change, True

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        first, self._first = self._first, False
        try:
            self._on_change(value, first)
        except Exception:  # an error here would end asyncua's delivery silently
            log.exception("handling a change of %s failed", node)
