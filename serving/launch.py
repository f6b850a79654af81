"""Starting `qc serve` from another program (the demo, the serving benchmark, the durability
tests) and waiting until it answers, without losing the reason when it never does.

Example::

    port = free_port()
    with log.open("wb") as out:
        server = subprocess.Popen(["qc", "serve", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT)
    wait_ready(f"http://127.0.0.1:{port}", server, timeout=90, log_path=log)

Light on purpose: the standard library only (httpx is imported when waiting), so a script can
import it before anything heavy.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

LOG_TAIL_CHARS = 3000


class ServerDidNotStart(RuntimeError):
    """`qc serve` exited, or did not answer /readyz in time; the message holds its exit code
    and the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(log_path: Path | None, chars: int = LOG_TAIL_CHARS) -> str:
    """The last `chars` characters of the server's log, or why there are none."""
    if log_path is None:
        return "(its output was not captured)"
    try:
        text = Path(log_path).read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        return f"(cannot read its log {log_path}: {error.strerror})"
    text = text[-chars:].rstrip()
    return text or f"(its log {log_path} is empty)"


def wait_ready(
    url: str,
    process: subprocess.Popen,
    *,
    timeout: float,
    log_path: Path | None = None,
    interval: float = 0.1,
) -> None:
    """Return once GET `url`/readyz answers 200.

    Raises `ServerDidNotStart` as soon as `process` exits (with its exit code), or after
    `timeout` seconds (the process is then killed, so nothing is left running); either message
    ends with the tail of `log_path`, where the server's output was sent.
    """
    import httpx

    ready = f"{url.rstrip('/')}/readyz"
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ServerDidNotStart(
                f"qc serve exited with code {code} before {ready} answered; "
                f"its log{f' ({log_path})' if log_path else ''} ends:\n{log_tail(log_path)}"
            )
        try:
            if httpx.get(ready, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    process.kill()
    process.wait()
    raise ServerDidNotStart(
        f"qc serve did not answer {ready} with 200 within {timeout:g} s (killed); "
        f"its log{f' ({log_path})' if log_path else ''} ends:\n{log_tail(log_path)}"
    )
