"""One ticking BenchRoom on a real relay (pinned to one core) with N WebSocket clients (in
processes on the other core): tick duration and overruns from /metrics, state latency from
the room's send time in `doc["sent"]`, and lost ticks (gaps in each client's tick numbers).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
import signal
import time
import urllib.request
from array import array
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgpack
import uvloop

from loadtest.clientproc import CONNS_PER_ADDR, join_all, obey, wait_ready
from loadtest.fanout.peers import Server
from relay.metrics import TICK_BUCKETS
from stadium_client.state import state_payload

ROOM = "bench=loadtest.state.rooms:BenchRoom"
_SAMPLE = re.compile(r'^(stadium_relay_tick_\w+?)(?:_total)?\{([^}]*)\} ([0-9.e+-]+)$', re.M)


class Receiver:
    """One client's view of the ticks: counts, gaps and latency while the window is open."""

    __slots__ = ("window", "last", "count", "lost", "stale", "lat", "kinds")

    def __init__(self, window: list[bool], lat: array[float]) -> None:
        self.window = window
        self.last = 0
        self.count = 0
        self.lost = 0
        self.stale = 0
        self.lat = lat
        self.kinds = [0, 0, 0]

    def on_message(self, data: str | bytes) -> None:
        now = time.time()
        payload = state_payload(data)
        if payload is None:
            return
        body = msgpack.unpackb(payload)
        kind, tick = body[0], body[1]
        last = self.last
        if tick > last:
            self.last = tick
        if not self.window[0]:
            return
        self.count += 1
        self.kinds[kind] += 1
        if tick <= last:
            self.stale += 1
        elif last and tick > last + 1:
            self.lost += tick - last - 1
        sent = None
        if kind == 1:
            sent = body[4].get("sent")
        else:
            for op in body[4]:
                if op[0] == ["sent"] and len(op) == 2:
                    sent = op[1]
        if sent is not None:
            self.lat.append(now - sent)


async def _clients(host: str, port: int, path: str, n: int, first_addr: int,
                   pipe: Connection) -> None:
    """Join `n` clients, then obey the bench: ("start",) opens the window, ("stop",) closes
    it and reports, ("close",) ends."""
    window = [False]
    lat: array[float] = array("d")
    receivers = [Receiver(window, lat) for _ in range(n)]
    clients, failed = await join_all(host, port, path, n, first_addr,
                                     lambda i: receivers[i].on_message)

    def start(_: tuple[Any, ...]) -> tuple[str]:
        window[0] = True
        return ("ok",)

    def stop(_: tuple[Any, ...]) -> dict[str, Any]:
        window[0] = False
        live = [r for r, c in zip(receivers, clients, strict=False) if not c.closed.done()]
        return {"counts": [r.count for r in receivers[:len(clients)]],
                "lost": sum(r.lost for r in receivers),
                "stale": sum(r.stale for r in receivers),
                "snapshots": sum(r.kinds[1] for r in receivers),
                "closed": len(clients) - len(live),
                "close_codes": sorted({c.close_code for c in clients
                                       if c.close_code is not None}),
                "latency": lat.tobytes()}

    await obey(pipe, clients, failed, {"start": start, "stop": stop})


def _client_main(cpus: set[int] | None, *args: Any) -> None:
    if cpus and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, cpus)
    uvloop.run(_clients(*args))


def _scrape(http: str, room_type: str) -> dict[str, Any]:
    """Tick histogram buckets (cumulative), sum, count and overruns of one room type."""
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, Any] = {"buckets": {}, "sum": 0.0, "count": 0.0, "overruns": 0.0}
    for name, labels, value in _SAMPLE.findall(text):
        if f'room_type="{room_type}"' not in labels:
            continue
        if name == "stadium_relay_tick_seconds_bucket":
            le = re.search(r'le="([^"]+)"', labels)
            assert le is not None
            out["buckets"][float(le.group(1))] = float(value)
        elif name == "stadium_relay_tick_seconds_sum":
            out["sum"] = float(value)
        elif name == "stadium_relay_tick_seconds_count":
            out["count"] = float(value)
        elif name == "stadium_relay_tick_overruns":
            out["overruns"] = float(value)
    return out


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float | None:
    return values[min(len(values) - 1, int(q * len(values)))] * 1e3 if values else None


