"""Leaderboard throughput and latency at 64 concurrent clients, on a board of `--players`.

Starts an embedded Redis and `stadium leaderboard` (each pinned to its own core when there
are two), seeds the board through the API, then for each operation runs `--seconds` of
load from an aiohttp client with `--concurrency` workers: through the service, and the
same operation straight to Redis with redis-py (the service's own Lua scripts, no HTTP),
so the service's overhead is a ratio. `cpu_us_per_op` is the CPU time per operation of the
process that served it (the service, or for redis-py the client process), and
`ops_per_core_s` what that process could serve with a core to itself. Prints a table,
writes JSON to loadtest/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import uvloop

from leaderboard.store import Board, Store
from loadtest.processes import ROOT, start_service
from stadium.redis_server import EmbeddedRedis

KEY = "bench-key"


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pin(pid: int, cpu: int) -> None:
    if (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, {cpu})


async def _load(op: Callable[[int], Awaitable[None]], seconds: float,
                concurrency: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        i = w
        while time.perf_counter() < end:
            t = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t)
            i += concurrency

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return len(latencies), latencies


def _row(target: str, op: str, n: int, lat: list[float], seconds: float,
         cpu: dict[str, float]) -> dict[str, Any]:
    lat.sort()

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else 0.0

    # CPU seconds per operation in the process that served it: on a shared machine this,
    # not ops/s, tells how far one process could go with a core to itself.
    server_cpu = cpu["service"] if target == "service" else cpu["client"]
    us_per_op = server_cpu / max(n, 1) * 1e6
    return {"target": target, "op": op, "ops_per_s": round(n / seconds), "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), **{f"{k}_cpu_pct": round(v / seconds * 100) for k, v in
                                    cpu.items()},
            "cpu_us_per_op": round(us_per_op), "ops_per_core_s": round(1e6 / max(us_per_op, 1))}


async def run(players: int, seconds: float, concurrency: int) -> list[dict[str, Any]]:
    rows = []
    with EmbeddedRedis() as redis_server:
        assert redis_server.proc is not None
        _pin(redis_server.proc.pid, 1)
        service = start_service("leaderboard", "--redis-url", redis_server.url,
                                "--api-key", KEY)
        _pin(service.proc.pid, 0)
        try:
            url = service.url
            names = [f"player{i:07d}" for i in range(players)]
            rng = random.Random(1)
            conn = aiohttp.TCPConnector(limit=concurrency)
            async with aiohttp.ClientSession(url, connector=conn,
                                             headers={"X-API-Key": KEY}) as http:
                await http.put("/boards/bench", json={"periods": ["daily", "weekly"]})
                started = time.perf_counter()
                sem = asyncio.Semaphore(8)

                async def seed(i: int) -> None:
                    async with sem:
                        batch = [{"player": p, "score": rng.randrange(1_000_000)}
                                 for p in names[i:i + 1000]]
                        async with http.post("/boards/bench/scores",
                                             json={"scores": batch}) as r:
                            assert r.status == 200, await r.text()

                await asyncio.gather(*(seed(i) for i in range(0, players, 1000)))
                print(f"seeded {players} players in {time.perf_counter() - started:.1f}s",
                      file=sys.stderr, flush=True)

                async def submit(i: int) -> None:
                    async with http.post("/boards/bench/scores", json={
                            "player": names[(i * 7919) % players],
                            "score": rng.randrange(1_000_000)}) as r:
                        assert r.status == 200
                        await r.read()

                async def rank(i: int) -> None:
                    async with http.get(f"/boards/bench/players/"
                                        f"{names[(i * 104729) % players]}") as r:
                        assert r.status == 200
                        await r.read()

                red = aioredis.from_url(redis_server.url,
                                        max_connections=concurrency)
                store = Store(red)
                await store.put_board("bench-direct", Board(periods=["daily", "weekly"]))

                async def direct_submit(i: int) -> None:
                    await store.submit("bench-direct", [{"player": names[(i * 7919) % players],
                                                         "score": rng.randrange(1_000_000)}])

                async def direct_rank(i: int) -> None:
                    await store.player("bench", names[(i * 104729) % players])

                for target, op, fn in (("service", "submit", submit), ("service", "rank", rank),
                                       ("redis-py", "submit", direct_submit),
                                       ("redis-py", "rank", direct_rank)):
                    before = {"service": _cpu(service.proc.pid),
                              "redis": _cpu(redis_server.proc.pid),
                              "client": time.process_time()}
                    n, lat = await _load(fn, seconds, concurrency)
                    cpu = {"service": _cpu(service.proc.pid) - before["service"],
                           "redis": _cpu(redis_server.proc.pid) - before["redis"],
                           "client": time.process_time() - before["client"]}
                    rows.append(_row(target, op, n, lat, seconds, cpu))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                await red.aclose()
        finally:
            service.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.leaderboard", description=__doc__)
    ap.add_argument("--players", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args(argv)
    rows = uvloop.run(run(args.players, args.seconds, args.concurrency))
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print(f"board of {args.players} players, {args.concurrency} concurrent clients")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    for op in ("submit", "rank"):
        s = next(r for r in rows if r["target"] == "service" and r["op"] == op)
        d = next(r for r in rows if r["target"] == "redis-py" and r["op"] == op)
        print(f"{op}: service / redis-py throughput = {s['ops_per_s'] / d['ops_per_s']:.2f}")
    out = ROOT / "loadtest" / "results" / f"leaderboard-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                               "players": args.players, "concurrency": args.concurrency,
                               "rows": rows}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0
