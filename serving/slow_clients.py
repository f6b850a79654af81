"""Slow clients: a deadline for a request's headers, which uvicorn does not have.

Why: uvicorn arms its keep-alive timer only between requests and cancels it on the first
byte that arrives, so a client that sends a request's headers a byte at a time (slowloris)
holds its connection as long as it likes; 250 such connections stayed open in the issue-9
probe. `GuardedHttpToolsProtocol` gives every request `header_timeout_s` from its first byte
(or from the connection's opening) to its last header line, then closes the connection, and
answers 431 to headers over MAX_HEADER_BYTES (httptools itself does not bound them). The body
has its own bound, QC_BODY_TIMEOUT_S (serving/bodies.py, 408), and an idle keep-alive
connection is closed after QC_KEEP_ALIVE_S (uvicorn's timeout_keep_alive).

The parser is httptools (C), uvicorn's default. This guard was first written over h11, pure
Python, which took 0.72 ms against httptools' 0.61 per 100 KB POST on a local echo app (best
of 3 x 500, 2-core EPYC, 2026-12-01), on the event loop that serves every station.

These bound what one connection can hold, not how many connections a client opens: a plant
exposing the service beyond its own network puts a proxy in front that limits connections
per client (docs/serving.md, "Security and limits").

Example::

    uvicorn.run(app, **uvicorn_options(settings))    # qc serve does this
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

if TYPE_CHECKING:
    from serving.settings import ServeSettings

MAX_HEADER_BYTES = 16 * 1024
_REASON = b"request headers too large"
_HEADERS_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                      b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_REASON), _REASON))


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size bound for each request's headers."""

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
        self._header_bytes = 0  # received since the request began, while its headers are incomplete
        self._header_tail = b""  # the last bytes of them: an end of headers may be split across reads
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
            # Only the bytes up to the end of the headers count (a body may follow in the same
            # read); headers of 100 KB that arrive in one read are as over the bound as ones
            # that arrive in pieces (issue 25), so this is checked before the parser sees them.
            seen = self._header_tail + data
            end = seen.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else end + 4 - len(self._header_tail)
            self._header_tail = seen[-3:]
            if self._header_bytes > MAX_HEADER_BYTES:
                self._too_large()
                return
        super().data_received(data)
        if self._handling():
            self._disarm()  # the headers are parsed: the request is the app's now
            self._header_bytes, self._header_tail = 0, b""

    def _too_large(self) -> None:
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers passed %d bytes", MAX_HEADER_BYTES)
            self.transport.write(_HEADERS_TOO_LARGE)
            self.transport.close()

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
    GuardedHttpToolsProtocol.header_timeout_s = settings.header_timeout_s
    return {"http": GuardedHttpToolsProtocol, "timeout_keep_alive": settings.keep_alive_s}
