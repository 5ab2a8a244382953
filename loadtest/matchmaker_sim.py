"""Matchmaking on a simulated clock: Poisson arrivals go to the service's numpy matcher and to
a first-come-first-served matcher, pass by pass; wait times, rating spread and team balance
of each. No Redis, no HTTP, no sleeping. Prints a table, writes JSON to loadtest/results/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from loadtest.processes import ROOT
from matchmaker.matcher import Floats, Ints, Matches, Pool, Rules, match, win_probability
from matchmaker.queues import Queue, load
from matchmaker.ratings import MU, SIGMA

Matcher = Callable[[Pool, Rules], Matches]

WAITING, MATCHED, TIMED_OUT = 0, 1, 2

# The player population: hidden skill normal(25, 5); a new player's rating is the model's
# default (mu 25, sigma 8.33) whatever their skill, a provisional one is a rough estimate,
# a seasoned one is close to the skill.
SKILL_MEAN, SKILL_SD = MU, 5.0
NEW_SHARE, PROVISIONAL_SHARE = 0.2, 0.3
PROVISIONAL_SIGMA = (4.0, 7.0)
SEASONED_SIGMA = (1.5, 4.0)
PARTY_SPREAD = 3.0  # friends queue together: members' skill within a few points
PARTY_SIZES = (2, 3, 4, 5)
PARTY_WEIGHTS = (0.6, 0.25, 0.1, 0.05)
HOME_MS = (15.0, 60.0)  # latency to the player's home region
AWAY_MS = (80.0, 250.0)  # latency to every other region


@dataclass
class Arrivals:
    """Every ticket of one run in arrival order, and its players (a ticket's players are
    `first[i] .. first[i] + size[i] - 1`)."""

    time: Floats  # (T,) seconds since the start, ascending
    size: Ints  # (T,)
    first: Ints  # (T,)
    latency: Floats  # (T, regions) ms
    skill: Floats  # (P,) hidden true skill
    mu: Floats  # (P,)
    sigma: Floats  # (P,)
    regions: list[str]
    mu_sum: Floats = field(init=False)  # (T,) what the matcher's pool holds per ticket
    sigma2_sum: Floats = field(init=False)

    def __post_init__(self) -> None:
        self.mu_sum = self.per_ticket(self.mu, np.add)
        self.sigma2_sum = self.per_ticket(self.sigma ** 2, np.add)

    def __len__(self) -> int:
        return len(self.time)

    def per_ticket(self, values: Floats, how: np.ufunc) -> Floats:
        """A per-player column reduced per ticket (np.add, np.maximum, np.minimum)."""
        out: Floats = how.reduceat(values, self.first)
        return out


def make_arrivals(rate: float, seconds: float, team_size: int, party_share: float,
                  regions: list[str], seed: int) -> Arrivals:
    """Poisson arrivals at `rate` per second; parties only when a team has room for them."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, int(rate * seconds * 1.2) + 100)
    times = np.cumsum(gaps)
    while times[-1] < seconds:  # rare: the draw fell short; extend it
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate, 1000))])
    times = times[times < seconds]
    n = len(times)
    size = np.ones(n, dtype=np.int64)
    sizes = [s for s in PARTY_SIZES if s <= team_size]
    if sizes and party_share > 0:
        weights = np.array(PARTY_WEIGHTS[:len(sizes)])
        party = rng.random(n) < party_share
        size[party] = rng.choice(sizes, int(party.sum()), p=weights / weights.sum())
    first = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    players = int(size.sum())
    base = rng.normal(SKILL_MEAN, SKILL_SD, n)
    spread = np.where(np.repeat(size, size) > 1, rng.normal(0, PARTY_SPREAD, players), 0.0)
    skill = np.clip(np.repeat(base, size) + spread, 0.0, 2 * SKILL_MEAN)
    kind = rng.random(players)
    sigma = np.where(kind < NEW_SHARE, SIGMA,
                     np.where(kind < NEW_SHARE + PROVISIONAL_SHARE,
                              rng.uniform(*PROVISIONAL_SIGMA, players),
                              rng.uniform(*SEASONED_SIGMA, players)))
    mu = np.where(kind < NEW_SHARE, MU,
                  np.clip(skill + rng.normal(0, 1, players) * sigma, 0.0, 2 * SKILL_MEAN))
    latency = np.zeros((n, len(regions)))
    if regions:
        home = rng.integers(len(regions), size=n)
        latency = rng.uniform(*AWAY_MS, (n, len(regions)))
        latency[np.arange(n), home] = rng.uniform(*HOME_MS, n)
    return Arrivals(times, size, first, latency, skill, mu, sigma, list(regions))


