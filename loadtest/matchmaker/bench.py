"""One matching pass over a large waiting pool: 100,000 1v1 tickets, and 20,000 5v5 tickets
with parties. Times the matcher alone (numpy arrays in; wall and CPU time, median of
`--repeat` runs) and with the service's conversion from ticket records (`pool_of`);
prints a table, writes JSON to loadtest/results/. Target: <= 100 ms per pass.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np

from loadtest.processes import ROOT
from matchmaker.matcher import Rules, match
from matchmaker.passes import pool_of
from matchmaker.ratings import SIGMA
from matchmaker.store import Ticket

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


def run(s: Scenario, repeat: int) -> dict[str, object]:
    tickets = make_tickets(s, seed=7)
    now = time.time()
    pool, _ = pool_of(tickets, now)
    match(pool, s.rules)  # warm-up
    alone, cpu, with_build = [], [], []
    result = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = match(pool, s.rules)
        alone.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        t0 = time.perf_counter()
        p, _ = pool_of(tickets, now)
        match(p, s.rules)
        with_build.append(time.perf_counter() - t0)
    assert result is not None
    used = result.tickets[result.tickets >= 0]
    players = int(pool.size.sum())
    return {
        "scenario": s.name, "tickets": s.tickets, "players": players,
        "matches": len(result), "players_matched": int(pool.size[used].sum()),
        "matcher_ms_median": 1000 * statistics.median(alone),
        "matcher_ms_max": 1000 * max(alone),
        "matcher_cpu_ms_median": 1000 * statistics.median(cpu),
        "load_average": os.getloadavg()[0],
        "with_pool_build_ms_median": 1000 * statistics.median(with_build),
        "mean_rating_spread": float(result.spread.mean()) if len(result) else None,
        "mean_favourite_win": float(result.win.max(axis=1).mean()) if len(result) else None,
        "mean_worst_latency_ms": float(result.worst_latency.mean()) if len(result) else None,
        "rules": s.rules.__dict__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--one-v-one", type=int, default=100_000, help="1v1 tickets")
    ap.add_argument("--five-v-five", type=int, default=20_000, help="5v5 tickets")
    args = ap.parse_args(argv)
    scenarios = [
        Scenario("1v1", args.one_v_one, Rules(2, 1, 2.0, 0.25, 150.0), 0.0),
        Scenario("5v5 parties", args.five_v_five, Rules(2, 5, 3.0, 0.25, 150.0), 0.2),
    ]
    rows = [run(s, args.repeat) for s in scenarios]
    head = (f"{'scenario':<12} {'tickets':>8} {'players':>8} {'matches':>8} {'matched':>8} "
            f"{'pass ms':>8} {'max ms':>7} {'cpu ms':>7} {'+build ms':>9} {'spread':>7} "
            f"{'fav win':>7} {'worst ms':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['scenario']:<12} {r['tickets']:>8} {r['players']:>8} {r['matches']:>8} "
              f"{r['players_matched']:>8} {r['matcher_ms_median']:>8.1f} "
              f"{r['matcher_ms_max']:>7.1f} {r['matcher_cpu_ms_median']:>7.1f} "
              f"{r['with_pool_build_ms_median']:>9.1f} "
              f"{r['mean_rating_spread']:>7.2f} {r['mean_favourite_win']:>7.3f} "
              f"{r['mean_worst_latency_ms']:>8.1f}")
    out = ROOT / "loadtest" / "results" / f"matchmaker-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                               "numpy": np.__version__, "repeat": args.repeat,
                               "rows": rows}, indent=2))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"wrote {out.relative_to(ROOT)}")
    return 0
