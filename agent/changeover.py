"""Product changeover: which product is on the line, as the PLC says, from an OPC UA node or an
MQTT topic.

Example::

    follower = follow_changeovers(ChangeoverConfig(kind="opcua", endpoint="opc.tcp://plc:4840",
                                                   node="ns=2;s=Recipe"), on_product=agent.changeover)
    ...
    follower.stop()

`on_product` gets the product's name, or None when the PLC names none (an empty value). The
current value comes first: an OPC UA subscription reports the node's value when it starts, and
an MQTT broker hands over the topic's retained message, so the agent knows the product before
the first part. A value is passed on as the PLC wrote it (a recipe number becomes its digits);
one that is no product name is refused, frame by frame, by the agent's client, never replaced
by the product before it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from agent.config import ChangeoverConfig, ChangeoverKind

OnProduct = Callable[[str | None], None]


def product_of(value: object) -> str | None:
    """A PLC's value as a product name: text, bytes (an MQTT payload), a JSON object with
    "product", or a number; None for an empty value."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip()
    if text.startswith("{"):
        with contextlib.suppress(ValueError, AttributeError):
            found = json.loads(text).get("product")
            text = "" if found is None else str(found).strip()
    return text or None


class Follower:
    def stop(self) -> None: ...


class MqttFollower(Follower):
    def __init__(self, host: str, port: int, topic: str, on_product: OnProduct) -> None:
        from agent.triggers import mqtt_subscription

        self.client = mqtt_subscription(host, port, topic, lambda payload: on_product(product_of(payload)),
                                        name="product")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class OpcUaFollower(Follower):
    """A data-change subscription on the product node that outlives PLC restarts
    (agent/opcua_watch.py); the first report of each session is the current value, so a
    changeover made while the PLC was out of reach is heard when it is back."""

    def __init__(self, endpoint: str, node: str, on_product: OnProduct) -> None:
        from agent.opcua_watch import NodeWatch

        # No blocking call in the callback: asyncua's event loop runs it.
        self.watch = NodeWatch(endpoint, node, lambda value, _first: on_product(product_of(value)), name="product")

    def stop(self) -> None:
        self.watch.stop()


def follow_changeovers(config: ChangeoverConfig, on_product: OnProduct) -> Follower:
    if config.kind is ChangeoverKind.MQTT:
        return MqttFollower(config.host, config.port or 1883, config.topic, on_product)
    if not (config.endpoint and config.node):  # the config's validator says so first
        raise ValueError("an opcua changeover needs endpoint and node")
    return OpcUaFollower(config.endpoint, config.node, on_product)
