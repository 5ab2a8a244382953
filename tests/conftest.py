"""Fixtures that start the real `stadium relay` process on a free port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RelayProcess:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_path.unlink(missing_ok=True)
        return self.proc.returncode


def start_relay(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 20.0) -> RelayProcess:
    """`stadium relay --port 0 ARGS...`; returns once it logs the port it listens on."""
    fd, log_name = tempfile.mkstemp(prefix="relay-", suffix=".log")
    log_file = os.fdopen(fd, "wb")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stadium.cli", "relay", "--port", "0", *args],
        stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=cwd or ROOT)
    log_file.close()
    path = Path(log_name)
    deadline = time.monotonic() + timeout
    pattern = re.compile(r"relay listening on wss?://([^:]+):(\d+)")
    while time.monotonic() < deadline:
        m = pattern.search(path.read_text(errors="replace"))
        if m:
            return RelayProcess(proc, m.group(1), int(m.group(2)), path)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"relay did not start:\n{path.read_text(errors='replace')}")


@pytest.fixture
def relay_factory() -> Iterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def factory(*args: str, **kw: object) -> RelayProcess:
        r = start_relay(*args, **kw)  # type: ignore[arg-type]
        started.append(r)
        return r

    yield factory
    for r in started:
        r.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayProcess]:
    """One relay per test module, with limits loose enough for many clients from 127.0.0.1."""
    r = start_relay("--ip-max-connections", "5000", "--ip-handshake-burst", "5000",
                    "--ip-handshake-rate", "5000", "--room", "faulty=tests.rooms:FaultyRoom",
                    "--room", "echo=tests.rooms:EchoRoom",
                    "--room", "order=tests.rooms:OrderRoom")
    yield r
    r.stop(signal.SIGKILL)