def pool_at(arr: Arrivals, waiting: Ints, now: float) -> Pool:
    """The matcher's columns for these waiting tickets, as the service's `pool_of` builds them."""
    mu = arr.mu_sum[waiting]
    size = arr.size[waiting]
    wait = np.maximum(now - arr.time[waiting], 0.0)
    return Pool(mu / size, mu, arr.sigma2_sum[waiting], size, wait, arr.latency[waiting])


@dataclass
class _Forming:
    room: list[int]  # players each team still needs
    worst: list[float]  # highest latency per region so far
    members: list[tuple[int, int]] = field(default_factory=list)  # (pool index, team)


def first_come(pool: Pool, rules: Rules) -> Matches:
    """First come, first served: tickets in arrival order fill a match until it is full,
    whatever their ratings. A ticket joins the first forming match with room for its whole
    party in one team (teams fill in arrival order, no balancing) and a region where everyone
    stays within the latency limit; else it starts a match. What is still forming when the
    tickets run out waits for the next pass."""
    order = np.argsort(-pool.wait, kind="stable")
    limit = rules.max_region_latency_ms
    sizes = pool.size.tolist()
    lat = pool.latency.tolist()
    forming: list[_Forming] = []
    full: list[_Forming] = []
    for i in order.tolist():
        size, mine = sizes[i], lat[i]
        candidates = [*forming, _Forming([rules.team_size] * rules.teams, [0.0] * len(mine))]
        for m in candidates:
            team = next((t for t, room in enumerate(m.room) if room >= size), -1)
            if team < 0:
                continue
            worst = [max(a, b) for a, b in zip(m.worst, mine, strict=True)]
            if worst and (not np.isfinite(min(worst)) or (limit and min(worst) > limit)):
                continue
            if m is candidates[-1]:
                forming.append(m)
            m.worst = worst
            m.room[team] -= size
            m.members.append((i, team))
            if not any(m.room):
                forming.remove(m)
                full.append(m)
            break
    return _as_matches(pool, rules, full)


def _as_matches(pool: Pool, rules: Rules, full: list[_Forming]) -> Matches:
    """Filled matches in the numpy matcher's output form."""
    g, width = len(full), rules.players
    tickets = np.full((g, width), -1, dtype=np.int64)
    team = np.full((g, width), -1, dtype=np.int64)
    for row, m in enumerate(full):
        tickets[row, :len(m.members)] = [i for i, _ in m.members]
        team[row, :len(m.members)] = [t for _, t in m.members]
    valid = tickets >= 0
    safe = np.maximum(tickets, 0)
    rating = pool.rating[safe]
    spread = (np.where(valid, rating, -np.inf).max(axis=1, initial=-np.inf)
              - np.where(valid, rating, np.inf).min(axis=1, initial=np.inf))
    if pool.latency.shape[1]:
        worst = np.array([m.worst for m in full], dtype=np.float64)
        worst = worst.reshape(g, pool.latency.shape[1])
        region = np.argmin(worst, axis=1) if g else np.zeros(0, np.int64)
        worst_latency = worst.min(axis=1) if g else np.zeros(0)
    else:
        region, worst_latency = np.full(g, -1, dtype=np.int64), np.zeros(g)
    return Matches(tickets, team, region, worst_latency, spread,
                   np.where(valid, pool.wait[safe], -np.inf).max(axis=1, initial=-np.inf),
                   win_probability(pool, rules, tickets, team))


@dataclass
class Outcome:
    """What one matcher did with one run's arrivals; match rows hold arrival indices."""

    status: NDArray[np.int8]  # (T,) WAITING, MATCHED or TIMED_OUT at the end
    done: Floats  # (T,) simulated second it was matched or timed out; nan while waiting
    tickets: Ints  # (G, players) padded with -1
    team: Ints  # (G, players)
    win: Floats  # (G, teams) predicted win probability of each team
    pass_cpu: list[float]  # CPU seconds of each pass that had tickets
    pool: list[int]  # waiting tickets at each such pass


