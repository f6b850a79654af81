"""A real Label Studio server on 127.0.0.1, for the tests, CI and the demo (never the plant's).

Example::

    from labeling.server import LabelStudioServer

    server = LabelStudioServer(venv=".ls-venv", data_dir="/tmp/ls", port=8091)
    server.start()                  # headless first start: user, token and organisation made
    server.url, server.token        # http://127.0.0.1:8091, 40 hex characters
    server.stop()                   # SIGTERM, then SIGKILL after a grace period

    python -m labeling.server install .ls-venv      # what .ci/run does (~80 s, once)
    python -m labeling.server start .qc/label-studio --venv .ls-venv --port 8080   # one to try the loop with

Label Studio lives in its own venv (`.ls-venv/`, git-ignored): it pins Django and friends
that have no business in qc's venv; qc talks to it over HTTP only. Measured here
(../shared/MEASURED.md): ~80 s to install, healthy ~40 s after start, ~370 MB resident.

Headless set-up, as seen working: LABEL_STUDIO_USERNAME, _PASSWORD and _USER_TOKEN (40 hex)
with LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true at the *first* start (the organisation is made
then; without the last one the token is refused with 401). SSRF_PROTECTION_ENABLED=false lets
the webhooks reach a receiver on 127.0.0.1; in a plant the two run on different hosts and the
protection stays on. `label-studio --version` hangs for minutes: never called here.

`start` runs Label Studio from the venv `install` put it into: `--venv VENV`, a path like
install's (relative to the current folder); without it, `.ls-venv/` of this checkout, where
install puts it by default.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from inspection.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".ls-venv"
STARTUP_TIMEOUT_S = 240.0  # ~40 s measured on 2 idle cores; others' tests share them


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabelStudioServer:
    """`label-studio start` from `venv`, with its state in `data_dir`, on 127.0.0.1:`port`."""

    def __init__(self, *, venv: str | Path = DEFAULT_VENV, data_dir: str | Path, port: int | None = None,
                 username: str = "qc-test@example.com", password: str | None = None,
                 token: str | None = None) -> None:
        self.venv = Path(venv)
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.username = username
        self.password = password or secrets.token_hex(12)
        self.token = token or secrets.token_hex(20)
        self.process: subprocess.Popen | None = None
        self.log = self.data_dir / "label-studio.log"

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "label-studio"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def installed(self) -> bool:
        return self.executable.is_file()

    def start(self, *, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Start it and wait until the API answers with the token; ConfigError with the log's
        tail when it does not."""
        if not self.installed:
            raise ConfigError(f"Label Studio is not installed in {self.venv}; run "
                              f"python -m labeling.server install {self.venv}, or name the venv it was "
                              "installed into with --venv")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "SSRF_PROTECTION_ENABLED": "false",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",  # no reports home from a test server
            "COLLECT_ANALYTICS": "false",
        }
        for key in ("QC_HOME", "QC_DATABASE_URL", "DJANGO_SETTINGS_MODULE"):
            env.pop(key, None)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
                 "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, cwd=self.data_dir,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(f"Label Studio exited with {self.process.returncode} while starting; "
                                  f"its log ({self.log}) ends:\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(1.0)
        self.stop()
        raise ConfigError(f"Label Studio did not answer on {self.url} within {timeout_s:.0f} s; "
                          f"its log ({self.log}) ends:\n{self.log_tail()}")

    def healthy(self) -> bool:
        """The API answers an authenticated request (health alone answers before the user exists)."""
        request = urllib.request.Request(f"{self.url}/api/projects?page_size=1",
                                         headers={"Authorization": f"Token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, *, grace_s: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the workers go with it
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def install(venv: str | Path = DEFAULT_VENV) -> Path:
    """`python -m venv VENV && VENV/bin/pip install label-studio`, unless already there."""
    venv = Path(venv)
    executable = venv / "bin" / "label-studio"
    if executable.is_file():
        return executable
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "label-studio"], check=True)
    return executable


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve_forever(data_dir: str | Path, *, port: int, venv: str | Path = DEFAULT_VENV) -> None:
    """Start one in `data_dir` (its user and token are made at the first start and kept in
    `qc-credentials.json` beside its data, so a second start reuses them), print what qc needs,
    and run until Ctrl+C."""
    import json

    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    credentials = data_dir / "qc-credentials.json"
    if credentials.is_file():
        known = json.loads(credentials.read_text())
    else:
        known = {"username": "labeller@example.com", "password": secrets.token_urlsafe(12),
                 "token": secrets.token_hex(20)}
        credentials.write_text(json.dumps(known))
        credentials.chmod(0o600)
    server = LabelStudioServer(venv=Path(venv).resolve(), data_dir=data_dir, port=port, **known)
    # SIGTERM (a script or a service manager stopping this) stops Label Studio too, as Ctrl+C does.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"starting Label Studio on {server.url} (40 s to 2 min; log in {server.log})", flush=True)
    server.start()
    print(f"Label Studio is up: {server.url}  (sign in as {known['username']} / {known['password']})\n"
          f"export QC_LABEL_STUDIO_URL={server.url} QC_LABEL_STUDIO_TOKEN={known['token']}", flush=True)
    assert server.process is not None  # start() returned: it runs
    try:
        server.process.wait()
    except KeyboardInterrupt:
        print("stopping Label Studio")
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m labeling.server",
                                     description="A Label Studio of its own venv, for trying the loop.")
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("install", help="pip install label-studio into its own venv (~80 s, once)")
    put.add_argument("venv", nargs="?", default=str(DEFAULT_VENV), help=f"where (default {DEFAULT_VENV})")
    run = commands.add_parser("start", help="run it until Ctrl+C, with its data in DATA_DIR")
    run.add_argument("data_dir", help="its database and the qc-credentials.json of its user")
    run.add_argument("--venv", default=str(DEFAULT_VENV),
                     help=f"the venv install put it into (default {DEFAULT_VENV})")
    run.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    if args.command == "install":
        print(install(args.venv))
        return
    try:
        serve_forever(args.data_dir, port=args.port, venv=args.venv)
    except ConfigError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
