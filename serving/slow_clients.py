"""Slow clients: a deadline for a request's headers, which uvicorn does not have.

Why: uvicorn arms its keep-alive timer only between requests and cancels it on the first
byte that arrives, so a client that sends a request's headers a byte at a time (slowloris)
holds its connection as long as it likes; 250 such connections stayed open in the issue-9
probe. `GuardedH11Protocol` gives every request `header_timeout_s` from its first byte (or
from the connection's opening) to its last header line, then closes the connection. The
body has its own bound, QC_BODY_TIMEOUT_S (serving/bodies.py, 408), and an idle keep-alive
connection is closed after QC_KEEP_ALIVE_S (uvicorn's timeout_keep_alive). Header size is
bounded by h11 (`h11_max_incomplete_event_size`, 16 KB here).

The price of h11 (pure Python) over httptools, uvicorn's default parser: 0.72 vs 0.61 ms per
100 KB POST on a local echo app (best of 3 x 500, 2-core EPYC, 2026-12-01), against ~50 ms
per frame of inference.

These bound what one connection can hold, not how many connections a client opens: a plant
exposing the service beyond its own network puts a proxy in front that limits connections
per client (docs/serving.md, "Security and limits").

Example::

    uvicorn.run(app, **uvicorn_options(settings))    # qc serve does this
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

if TYPE_CHECKING:
    from serving.settings import ServeSettings

MAX_HEADER_BYTES = 16 * 1024


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    # Read from the settings once per process: `qc serve --workers N` starts processes that import
    # this class by name (a class made at run time cannot be sent to them), each with the same
    # QC_* environment. `uvicorn_options` sets it directly in a single-process service.
    header_timeout_s: float | None = None

    @classmethod
    def _timeout(cls) -> float:
        if cls.header_timeout_s is None:
            from serving.settings import ServeSettings

            cls.header_timeout_s = ServeSettings().header_timeout_s
        return cls.header_timeout_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self._timeout(), self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _handling(self) -> bool:
        """A request's headers are parsed and its response is not complete."""
        # uvicorn annotates `cycle` as always set, but it is None until the first request.
        cycle: RequestResponseCycle | None = self.cycle
        return cycle is not None and not cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if not self._handling():
            self._arm()  # the first bytes of a new request: its headers are due in time
        super().data_received(data)
        if self._handling():
            self._disarm()  # h11 parsed the headers: the request is the app's now

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._handling():
            return  # a request is being handled
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took over %.0f s",
                             self._timeout())
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def uvicorn_options(settings: ServeSettings) -> dict[str, Any]:
    """uvicorn.run's keyword arguments for the service's limits on slow and idle clients."""
    GuardedH11Protocol.header_timeout_s = settings.header_timeout_s
    return {
        "http": GuardedH11Protocol,
        "timeout_keep_alive": settings.keep_alive_s,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