def simulate(arr: Arrivals, queue: Queue, matcher: Matcher, interval: float,
             seconds: float) -> Outcome:
    """Runs a pass every `interval` simulated seconds as the service does: tickets past the
    queue's `max_wait` fail first, then the matcher runs over everyone still waiting."""
    rules = queue.rules()
    n = len(arr)
    status = np.zeros(n, dtype=np.int8)
    done = np.full(n, np.nan)
    waiting = np.zeros(0, dtype=np.int64)
    arrived = 0
    rows: list[Ints] = []
    teams: list[Ints] = []
    wins: list[Floats] = []
    cpu: list[float] = []
    sizes: list[int] = []
    for step in range(1, int(round(seconds / interval)) + 1):
        now = step * interval
        upto = int(np.searchsorted(arr.time, now, side="right"))
        if upto > arrived:
            waiting = np.concatenate([waiting, np.arange(arrived, upto, dtype=np.int64)])
            arrived = upto
        late = now - arr.time[waiting] > queue.max_wait
        if late.any():
            status[waiting[late]] = TIMED_OUT
            done[waiting[late]] = now
            waiting = waiting[~late]
        if len(waiting) == 0:
            continue
        pool = pool_at(arr, waiting, now)
        started = time.process_time()
        found = matcher(pool, rules)
        cpu.append(time.process_time() - started)
        sizes.append(len(waiting))
        if len(found) == 0:
            continue
        ids = np.where(found.tickets >= 0, waiting[np.maximum(found.tickets, 0)], -1)
        used = ids[ids >= 0]
        status[used] = MATCHED
        done[used] = now
        rows.append(ids)
        teams.append(found.team)
        wins.append(found.win)
        waiting = waiting[status[waiting] == WAITING]
    width = rules.players
    return Outcome(status, done,
                   np.concatenate(rows) if rows else np.zeros((0, width), np.int64),
                   np.concatenate(teams) if teams else np.zeros((0, width), np.int64),
                   np.concatenate(wins) if wins else np.zeros((0, rules.teams)),
                   cpu, sizes)


