"""One matching pass over a large waiting pool: 100,000 1v1 tickets, and 20,000 5v5 tickets
with parties. Times the matcher alone, the in-process part of the service's pass (rows of
the kept columns gathered, late tickets left out, matcher), the old conversion from ticket
records (`pool_of`), and whole passes of `QueueMatcher.step` against an embedded Redis
holding 100,000 waiting tickets. Wall and CPU time, median of `--repeat` runs; prints
tables, writes JSON to loadtest/results/. Target: <= 100 ms per pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from loadtest.matchmaker.seed import write_relay, write_waiting
from loadtest.processes import ROOT
from matchmaker import keys
from matchmaker.matcher import Rules, match
from matchmaker.metrics import Metrics
from matchmaker.passes import PoolColumns, QueueMatcher, pool_of
from matchmaker.queues import Queue
from matchmaker.ratings import SIGMA, Rating
from matchmaker.store import Store, Ticket
from stadium.redis_client import connect
from stadium.redis_server import EmbeddedRedis

REGIONS = ["eu", "us-east", "us-west", "asia"]


@dataclass
class Scenario:
    name: str
    tickets: int
    rules: Rules
    party_share: float  # share of tickets that are parties of 2 or 3


def make_tickets(s: Scenario, seed: int) -> list[Ticket]:
    """Players near one home region (20-60 ms) and far from the rest (80-250 ms), skill
    spread like a live game's, waits up to 30 s."""
    rng = np.random.default_rng(seed)
    now = time.time()
    out = []
    for i in range(s.tickets):
        size = 1
        if s.rules.team_size > 1 and rng.random() < s.party_share:
            size = int(rng.integers(2, min(3, s.rules.team_size) + 1))
        home = int(rng.integers(len(REGIONS)))
        lat = {r: float(rng.uniform(20, 60) if k == home else rng.uniform(80, 250))
               for k, r in enumerate(REGIONS)}
        mu = [float(m) for m in rng.normal(25, 4, size)]
        sigma = [float(x) for x in rng.uniform(1.5, SIGMA, size)]
        out.append(Ticket(f"b.{i}", "b", [f"p{i}-{j}" for j in range(size)], mu, sigma, lat,
                          now - float(rng.uniform(0, 30))))
    return out


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _ms(xs: list[float]) -> float:
    return 1000 * statistics.median(xs)


def run(s: Scenario, repeat: int) -> dict[str, object]:
    tickets = make_tickets(s, seed=7)
    now = time.time()
    pool, _ = pool_of(tickets, now)
    match(pool, s.rules)  # warm-up
    # The service's pass between its Redis reads: the rows of the columns kept across
    # passes (the changes read from Redis keep them up to date), late tickets out, gather,
    # match.
    cols = PoolColumns()
    cols.add(tickets)
    max_wait = 120.0

    def service_pass() -> object:
        rows = cols.held()
        rows = rows[~(now - cols.created[rows] > max_wait)]
        return match(cols.gather(rows, now)[0], s.rules)

    alone, alone_cpu, served, served_cpu, built, built_cpu = [], [], [], [], [], []
    result = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = match(pool, s.rules)
        alone.append(time.perf_counter() - t0)
        alone_cpu.append(time.process_time() - c0)
        wall, cpu = _timed(service_pass)
        served.append(wall)
        served_cpu.append(cpu)
        wall, cpu = _timed(lambda: match(pool_of(tickets, now)[0], s.rules))
        built.append(wall)
        built_cpu.append(cpu)
    assert result is not None
    used = result.tickets[result.tickets >= 0]
    players = int(pool.size.sum())
    return {
        "scenario": s.name, "tickets": s.tickets, "players": players,
        "matches": len(result), "players_matched": int(pool.size[used].sum()),
        "matcher_ms_median": _ms(alone),
        "matcher_ms_max": 1000 * max(alone),
        "matcher_cpu_ms_median": _ms(alone_cpu),
        "service_pass_ms_median": _ms(served),
        "service_pass_cpu_ms_median": _ms(served_cpu),
        "with_pool_of_ms_median": _ms(built),
        "with_pool_of_cpu_ms_median": _ms(built_cpu),
        "load_average": os.getloadavg()[0],
        "mean_rating_spread": float(result.spread.mean()) if len(result) else None,
        "mean_favourite_win": float(result.win.max(axis=1).mean()) if len(result) else None,
        "mean_worst_latency_ms": float(result.worst_latency.mean()) if len(result) else None,
        "rules": s.rules.__dict__,
    }


async def _redis_cpu(redis: Any) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _pass(matcher: QueueMatcher, redis: Any) -> tuple[int, float, float, float]:
    """One `step`: matches committed, wall, this process's CPU, the Redis server's CPU."""
    r0 = await _redis_cpu(redis)
    t0, c0 = time.perf_counter(), time.process_time()
    committed = await matcher.step()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return committed, wall, cpu, await _redis_cpu(redis) - r0


