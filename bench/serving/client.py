"""A lean HTTP/1.1 load generator: keep-alive connections over asyncio streams, nothing else.

    async with Connections("http://127.0.0.1:8000") as pool:
        status, body = await pool.post("/v1/stations/bench/inspect", jpeg, {"Authorization": "Bearer ..."})

Why not httpx: the load generator shares the machine's two cores with the service it measures,
and httpx (h11, pure Python) spent 1.2-1.7 CPU-ms a request here (5% of all cores at 60
frames/s in the issue 16 runs, BENCHMARKS.md), a tenth of what a 320 frame's inference costs.
This client writes one pre-joined header block and the body, reads the status line, the headers
up to the blank line and `Content-Length` bytes: what a camera PC's client does, at a fraction
of the CPU. It understands only what `qc serve` answers (Content-Length bodies, keep-alive).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

# uvicorn closes a keep-alive connection idle for 5 s (its timeout_keep_alive); one idle for
# longer than this is not reused.
IDLE_S = 2.0


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host
        self.open = True
        self.used = time.monotonic()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}",
                 *(f"{name}: {value}" for name, value in headers.items()), "", ""]
        self.writer.write("\r\n".join(lines).encode("latin-1") + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        length, keep = 0, True
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
            elif name == "transfer-encoding":
                raise ValueError(f"{path}: chunked answers are not read by this client")
        answer = await self.reader.readexactly(length) if length else b""
        if not keep:
            self.close()
        return int(status_line.split(" ", 2)[1]), answer

    def close(self) -> None:
        self.open = False
        self.writer.close()


class Connections:
    """A pool of keep-alive connections to one server, opened as requests need them."""

    def __init__(self, url: str, *, timeout: float = 60) -> None:
        parts = urlsplit(url)
        self.hostname, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.host = parts.netloc
        self.timeout = timeout
        self.idle: list[Connection] = []
        self.every: list[Connection] = []

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of one POST, on an idle connection or a new one. A reused connection
        the server closed meanwhile (EOF before any answer) is replaced once: the benchmark's
        posts carry Idempotency-Keys, so sending one again cannot record a frame twice."""
        connection = self._idle_connection()
        reused = connection is not None
        try:
            return await self._post(connection or await self._connect(), path, body, headers)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            return await self._post(await self._connect(), path, body, headers)

    def _idle_connection(self) -> Connection | None:
        now = time.monotonic()
        while self.idle:
            connection = self.idle.pop()
            if now - connection.used < IDLE_S:
                return connection
            connection.close()
        return None

    async def _connect(self) -> Connection:
        reader, writer = await asyncio.open_connection(self.hostname, self.port)
        connection = Connection(reader, writer, self.host)
        self.every.append(connection)
        return connection

    async def _post(self, connection: Connection, path: str, body: bytes,
                    headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            answer = await asyncio.wait_for(connection.post(path, body, headers), self.timeout)
        except BaseException:
            connection.close()
            raise
        if connection.open:
            connection.used = time.monotonic()
            self.idle.append(connection)
        return answer

    async def __aenter__(self) -> Connections:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in self.every:
            if connection.open:
                connection.close()