def _pct(values: Floats, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def match_spread(tickets: Ints, high: Floats, low: Floats) -> Floats:
    """Highest minus lowest value in each match, from each ticket's highest and lowest."""
    valid = tickets >= 0
    safe = np.maximum(tickets, 0)
    out: Floats = (np.where(valid, high[safe], -np.inf).max(axis=1, initial=-np.inf)
                   - np.where(valid, low[safe], np.inf).min(axis=1, initial=np.inf))
    return out


def summarize(arr: Arrivals, out: Outcome, teams: int) -> dict[str, float | int | None]:
    """The report of one matcher: counts, waits (per player), spread, balance, CPU."""
    matched = out.status == MATCHED
    timed = out.status == TIMED_OUT
    waits = np.repeat(out.done[matched] - arr.time[matched], arr.size[matched])
    spread = match_spread(out.tickets, arr.per_ticket(arr.mu, np.maximum),
                          arr.per_ticket(arr.mu, np.minimum))
    rating = arr.mu_sum / arr.size  # a ticket's rating: what the window bounds
    by_ticket = match_spread(out.tickets, rating, rating)
    skill = match_spread(out.tickets, arr.per_ticket(arr.skill, np.maximum),
                         arr.per_ticket(arr.skill, np.minimum))
    # How far the favourite is from a coin toss (for two teams: |p - 0.5|).
    balance = np.abs(out.win - 1.0 / teams).max(axis=1) if len(out.win) else np.zeros(0)
    cpu = np.array(out.pass_cpu) * 1000
    return {
        "matches": len(out.tickets),
        "tickets_matched": int(matched.sum()),
        "players_matched": int(arr.size[matched].sum()),
        "tickets_timed_out": int(timed.sum()),
        "players_timed_out": int(arr.size[timed].sum()),
        "tickets_waiting_at_end": int((out.status == WAITING).sum()),
        "players_waiting_at_end": int(arr.size[out.status == WAITING].sum()),
        "wait_p50_s": _pct(waits, 50), "wait_p90_s": _pct(waits, 90),
        "wait_p99_s": _pct(waits, 99), "wait_max_s": float(waits.max()) if len(waits) else None,
        "spread_p50": _pct(spread, 50), "spread_p90": _pct(spread, 90),
        "spread_p99": _pct(spread, 99),
        "ticket_spread_p50": _pct(by_ticket, 50), "ticket_spread_p90": _pct(by_ticket, 90),
        "skill_spread_p50": _pct(skill, 50), "skill_spread_p90": _pct(skill, 90),
        "balance_p50": _pct(balance, 50), "balance_p90": _pct(balance, 90),
        "pass_cpu_ms_mean": float(cpu.mean()) if len(cpu) else None,
        "pass_cpu_ms_max": float(cpu.max()) if len(cpu) else None,
        "passes": len(cpu),
        "pool_mean": float(np.mean(out.pool)) if out.pool else 0.0,
        "pool_max": max(out.pool, default=0),
    }


MATCHERS: dict[str, Matcher] = {"skill (matchmaker)": match, "first come, first served": first_come}

ROWS = [
    ("matches formed", "{matches:,}"),
    ("players matched", "{players_matched:,}"),
    ("tickets (players) timed out", "{tickets_timed_out:,} ({players_timed_out:,})"),
    ("tickets (players) still waiting at the end",
     "{tickets_waiting_at_end:,} ({players_waiting_at_end:,})"),
    ("wait p50 / p90 / p99 / max, s",
     "{wait_p50_s:.2f} / {wait_p90_s:.2f} / {wait_p99_s:.2f} / {wait_max_s:.2f}"),
    ("rating spread (mu) p50 / p90 / p99",
     "{spread_p50:.2f} / {spread_p90:.2f} / {spread_p99:.2f}"),
    ("ticket rating spread p50 / p90", "{ticket_spread_p50:.2f} / {ticket_spread_p90:.2f}"),
    ("hidden skill spread p50 / p90", "{skill_spread_p50:.2f} / {skill_spread_p90:.2f}"),
    ("balance \\|p(win) - 0.5\\| p50 / p90", "{balance_p50:.3f} / {balance_p90:.3f}"),
    ("matcher CPU per pass mean / max, ms", "{pass_cpu_ms_mean:.2f} / {pass_cpu_ms_max:.2f}"),
    ("waiting tickets per pass mean / max", "{pool_mean:,.0f} / {pool_max:,}"),
]


def table(results: dict[str, dict[str, float | int | None]]) -> str:
    """A markdown table: one row per figure, one column per matcher."""
    names = list(results)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, fmt in ROWS:
        cells = []
        for name in names:
            try:
                cells.append(fmt.format(**results[name]))
            except (TypeError, ValueError):  # a None: nothing of that kind happened
                cells.append("—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(queue: Queue, *, rate: float, seconds: float, interval: float, party_share: float,
        regions: list[str], seed: int) -> tuple[Arrivals, dict[str, Outcome]]:
    """The same arrivals through every matcher."""
    arr = make_arrivals(rate, seconds, queue.team_size, party_share, regions, seed)
    return arr, {name: simulate(arr, queue, m, interval, seconds) for name, m in MATCHERS.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=200.0, help="ticket arrivals per second")
    ap.add_argument("--minutes", type=float, default=10.0, help="simulated minutes")
    ap.add_argument("--queue", default="1v1", help="queue name in the queues file")
    ap.add_argument("--queues", type=Path, default=None, help="queues TOML (default: shipped)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--interval", type=float, default=0.25, help="seconds between passes")
    ap.add_argument("--party-share", type=float, default=0.25,
                    help="share of tickets that are parties (team queues only)")
    ap.add_argument("--regions", nargs="*", default=["eu", "us-east", "asia"],
                    help="region names; none: no latencies")
    args = ap.parse_args(argv)
    queues = load(args.queues)
    if args.queue not in queues:
        ap.error(f"unknown queue {args.queue!r}; known: {', '.join(sorted(queues))}")
    if args.rate <= 0 or args.minutes <= 0 or args.interval <= 0:
        ap.error("--rate, --minutes and --interval must be > 0")
    if not 0 <= args.party_share <= 1:
        ap.error("--party-share must be within 0..1")
    queue = queues[args.queue]
    seconds = args.minutes * 60
    arr, outcomes = run(queue, rate=args.rate, seconds=seconds, interval=args.interval,
                        party_share=args.party_share, regions=args.regions, seed=args.seed)
    results = {name: summarize(arr, out, queue.teams) for name, out in outcomes.items()}
    parties = int((arr.size > 1).sum())
    print(f"queue {queue.name} ({queue.teams}x{queue.team_size}, window {queue.rating_window}"
          f" + {queue.widen_per_second}/s, max_wait {queue.max_wait:g} s, latency limit "
          f"{queue.max_region_latency_ms:g} ms); {len(arr):,} tickets ({parties:,} parties, "
          f"{len(arr.mu):,} players) over {seconds:g} simulated s at {args.rate:g}/s; "
          f"regions {', '.join(arr.regions) or 'none'}; passes every {args.interval:g} s; "
          f"seed {args.seed}\n")
    print(table(results))
    out = (ROOT / "loadtest" / "results"
           / f"matchmaker_sim-{queue.name}-{time.strftime('%Y%m%dT%H%M%S')}.json")
    out.write_text(json.dumps({
        "machine": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__,
        "load_average": os.getloadavg()[0], "args": {**vars(args), "queues": str(args.queues)},
        "queue": asdict(queue), "tickets": len(arr), "parties": parties,
        "players": len(arr.mu), "results": results}, indent=2))
    print(f"\nload average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
