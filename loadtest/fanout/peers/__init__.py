"""The servers the fan-out benchmark compares: Stadium's relay and its peers (Bun, Node `ws`,
picows, websockets), each installed on demand into a cache outside the source tree and
started pinned to one core.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from loadtest.processes import ServiceProcess, start_service, wait_listening

HERE = Path(__file__).resolve().parent
SERVERS = ("stadium", "bun", "node-ws", "picows", "websockets")
# Stadium's per-connection and per-IP limits stay on, set high enough not to refuse the load.
RELAY_ARGS = ("--ip-max-connections", "100000", "--ip-handshake-rate", "100000",
              "--ip-handshake-burst", "100000", "--ip-max-pending", "100000",
              "--msg-rate", "100000", "--msg-burst", "100000", "--byte-rate", "1e9",
              "--byte-burst", "1e9")


class PeerUnavailable(Exception):
    """A server's runtime could not be installed or started; the bench skips it."""


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("STADIUM_BENCH_CACHE", Path(base) / "stadium-bench"))


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerUnavailable(f"{cmd[0]}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise PeerUnavailable(f"`{' '.join(cmd[:3])} ...` failed: {last[0][:200]}")
    return done.stdout.strip()


def _npm_package(cache: Path, name: str, spec: str) -> Path:
    """node_modules/NAME in the cache, installed with npm only when it is not there yet."""
    where = cache / "node_modules" / name
    if not (where / "package.json").exists():
        if shutil.which("npm") is None:
            raise PeerUnavailable("npm not found (install Node.js and npm)")
        cache.mkdir(parents=True, exist_ok=True)
        print(f"installing {spec} into {cache} ...", file=sys.stderr, flush=True)
        _run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund",
              "--loglevel=error", spec])
    return where


def _package_version(where: Path) -> str:
    return str(json.loads((where / "package.json").read_text())["version"])


def _picows_path(cache: Path) -> Path:
    """A `pip install --target` directory for picows, beside the npm packages."""
    target = cache / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not (target / "picows").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"installing picows into {target} ...", file=sys.stderr, flush=True)
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target),
              "picows>=1.5"])
    return target


def _launch(name: str, cmd: list[str], env: dict[str, str] | None = None,
            timeout: float = 30.0) -> ServiceProcess:
    """Start a peer pinned to `cpu` and wait for its `listening on ws://host:port` line."""
    fd, log_name = tempfile.mkstemp(prefix=f"stadium-bench-{name}-", suffix=".log")
    with os.fdopen(fd, "wb") as log_file:
        try:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})}, cwd=HERE)
        except OSError as exc:
            raise PeerUnavailable(f"{cmd[0]}: {exc}") from exc
    path = Path(log_name)
    started = wait_listening(proc, path, timeout)
    if started is not None:
        return started
    tail = path.read_text(errors="replace").strip().splitlines()[-3:]
    path.unlink(missing_ok=True)
    raise PeerUnavailable(f"{name} did not start: {' | '.join(tail) or 'no output'}")


class Server:
    """One server under test: `prepare()` installs it (raising PeerUnavailable), `start()`
    runs it on a free port pinned to `cpu`."""

    def __init__(self, name: str, cache: Path, cpu: int | None,
                 relay_args: list[str] | None = None) -> None:
        if name not in SERVERS:
            raise ValueError(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
        self.name = name
        self.cache = cache
        self.cpu = cpu
        self.relay_args = relay_args or []
        self.version = ""
        self._start: Callable[[], ServiceProcess] | None = None

    def _taskset(self) -> list[str]:
        return ["taskset", "-c", str(self.cpu)] if self.cpu is not None else []

    def prepare(self) -> None:
        if self.cpu is not None and shutil.which("taskset") is None:
            raise PeerUnavailable("taskset not found (util-linux)")
        try:
            getattr(self, "_prepare_" + self.name.replace("-", "_"))()
        except OSError as exc:  # e.g. a cache directory that cannot be created
            raise PeerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def start(self) -> ServiceProcess:
        assert self._start is not None, "prepare() first"
        return self._start()

    def _prepare_stadium(self) -> None:
        self.version = f"stadium {metadata.version('stadium')} (Python {sys.version.split()[0]})"

        def start() -> ServiceProcess:
            relay = start_service("relay", *RELAY_ARGS, *self.relay_args)
            if self.cpu is not None:
                # -a: every thread of the process, not only the main one.
                _run(["taskset", "-a", "-p", "-c", str(self.cpu), str(relay.proc.pid)])
            return relay
        self._start = start

    def _prepare_bun(self) -> None:
        where = _npm_package(self.cache, "bun", "bun@>=1.1")
        binary = where / "bin" / "bun.exe"  # the npm package's launcher is the binary itself
        if not binary.exists():
            raise PeerUnavailable(f"{binary} missing: the bun package's postinstall did not run")
        self.version = "Bun " + _run([str(binary), "--version"])
        self._start = lambda: _launch("bun", [*self._taskset(), str(binary),
                                              str(HERE / "bun_room.js"), "0"])

    def _prepare_node_ws(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise PeerUnavailable("node not found (install Node.js)")
        where = _npm_package(self.cache, "ws", "ws@>=8.0")
        self.version = f"Node {_run([node, '--version'])}, ws {_package_version(where)}"
        self._start = lambda: _launch("node-ws", [*self._taskset(), node,
                                                  str(HERE / "node_ws_room.js"), "0", str(where)])

    def _prepare_picows(self) -> None:
        target = _picows_path(self.cache)
        env = {"PYTHONPATH": str(target)}
        version = _run([sys.executable, "-c", "import picows; print(picows.__version__)"],
                       cwd=target)
        self.version = f"picows {version} (Python {sys.version.split()[0]}, uvloop)"
        self._start = lambda: _launch("picows", [*self._taskset(), sys.executable,
                                                 str(HERE / "picows_room.py"), "0"], env)

    def _prepare_websockets(self) -> None:
        try:
            version = metadata.version("websockets")
        except metadata.PackageNotFoundError as exc:
            raise PeerUnavailable("websockets not installed (it is in the [dev] extra)") from exc
        self.version = f"websockets {version} (Python {sys.version.split()[0]}, uvloop)"
        self._start = lambda: _launch("websockets", [*self._taskset(), sys.executable,
                                                     str(HERE / "websockets_room.py"), "0"])
