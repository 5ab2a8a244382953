"""Leaderboard throughput and latency at 64 concurrent clients, on a board of `--players`.

Starts an embedded Redis and `stadium leaderboard`, seeds the board (straight into Redis in
the submit script's layout, or through the API with `--seed api`), then
for each placement of the processes on cores (`--pin`) and each operation runs `--seconds`
of load with `--concurrency` workers: through the service over HTTP, through the service's
`Store` in this process (its own Redis connection, no HTTP), and through the same `Store`
on redis-py pipelines, so the service's overhead is a ratio. Prints a table, writes JSON to
loadtest/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from loadtest.leaderboard.httpclient import HTTPConnection, get, post
from loadtest.leaderboard.seed import seed_board
from loadtest.processes import ROOT, start_service
from stadium.redis_server import EmbeddedRedis

KEY = "bench-key"
BOARD = "bench"
# pinned: the service alone on core 0; Redis and this process (load client) on core 1.
PLACEMENTS = ("pinned", "unpinned")
TARGETS = ("service", "store", "redis-py")
OPS = ("submit", "rank")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (every core, every process)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / os.sysconf("SC_CLK_TCK")


def _place(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` on `cpus`, as `taskset -a -p` does."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(task), cpus)


def _arrange(placement: str, service: int, redis: int) -> str:
    every = set(range(os.cpu_count() or 1))
    if placement == "pinned" and len(every) > 1:
        _place(service, {0})
        _place(redis, {1})
        _place(os.getpid(), {1})
        return "service: core 0; redis + load client: core 1"
    for pid in (service, redis, os.getpid()):
        _place(pid, every)
    return f"every process on any of {len(every)} cores"


async def _load(op: Callable[[int, int], Awaitable[None]], seconds: float,
                concurrency: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        i = w
        while time.perf_counter() < end:
            t = time.perf_counter()
            await op(w, i)
            latencies.append(time.perf_counter() - t)
            i += concurrency

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return len(latencies), latencies


async def _script_calls(red: Any) -> int:
    """Script calls Redis has run so far (EVALSHA, and EVAL for scripts it did not know)."""
    stats = await red.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


def _row(placement: str, target: str, op: str, n: int, lat: list[float], seconds: float,
         cpu: dict[str, float], calls: int) -> dict[str, Any]:
    lat.sort()

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else 0.0

    # CPU seconds per operation in the process that served it: on a shared machine this,
    # not ops/s, tells how far one process could go with a core to itself.
    server_cpu = cpu["service"] if target == "service" else cpu["client"]
    us_per_op = server_cpu / max(n, 1) * 1e6
    return {"placement": placement, "target": target, "op": op,
            "ops_per_s": round(n / seconds), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            **{f"{k}_cpu_pct": round(v / seconds * 100) for k, v in cpu.items()},
            "cpu_us_per_op": round(us_per_op, 1),
            "redis_us_per_op": round(cpu["redis"] / max(n, 1) * 1e6, 1),
            # Below 1 where submits share script calls (see --coalesce).
            "calls_per_op": round(calls / max(n, 1), 2),
            "ops_per_core_s": round(1e6 / max(us_per_op, 1))}


async def run(players: int, seconds: float, concurrency: int, placements: list[str],
              client: str, seeding: str = "redis", targets: tuple[str, ...] = TARGETS,
              op_names: tuple[str, ...] = OPS, repeat: int = 1,
              redis_chunk: int | None = None,
              coalesce: int | None = None) -> list[dict[str, Any]]:
    rows = []
    with EmbeddedRedis() as redis_server:
        assert redis_server.proc is not None
        chunk_args = [] if redis_chunk is None else ["--redis-chunk", str(redis_chunk)]
        if coalesce is not None:
            chunk_args += ["--coalesce-submits", str(coalesce)]
        service = start_service("leaderboard", "--redis-url", redis_server.url,
                                "--api-key", KEY, *chunk_args)
        pids = {"service": service.proc.pid, "redis": redis_server.proc.pid}
        conns: list[HTTPConnection] = []
        try:
            conns = [await HTTPConnection.open(service.host, service.port)
                     for _ in range(concurrency)]
            names = [f"player{i:07d}" for i in range(players)]
            rng = random.Random(1)
            auth = {"X-API-Key": KEY}
            status, body = await conns[0].request(post(f"/boards/{BOARD}", {
                "periods": ["daily", "weekly"]}, auth).replace(b"POST", b"PUT", 1))
            assert status in (200, 201), body
            started = time.perf_counter()
            red = aioredis.from_url(redis_server.url, max_connections=concurrency)

            async def seed(c: int) -> None:
                for i in range(c * 1000, players, 8 * 1000):
                    batch = [{"player": p, "score": rng.randrange(1_000_000)}
                             for p in names[i:i + 1000]]
                    status, body = await conns[c].request(
                        post(f"/boards/{BOARD}/scores", {"scores": batch}, auth))
                    assert status == 200, body

            if seeding == "api":
                await asyncio.gather(*(seed(c) for c in range(8)))
            else:
                await seed_board(red, BOARD, Board(periods=["daily", "weekly"]),
                                 [(p, rng.randrange(1_000_000)) for p in names], time.time())
            print(f"seeded {players} players ({seeding}) in "
                  f"{time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)

            async def reconnect() -> None:
                # The service closes connections idle for 5 s (uvicorn's keep-alive timeout),
                # as during seeding straight into Redis and between rows.
                for conn in conns:
                    conn.close()
                conns[:] = [await HTTPConnection.open(service.host, service.port)
                            for _ in range(concurrency)]

            await reconnect()

            submit_head = (f"POST /boards/{BOARD}/scores HTTP/1.1\r\nHost: bench\r\n"
                           f"Content-Type: application/json\r\nX-API-Key: {KEY}\r\n")

            async def submit(w: int, i: int) -> None:
                data = b'{"player":"%s","score":%d}' % (
                    names[(i * 7919) % players].encode(), rng.randrange(1_000_000))
                status, body = await conns[w].request(
                    b"%sContent-Length: %d\r\n\r\n%s" % (submit_head.encode(), len(data), data))
                assert status == 200, body

            async def rank(w: int, i: int) -> None:
                status, body = await conns[w].request(
                    get(f"/boards/{BOARD}/players/{names[(i * 104729) % players]}"))
                assert status == 200, body

            session = aiohttp.ClientSession(
                service.url, headers=auth, connector=aiohttp.TCPConnector(limit=concurrency))

            async def aiohttp_submit(w: int, i: int) -> None:
                async with session.post(f"/boards/{BOARD}/scores", json={
                        "player": names[(i * 7919) % players],
                        "score": rng.randrange(1_000_000)}) as r:
                    assert r.status == 200
                    await r.read()

            async def aiohttp_rank(w: int, i: int) -> None:
                async with session.get(f"/boards/{BOARD}/players/"
                                       f"{names[(i * 104729) % players]}") as r:
                    assert r.status == 200
                    await r.read()

            tuning: dict[str, int] = {}
            if redis_chunk is not None:
                tuning["redis_chunk"] = redis_chunk
            if coalesce is not None:
                tuning["coalesce"] = coalesce
            stores = {"store": Store(red, **tuning),
                      "redis-py": Store(red, direct=False, **tuning)}

            def direct(store: Store) -> tuple[Callable[[int, int], Awaitable[None]],
                                              Callable[[int, int], Awaitable[None]]]:
                async def submit(w: int, i: int) -> None:
                    await store.submit(BOARD, [{"player": names[(i * 7919) % players],
                                                "score": rng.randrange(1_000_000)}])

                async def rank(w: int, i: int) -> None:
                    await store.player(BOARD, names[(i * 104729) % players])

                return submit, rank

            ops: list[tuple[str, str, Callable[[int, int], Awaitable[None]]]] = [
                ("service", "submit", submit if client == "raw" else aiohttp_submit),
                ("service", "rank", rank if client == "raw" else aiohttp_rank)]
            for name, store in stores.items():
                s, r = direct(store)
                ops += [(name, "submit", s), (name, "rank", r)]
            ops = [o for o in ops if o[0] in targets and o[1] in op_names]
            # Untimed: the first seconds after seeding run slower on every target.
            await _load(ops[0][2], 2.0, concurrency)
            for placement in [p for p in placements for _ in range(repeat)]:
                where = _arrange(placement, pids["service"], pids["redis"])
                print(f"{placement}: {where}", file=sys.stderr, flush=True)
                for target, op, fn in ops:
                    if target == "service" and client == "raw":
                        await reconnect()  # each row starts on fresh connections
                    calls = await _script_calls(red)
                    before = {"service": _cpu(pids["service"]), "redis": _cpu(pids["redis"]),
                              "client": time.process_time(), "machine": _machine_cpu()}
                    n, lat = await _load(fn, seconds, concurrency)
                    cpu = {"service": _cpu(pids["service"]) - before["service"],
                           "redis": _cpu(pids["redis"]) - before["redis"],
                           "client": time.process_time() - before["client"]}
                    # Whatever else ran on the machine meanwhile (other people's work).
                    cpu["others"] = max(0.0, _machine_cpu() - before["machine"] - sum(
                        cpu.values()))
                    calls = await _script_calls(red) - calls
                    rows.append(_row(placement, target, op, n, lat, seconds, cpu, calls))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            await session.close()
            for store in stores.values():
                await store.aclose()
            await red.aclose()
        finally:
            for conn in conns:
                conn.close()
            service.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.leaderboard", description=__doc__)
    ap.add_argument("--players", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--pin", choices=[*PLACEMENTS, "both"], default="both",
                    help="pinned: service alone on core 0, Redis and the load client on "
                    "core 1; unpinned: the scheduler decides; both: one after the other")
    ap.add_argument("--client", choices=["raw", "aiohttp"], default="raw",
                    help="HTTP load client: the lean one in httpclient.py, or aiohttp")
    ap.add_argument("--seed", choices=["redis", "api"], default="redis",
                    help="redis: write the board straight into Redis in the script's layout "
                    "(about 25 s for a million players); api: submit batches of 1,000 over "
                    "HTTP (70-80 s)")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help=f"comma-separated subset of {','.join(TARGETS)}")
    ap.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of "
                    f"{','.join(OPS)}")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each placement's rows this many times (to see the noise)")
    ap.add_argument("--redis-chunk", type=int, default=None,
                    help="the service's --redis-chunk (and the store rows'); default: theirs")
    ap.add_argument("--coalesce", type=int, default=None,
                    help="the service's --coalesce-submits (and the store rows'); default: "
                    "theirs")
    args = ap.parse_args(argv)
    targets = tuple(t for t in args.targets.split(",") if t)
    op_names = tuple(o for o in args.ops.split(",") if o)
    if not set(targets) <= set(TARGETS) or not set(op_names) <= set(OPS) or not targets \
            or not op_names or args.repeat < 1:
        ap.error(f"--targets is a subset of {TARGETS}, --ops of {OPS}, --repeat at least 1")
    placements = list(PLACEMENTS) if args.pin == "both" else [args.pin]
    rows = uvloop.run(run(args.players, args.seconds, args.concurrency, placements,
                          args.client, args.seed, targets, op_names, args.repeat,
                          args.redis_chunk, args.coalesce))
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print(f"board of {args.players} players, {args.concurrency} concurrent clients, "
          f"{args.client} HTTP client; load average at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    for placement in placements:
        for op in ("submit", "rank"):
            got = {r["target"]: r for r in rows
                   if r["placement"] == placement and r["op"] == op}
            if "service" not in got or "redis-py" not in got:
                continue
            s, d = got["service"], got["redis-py"]
            print(f"{placement} {op}: service / redis-py throughput = "
                  f"{s['ops_per_s'] / max(d['ops_per_s'], 1):.2f}; service per-core ceiling "
                  f"{s['ops_per_core_s']}/s ({s['cpu_us_per_op']} µs of service CPU per op)")
    out = ROOT / "loadtest" / "results" / f"leaderboard-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                               "players": args.players, "concurrency": args.concurrency,
                               "client": args.client, "seed": args.seed,
                               "redis_chunk": args.redis_chunk, "coalesce": args.coalesce,
                               "load_average": os.getloadavg(), "rows": rows}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0
