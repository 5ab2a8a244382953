"""Matches for tickets past their queue's `max_wait`, bots in the seats left: the oldest
ticket first, joined by every next-oldest ticket that shares a region with it and fits.

No I/O and no clock, like the matcher: the caller passes the pool of the expired tickets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from matchmaker.matcher import Floats, Ints, Matches, Pool, Rules, win_probability


@dataclass(frozen=True)
class BotMatches:
    """Matches of expired tickets. `matches` holds the humans' tickets and teams as the
    matcher would; its `win` counts the bots in."""

    matches: Matches
    bots: Ints  # (G, teams) bots on each team
    bot_mu: Floats  # (G,) rating (mu) of every bot of the match: the humans' mean
    unplaced: Ints  # tickets that can be in no match: no region within the latency limit

    def __len__(self) -> int:
        return len(self.matches)


def reach(latency: Floats, max_latency_ms: float) -> list[int]:
    """Per ticket, a bit mask of the regions it may play in (bit c: latency column c). A pool
    with no region columns plays in one region anywhere: every mask is 1."""
    n, regions = latency.shape if latency.ndim == 2 else (len(latency), 0)
    if regions == 0:
        return [1] * n
    ok = np.isfinite(latency)
    if max_latency_ms > 0:
        ok &= latency <= max_latency_ms
    packed = np.packbits(ok, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def fill(pool: Pool, rules: Rules, bot_sigma: float) -> BotMatches:
    """Group every ticket of `pool` into matches, oldest first, and count the bots each team
    needs. Each match starts with the oldest ticket left and takes, oldest first, each ticket
    that keeps a region in common within the latency limit and whose party fits a team (it
    joins the team with the most free seats). A ticket with no region within the limit, or
    a party larger than a team, comes back in `unplaced`."""
    n = len(pool)
    teams, team_size = rules.teams, rules.team_size
    masks = reach(pool.latency, rules.max_region_latency_ms)
    age = np.empty(n, np.int64)
    order = np.argsort(-pool.wait, kind="stable")
    age[order] = np.arange(n)  # 0 is the oldest
    # Tickets by (regions mask, party size), each in age order: the next ticket a match takes
    # is the oldest head among the buckets it accepts, without scanning every ticket.
    buckets: dict[tuple[int, int], deque[int]] = {}
    unplaced: list[int] = []
    for i in order.tolist():
        size = int(pool.size[i])
        if masks[i] == 0 or not 1 <= size <= team_size:
            unplaced.append(i)
        else:
            buckets.setdefault((masks[i], size), deque()).append(i)
    groups: list[tuple[list[int], list[int], list[int], int]] = []
    while buckets:
        first = min(buckets, key=lambda k: age[buckets[k][0]])
        common = first[0]
        room = [team_size] * teams
        members: list[int] = []
        placed: list[int] = []
        key: tuple[int, int] | None = first
        while key is not None:
            i = buckets[key].popleft()
            if not buckets[key]:
                del buckets[key]
            size = int(pool.size[i])
            team = max(range(teams), key=lambda t: (room[t], -t))  # most room, then first
            room[team] -= size
            members.append(i)
            placed.append(team)
            common &= key[0]
            widest = max(room)
            key = None
            for k, queue in buckets.items():
                if k[1] <= widest and k[0] & common and (
                        key is None or age[queue[0]] < age[buckets[key][0]]):
                    key = k
        groups.append((members, placed, room, common))
    return _assemble(pool, rules, bot_sigma, groups, np.array(unplaced, np.int64))


def _assemble(pool: Pool, rules: Rules, bot_sigma: float,
              groups: list[tuple[list[int], list[int], list[int], int]],
              unplaced: Ints) -> BotMatches:
    """Groups to the matcher's `Matches` (padded with -1), the bots and their ratings."""
    g, width, teams = len(groups), rules.players, rules.teams
    tickets = np.full((g, width), -1, np.int64)
    team = np.full((g, width), -1, np.int64)
    bots = np.zeros((g, teams), np.int64)
    region = np.full(g, -1, np.int64)
    worst = np.zeros(g)
    regions = pool.latency.shape[1] if pool.latency.ndim == 2 else 0
    for row, (members, placed, room, common) in enumerate(groups):
        tickets[row, :len(members)] = members
        team[row, :len(members)] = placed
        bots[row] = room
        if regions:
            allowed = [c for c in range(regions) if common >> c & 1]
            lat = pool.latency[np.ix_(members, allowed)].max(axis=0)
            best = int(np.argmin(lat))  # the lowest worst latency, first column on a tie
            region[row], worst[row] = allowed[best], float(lat[best])
    valid = tickets >= 0
    safe = np.maximum(tickets, 0)
    humans = np.where(valid, pool.size[safe], 0).sum(axis=1)
    bot_mu = np.where(valid, pool.mu[safe], 0.0).sum(axis=1) / np.maximum(humans, 1)
    rating = pool.rating[safe]
    spread = (np.where(valid, rating, -np.inf).max(axis=1, initial=-np.inf)
              - np.where(valid, rating, np.inf).min(axis=1, initial=np.inf))
    oldest = np.where(valid, pool.wait[safe], -np.inf).max(axis=1, initial=-np.inf)
    # Each team's rating sums with its bots in, as one row per (match, team) for the
    # matcher's predict_win: the same model the humans' ratings are updated with.
    slot = (np.arange(g)[:, None] * teams + np.maximum(team, 0))[valid]
    mu = np.bincount(slot, pool.mu[safe][valid], g * teams) + (bots * bot_mu[:, None]).ravel()
    sigma2 = np.bincount(slot, pool.sigma2[safe][valid], g * teams) \
        + bots.ravel() * bot_sigma ** 2
    per_team = Pool(np.zeros(g * teams), mu, sigma2, np.ones(g * teams, np.int64),
                    np.zeros(g * teams), np.zeros((g * teams, 0)))
    cells = np.arange(g * teams, dtype=np.int64).reshape(g, teams)
    win = win_probability(per_team, rules, cells, np.tile(np.arange(teams), (g, 1)))
    matches = Matches(tickets, team, region, worst, spread, oldest, win)
    return BotMatches(matches, bots, bot_mu, unplaced)
