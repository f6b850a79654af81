"""Talking to the inspection service: one frame posted, the answer sorted into what to do next.

Example::

    client = ServiceClient("http://qc:8000", key="qc_...", station="press-3")
    outcome = client.inspect(frame)       # never raises for a network or HTTP problem
    if outcome.kind is Outcome.RECORDED:
        print(outcome.body["verdict"])

The agent decides from `Outcome`: RECORDED (remove from the spool), RETRY (keep it, back off:
no connection, a timeout, 5xx, 429, 503 with Retry-After), REFUSED (the frame itself is bad:
400/413/415/422, set aside and never retried) or MISCONFIGURED (401/403/404/409: the key, the
station or its state must be fixed by a person; the frames wait in the spool meanwhile).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from agent import AGENT_VERSION
from agent.config import PRODUCT_ID
from agent.spool import SpooledFrame

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
REFUSED_STATUSES = frozenset({400, 413, 415, 422})


class Outcome(StrEnum):
    RECORDED = "recorded"
    RETRY = "retry"
    REFUSED = "refused"
    MISCONFIGURED = "misconfigured"


@dataclass
class Answer:
    kind: Outcome
    status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    retry_after_s: float = 0.0
    elapsed_ms: float = 0.0


class ServiceClient:
    def __init__(self, url: str, *, key: str, station: str, connect_timeout_s: float = 2.0,
                 timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.station = station
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}", "User-Agent": f"qc-agent/{AGENT_VERSION}"},
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )

    def close(self) -> None:
        self._http.close()

    def inspect(self, frame: SpooledFrame) -> Answer:
        headers = {"Content-Type": "image/jpeg", "Idempotency-Key": frame.key}
        if frame.part_id:
            headers["X-Part-Id"] = frame.part_id
        if frame.product is not None:
            if not PRODUCT_ID.fullmatch(frame.product):
                # What the PLC named is no product the service can know; judging the frame as
                # another product would be wrong, so it is refused here like a bad frame.
                return Answer(Outcome.REFUSED, reason=f"the product on the line, {frame.product!r}, is not a product "
                              "name (letters, digits, '.', '_', '-', up to 64); fix the PLC's product value")
            headers["X-Product"] = frame.product
        return self._send("POST", f"/v1/stations/{self.station}/inspect", content=frame.jpeg, headers=headers)

    def select_product(self, product: str | None) -> Answer:
        """The changeover, told to the service: PUT /v1/stations/{station}/product."""
        return self._send("PUT", f"/v1/stations/{self.station}/product", json={"product": product})

    def heartbeat(self, body: dict[str, Any]) -> Answer:
        return self._send("POST", f"/v1/stations/{self.station}/heartbeat", json=body)

    def _send(self, method: str, path: str, **kwargs) -> Answer:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as error:
            return Answer(Outcome.RETRY, reason=f"no answer from {self.url} in time ({type(error).__name__})")
        except httpx.TransportError as error:
            return Answer(Outcome.RETRY, reason=f"cannot reach {self.url}: {error}")
        elapsed_ms = response.elapsed.total_seconds() * 1000
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
        detail = body.get("detail") if isinstance(body, dict) else None
        reason = f"HTTP {status}" + (f": {detail}" if detail else "")
        if 200 <= status < 300:
            return Answer(Outcome.RECORDED, status, body if isinstance(body, dict) else {}, elapsed_ms=elapsed_ms)
        if status in RETRY_STATUSES or status >= 500:
            return Answer(Outcome.RETRY, status, reason=reason, retry_after_s=_retry_after(response),
                          elapsed_ms=elapsed_ms)
        if status in REFUSED_STATUSES:
            return Answer(Outcome.REFUSED, status, reason=reason, elapsed_ms=elapsed_ms)
        return Answer(Outcome.MISCONFIGURED, status, reason=reason, elapsed_ms=elapsed_ms)


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0
