"""Fixtures for offstage_client's tests: real `offstage serve` processes on free loopback ports
(restartable on the same port and data dir, stoppable with any signal), and a fresh PostgreSQL
database for several instances.

`scripts/client` runs these and sets OFFSTAGE_TEST_BIN; without it the binary `cargo test` builds
(`$CARGO_TARGET_DIR/debug/offstage`) is used. The PostgreSQL test needs OFFSTAGE_TEST_PG (a
server URL, as scripts/test exports it) and `psql`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parents[3]


def binary() -> str:
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/offstage/target"))
    path = os.environ.get("OFFSTAGE_TEST_BIN") or os.path.join(target, "debug", "offstage")
    assert Path(path).is_file(), f"no offstage binary at {path}: set OFFSTAGE_TEST_BIN"
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Offstage:
    """One `offstage serve` process with the sketch provider; `restart()` keeps its port and
    data dir, so it comes back as the same server with the same jobs and event ids."""

    def __init__(self, env: dict[str, str], args: list[str], data_dir: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.env = env
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(data_dir) / "offstage.log"

    def start(self) -> None:
        # offstage reads OFFSTAGE_* variables as settings, except OFFSTAGE_TEST_* (ours).
        environment = {**os.environ, "OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "200ms", **self.env}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [binary(), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir",
                 self.data_dir, "--provider", "sketch", "--log", "warn", *self.args],
                cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=log,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2):
                    return
            except OSError:
                assert self.process.poll() is None, f"offstage serve exited:\n{self.logged()}"
                assert time.monotonic() < deadline, f"offstage did not come up:\n{self.logged()}"
                time.sleep(0.05)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: a graceful shutdown, which ends every event stream; SIGKILL: a crash."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(how)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freezes the process: its connections stay open and say nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def logged(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def offstage_servers() -> Iterator[Callable[..., Offstage]]:
    """`offstage_servers(env, args, data_dir)` starts a server; all of them stop at the end."""
    started: list[Offstage] = []
    scratch: list[str] = []

    def start(
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        data_dir: str | None = None,
    ) -> Offstage:
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix="offstage-client-")
            scratch.append(data_dir)
        server = Offstage(env or {}, args or [], data_dir)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.resume()
        server.stop(signal.SIGKILL)
    for directory in scratch:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def offstage(offstage_servers: Callable[..., Offstage]) -> Offstage:
    return offstage_servers()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty database on OFFSTAGE_TEST_PG's server, dropped afterwards."""
    server = os.environ.get("OFFSTAGE_TEST_PG")
    required = os.environ.get("OFFSTAGE_TEST_REQUIRE_ALL") == "1"
    missing = None
    if not server:
        missing = "OFFSTAGE_TEST_PG is not set (a PostgreSQL URL, as scripts/test exports it)"
    elif shutil.which("psql") is None:
        missing = "psql is not installed: it makes and drops the test database"
    if missing:
        if required:
            pytest.fail(f"OFFSTAGE_TEST_REQUIRE_ALL=1 but {missing}")
        pytest.skip(missing)
    assert server is not None
    name = f"offstage_client_{secrets.token_hex(6)}"
    psql(server, f"CREATE DATABASE {name}")
    parts = urlsplit(server)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        psql(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def psql(url: str, statement: str) -> None:
    subprocess.run(
        ["psql", "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", statement],
        check=True, capture_output=True, timeout=30,
    )
