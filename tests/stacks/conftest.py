"""Fixtures for the stack tests: a real `offstage serve` on a free loopback port, and the o200k
tokenizer, offline.

`scripts/stacks` runs these with the pinned libraries from requirements.lock and sets
STACKS_OFFSTAGE_BIN (the binary `cargo test` built) and TIKTOKEN_CACHE_DIR (tiktoken-rs's copy of
o200k, which tiktoken checks against its published digest).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import sys

import pytest
from loguru import logger

ROOT = Path(__file__).resolve().parents[2]

# pipecat logs every call at DEBUG through loguru; the test output only needs its warnings.
logger.remove()
logger.add(sys.stderr, level="WARNING")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Offstage:
    """A running server: its base URL, process and data directory."""

    base: str
    process: subprocess.Popen
    data_dir: str

    @property
    def mcp(self) -> str:
        return f"{self.base}/mcp"

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.base}{path}", timeout=5) as response:
            return json.load(response)

    def wait_until_ended(self, job_id: str, within: float = 15.0) -> dict:
        """Polls the job JSON (the same view every channel reads) until the job has ended."""
        deadline = time.monotonic() + within
        while True:
            job = self.get(f"/v1/jobs/{job_id}")
            if job["status"] != "working":
                return job
            assert time.monotonic() < deadline, f"job {job_id} still working: {job}"
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def binary() -> str:
    path = os.environ.get("STACKS_OFFSTAGE_BIN")
    assert path and Path(path).is_file(), "set STACKS_OFFSTAGE_BIN (scripts/stacks does)"
    return path


def start(env: dict[str, str] | None = None) -> Offstage:
    """Starts `offstage serve` on its embedded defaults (sketch provider, SQLite in a temporary
    data dir, the shipped tools/ manifests) and waits for /healthz."""
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="offstage-stacks-")
    environment = {
        **os.environ,
        "OFFSTAGE_PROVIDERS__SKETCH__LATENCY": "300ms",
        **(env or {}),
    }
    process = subprocess.Popen(
        [binary(), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir,
         "--provider", "sketch", "--log", "warn"],
        cwd=ROOT,
        env=environment,
    )
    server = Offstage(base=f"http://127.0.0.1:{port}", process=process, data_dir=data_dir)
    deadline = time.monotonic() + 20
    while True:
        try:
            server.get("/healthz")
            return server
        except OSError:
            assert process.poll() is None, "offstage serve exited"
            assert time.monotonic() < deadline, "offstage did not come up"
            time.sleep(0.05)


@pytest.fixture(scope="session")
def offstage():
    server = start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def o200k():
    """Token count in o200k, the tokenizer of OpenAI's realtime models."""
    import tiktoken

    encoding = tiktoken.get_encoding("o200k_base")
    return lambda text: len(encoding.encode(text))
