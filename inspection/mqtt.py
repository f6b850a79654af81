"""The one way qc makes an MQTT client (paho-mqtt, imported here only when a client is made).

Example::

    client = mqtt_client("qc-agent-trigger", reconnect=True)   # paho's v2 callback API
    client.connect_async("broker.plant.local", 1883)
    client.loop_start()

The station agent (triggers, changeover, OK/NG output) and the service's alarm notifier all
make theirs here, so the protocol version, the callback API, credentials and the reconnect
backoff are chosen once.
"""

from __future__ import annotations

import time
from typing import Any

RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30  # paho's own reconnect backoff, doubling between these


def mqtt_client(name: str, *, username: str | None = None, password: str | None = None,
                reconnect: bool = False) -> Any:
    """A paho client (callback API v2) whose client id starts with `name` and is unique per
    process and call (a broker drops the older of two sessions with one id). `reconnect`: paho
    reconnects by itself with backoff when the connection drops (a held connection)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{time.time_ns()}")
    if username:
        client.username_pw_set(username, password)
    if reconnect:
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
    return client
