"""Start a `stadium` service as a real process on a free port, as tests and benchmarks do."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"listening on (\w+)://([^:/\s]+):(\d+)")


@dataclass
class ServiceProcess:
    proc: subprocess.Popen[bytes]
    scheme: str
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

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


def start_service(command: str, *args: str, env: dict[str, str] | None = None,
                  cwd: Path | None = None, timeout: float = 20.0) -> ServiceProcess:
    """`stadium COMMAND --port 0 ARGS...`; returns once it logs the address it listens on."""
    fd, log_name = tempfile.mkstemp(prefix=f"stadium-{command}-", suffix=".log")
    log_file = os.fdopen(fd, "wb")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stadium.cli", command, "--port", "0", *args],
        stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=cwd or ROOT)
    log_file.close()
    path = Path(log_name)
    started = wait_listening(proc, path, timeout)
    if started is None:
        raise RuntimeError(f"stadium {command} did not start:\n{path.read_text(errors='replace')}")
    return started


def wait_listening(proc: subprocess.Popen[bytes], log_path: Path,
                   timeout: float) -> ServiceProcess | None:
    """The process once its log says `listening on scheme://host:port`; None (and the process
    killed) when it exits or the timeout passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _LISTENING.search(log_path.read_text(errors="replace"))
        if m:
            return ServiceProcess(proc, m.group(1), m.group(2), int(m.group(3)), log_path)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    return None