def run(cache: Path, server_cpu: int | None, client_cpus: set[int] | None, conns: int,
        procs: int, seconds: float, entities: int, moving: float) -> dict[str, Any]:
    """Start the relay with BenchRoom, join `conns` clients, measure `seconds` of ticks."""
    os.environ["STADIUM_BENCH_ENTITIES"] = str(entities)  # the relay inherits them
    os.environ["STADIUM_BENCH_MOVING"] = str(moving)
    server = Server("stadium", cache, server_cpu, ["--room", ROOM])
    server.prepare()
    svc = server.start()
    path = f"/rooms/bench/live-{os.getpid()}"
    procs = max(1, min(procs, conns))
    per = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    addrs = math.ceil(max(per) / CONNS_PER_ADDR)
    ctx = mp.get_context("spawn")
    pipes: list[Connection] = []
    workers = []
    result: dict[str, Any] = {"conns": conns, "entities": entities, "moving": moving,
                              "tick_rate": 20, "seconds": seconds, "client_procs": procs,
                              "version": server.version}
    try:
        t_join = time.monotonic()
        for i, n in enumerate(per):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_client_main, daemon=True, args=(
                client_cpus, svc.host, svc.port, path, n, 2 + i * addrs, theirs))
            p.start()
            pipes.append(mine)
            workers.append(p)
        joined, refused, errors = wait_ready(pipes, 300)
        result.update(joined=joined, refused=refused, refused_examples=errors[:3],
                      join_seconds=round(time.monotonic() - t_join, 1))
        time.sleep(1.0)  # every joiner has had its snapshot
        before = _scrape(svc.http, "bench")
        client_pids = [p.pid for p in workers if p.pid is not None]
        cpu0 = _cpu_seconds(svc.proc.pid)
        ccpu0 = sum(_cpu_seconds(p) for p in client_pids)
        t0 = time.monotonic()
        for pipe in pipes:
            pipe.send(("start",))
        for pipe in pipes:
            pipe.recv()
        time.sleep(seconds)
        for pipe in pipes:
            pipe.send(("stop",))
        reports = [pipe.recv() for pipe in pipes]
        window = time.monotonic() - t0
        cpu1 = _cpu_seconds(svc.proc.pid)
        ccpu1 = sum(_cpu_seconds(p) for p in client_pids)
        after = _scrape(svc.http, "bench")
        for pipe in pipes:
            pipe.send(("close",))
    finally:
        for p in workers:
            p.join(30)
            if p.is_alive():
                p.kill()
        result["server_exit"] = svc.stop(signal.SIGTERM)
    ticks = after["count"] - before["count"]
    buckets = [(le, after["buckets"].get(le, 0.0) - before["buckets"].get(le, 0.0))
               for le in (*TICK_BUCKETS, math.inf)]
    p99_le = next((le for le, n in buckets if n >= 0.99 * ticks), math.inf) if ticks else None
    p50_le = next((le for le, n in buckets if n >= 0.5 * ticks), math.inf) if ticks else None
    lat = sorted(x for r in reports for x in array("d", r["latency"]))
    counts = [c for r in reports for c in r["counts"]]
    result.update({
        "window_seconds": round(window, 2), "ticks": int(ticks),
        "tick_mean_ms": (after["sum"] - before["sum"]) / ticks * 1e3 if ticks else None,
        "tick_p50_le_ms": None if p50_le is None else p50_le * 1e3,
        "tick_p99_le_ms": None if p99_le is None else p99_le * 1e3,
        "tick_buckets": [[le * 1e3 if le != math.inf else "+Inf", n] for le, n in buckets],
        "overruns": int(after["overruns"] - before["overruns"]),
        "relay_cpu_pct": round((cpu1 - cpu0) / window * 100, 1),
        "client_cpu_pct": round((ccpu1 - ccpu0) / window * 100, 1),
        "messages": sum(counts), "min_per_client": min(counts, default=0),
        "max_per_client": max(counts, default=0),
        "lost": sum(r["lost"] for r in reports), "stale": sum(r["stale"] for r in reports),
        "snapshots_in_window": sum(r["snapshots"] for r in reports),
        "closed": sum(r["closed"] for r in reports),
        "close_codes": sorted({c for r in reports for c in r["close_codes"]}),
        "latency_samples": len(lat), "latency_p50_ms": _pct(lat, 0.5),
        "latency_p99_ms": _pct(lat, 0.99), "latency_max_ms": lat[-1] * 1e3 if lat else None,
    })
    return result