async def _real(url: str, waiting: int, arrivals: int, repeat: int) -> list[dict[str, object]]:
    """`waiting` tickets of players nearest a region "far" whose latency is over the limit
    (they stay: the pool a steady state leaves is what could not be matched), then passes
    that each find `arrivals` new tickets of players near one of four regions, who are
    matched and seated on the relay in the directory."""
    rules = Rules(2, 1, 2.0, 0.25, 150.0)
    queue = Queue("bench", 2, 1, rules.rating_window, rules.widen_per_second, 3600.0,
                  rules.max_region_latency_ms)
    redis = await connect(url)
    store = Store(redis, {queue.name: queue})
    rng = np.random.default_rng(11)
    now = time.time()
    await write_waiting(redis, (  # written in bulk: the first pass reads them all
        Ticket(f"bench.{i:032x}", "bench", [f"far{i}"], [float(rng.normal(25, 4))],
               [float(rng.uniform(1.5, SIGMA))],
               {"far": float(rng.uniform(160, 200)),
                **{r: float(rng.uniform(200, 250)) for r in REGIONS}},
               now - float(rng.uniform(0, 30))) for i in range(waiting)))
    await write_relay(redis, "ws://relay.bench:1")
    matcher = QueueMatcher(store, queue, Metrics(), owner="bench", secret="bench-secret",
                           seat_ttl=30.0, lease_ttl=60.0)
    rows: list[dict[str, object]] = []
    committed, wall, cpu, rcpu = await _pass(matcher, redis)
    rows.append({"pass": "first (reads every ticket)", "waiting": waiting, "arrivals": 0,
                 "matches": committed, "wall_ms": 1000 * wall, "cpu_ms": 1000 * cpu,
                 "redis_cpu_ms": 1000 * rcpu})
    made = 0
    for new in (0, arrivals):
        runs: list[tuple[int, float, float, float]] = []
        for _ in range(repeat):
            for _ in range(new):
                home = REGIONS[made % len(REGIONS)]
                # rated players (a flood of new ones, all at the same mu, is another case)
                await redis.hset(keys.RATINGS, f"near{made}", Rating(
                    float(rng.normal(25, 4)), float(rng.uniform(1.5, SIGMA)), 10).encode())
                await store.create_ticket("bench", f"near{made}", regions={
                    r: float(rng.uniform(20, 60) if r == home else rng.uniform(80, 250))
                    for r in REGIONS})
                made += 1
            runs.append(await _pass(matcher, redis))
        rows.append({"pass": f"{new} new tickets", "waiting": waiting, "arrivals": new,
                     "matches": statistics.median(r[0] for r in runs),
                     "wall_ms": _ms([r[1] for r in runs]), "cpu_ms": _ms([r[2] for r in runs]),
                     "redis_cpu_ms": _ms([r[3] for r in runs])})
    left = await redis.zcard(keys.waiting("bench"))
    await redis.aclose()
    for r in rows:
        r["still_waiting_at_end"] = left
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--one-v-one", type=int, default=100_000, help="1v1 tickets")
    ap.add_argument("--five-v-five", type=int, default=20_000, help="5v5 tickets")
    ap.add_argument("--redis-waiting", type=int, default=100_000,
                    help="waiting tickets in Redis for the whole-pass runs (0: skip them)")
    ap.add_argument("--arrivals", type=int, default=200,
                    help="new tickets before each whole pass (a pass every 0.25 s)")
    args = ap.parse_args(argv)
    scenarios = [
        Scenario("1v1", args.one_v_one, Rules(2, 1, 2.0, 0.25, 150.0), 0.0),
        Scenario("5v5 parties", args.five_v_five, Rules(2, 5, 3.0, 0.25, 150.0), 0.2),
    ]
    rows = [run(s, args.repeat) for s in scenarios]
    head = (f"{'scenario':<12} {'tickets':>8} {'players':>8} {'matches':>8} {'matched':>8} "
            f"{'match ms':>8} {'cpu ms':>7} {'pass ms':>8} {'cpu ms':>7} "
            f"{'pool_of ms':>10} {'cpu ms':>7} {'spread':>7} {'fav win':>7} {'worst ms':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['scenario']:<12} {r['tickets']:>8} {r['players']:>8} {r['matches']:>8} "
              f"{r['players_matched']:>8} {r['matcher_ms_median']:>8.1f} "
              f"{r['matcher_cpu_ms_median']:>7.1f} {r['service_pass_ms_median']:>8.1f} "
              f"{r['service_pass_cpu_ms_median']:>7.1f} {r['with_pool_of_ms_median']:>10.1f} "
              f"{r['with_pool_of_cpu_ms_median']:>7.1f} "
              f"{r['mean_rating_spread']:>7.2f} {r['mean_favourite_win']:>7.3f} "
              f"{r['mean_worst_latency_ms']:>8.1f}")
    print("match: the matcher alone; pass: the service's pass without Redis (gather the kept "
          "columns + match); pool_of: the arrays built from ticket records + match")
    real: list[dict[str, object]] = []
    if args.redis_waiting > 0:
        with EmbeddedRedis() as server:
            real = asyncio.run(_real(server.url, args.redis_waiting, args.arrivals,
                                     args.repeat))
        head = (f"\n{'QueueMatcher.step on Redis':<28} {'waiting':>8} {'matches':>8} "
                f"{'wall ms':>8} {'cpu ms':>7} {'redis cpu ms':>12}")
        print(head)
        print("-" * len(head.strip()))
        for r in real:
            print(f"{r['pass']:<28} {r['waiting']:>8} {r['matches']:>8} {r['wall_ms']:>8.1f} "
                  f"{r['cpu_ms']:>7.1f} {r['redis_cpu_ms']:>12.1f}")
    out = ROOT / "loadtest" / "results" / f"matchmaker-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                               "numpy": np.__version__, "repeat": args.repeat,
                               "rows": rows, "redis_passes": real}, indent=2))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"wrote {out.relative_to(ROOT)}")
    return 0
