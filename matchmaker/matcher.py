"""One matching pass over every waiting ticket of a queue: numpy arrays in, matches out.

No I/O and no clock: the caller passes how long each ticket has waited.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

EXACT_WIDTH = 12  # up to this many tickets per match, two teams are split by trying all


@dataclass(frozen=True)
class Rules:
    """What a match of one queue looks like, and how far apart its players may be."""

    teams: int
    team_size: int
    rating_window: float  # rating points a new ticket accepts either side of its own
    widen_per_second: float  # added to the window per second waited
    max_region_latency_ms: float = 0.0  # 0: no limit (the best region is still chosen)
    beta: float = 25.0 / 6.0  # skill noise of the rating model, for the win probability

    @property
    def players(self) -> int:
        return self.teams * self.team_size


@dataclass(frozen=True)
class Pool:
    """The waiting tickets of one queue, one row per ticket (a ticket is a party of 1+).

    `latency` is (tickets x regions) in ms: inf where a ticket cannot play, and a row of
    zeros for a ticket that named no regions. It may have zero columns.
    """

    rating: Floats  # mean rating (mu) of the ticket's players
    mu: Floats  # sum of the players' mu
    sigma2: Floats  # sum of the players' sigma squared
    size: Ints  # players in the ticket
    wait: Floats  # seconds waited so far
    latency: Floats

    def __len__(self) -> int:
        return len(self.rating)


@dataclass(frozen=True)
class Matches:
    """G matches of one pass. Rows of `tickets` and `team` are padded with -1."""

    tickets: Ints  # (G, players) indices into the pool
    team: Ints  # (G, players) team of each of those tickets
    region: Ints  # (G,) column of `latency`, -1 when the pool has no regions
    worst_latency: Floats  # (G,) highest latency of any ticket in the chosen region
    spread: Floats  # (G,) highest minus lowest ticket rating
    max_wait: Floats  # (G,) wait of the oldest ticket
    win: Floats  # (G, teams) predicted probability that each team wins

    def __len__(self) -> int:
        return len(self.region)


def window(rules: Rules, wait: Floats) -> Floats:
    """The rating distance each ticket accepts after waiting `wait` seconds."""
    out: Floats = rules.rating_window + rules.widen_per_second * wait
    return out


def match(pool: Pool, rules: Rules, max_rounds: int = 64, focus: bool = True) -> Matches:
    """Form as many matches as the rules allow, oldest tickets first.

    Tickets are sorted by their nearest region, then by rating; a candidate match is a run
    of neighbours whose players add up to exactly `rules.players`, whose rating spread is
    within every member's window, and which has a region within the latency limit. Each
    round takes every candidate that beats all candidates it overlaps (oldest ticket, then
    smallest spread), removes its tickets, and looks again at what is left.

    With `focus`, rounds after the first look only near the candidates of the round before:
    a run that lost no ticket is the candidate it was, so only runs near a taken one can
    change, and a round moves that frontier by at most one run's width. The result is the
    same as rescanning every ticket each round (`focus=False`), which tests compare.
    """
    n = len(pool)
    need = rules.players
    width = max(need, 1)
    if np.any(pool.size < 1) or np.any(pool.size > rules.team_size):
        raise ValueError("every ticket needs 1..team_size players")
    # Equal ratings (a crowd of new players) are put in a scrambled order, and equally good
    # candidates are told apart by the same scramble: were they in arrival order, each
    # candidate would beat the next one by a hair and a round would take only the first.
    mix = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    order = _sorted(pool, mix)
    # The candidates' keys scramble again: ordered by `mix`, equal ratings would otherwise
    # have rising keys, a chain again.
    mix = (mix[order] * np.uint64(0x85EBCA6B)) & np.uint64(0xFFFFFFFF)
    rating = pool.rating[order]
    size = pool.size[order]
    wait = pool.wait[order]
    win_w = window(rules, wait)
    regions = pool.latency.shape[1] if pool.latency.ndim == 2 else 0
    parties = bool(np.any(pool.size > 1))
    alive = np.arange(n)
    # Segments of `alive` left by focusing: a run must not span two, as the tickets between
    # them were left out, not taken.
    seg = np.zeros(n, np.int64)
    found_pos: list[Ints] = []
    found_region: list[Ints] = []
    found_lat: list[Floats] = []
    for rnd in range(max_rounds):
        m = len(alive)
        if m == 0:
            break
        r, s, w, age, key = rating[alive], size[alive], win_w[alive], wait[alive], mix[alive]
        idx = np.arange(m)
        if parties:
            cum = np.cumsum(s)
            target = cum - s + need
            end = np.searchsorted(cum, target)
            valid = end < m
            end = np.minimum(end, m - 1)
            valid &= cum[end] == target
        else:  # a player per ticket: every run is `need` tickets long
            end = idx + (need - 1)
            valid = end < m
            end = np.minimum(end, m - 1)
        valid &= seg[end] == seg
        length = end - idx + 1
        min_w = w.copy()
        oldest = age.copy()
        low = r.copy()
        high = r.copy()
        if regions:
            la = np.take(pool.latency, order[alive], axis=0)  # faster than [] for rows
            worst = la.copy()
        # Two teams of S: some of the run's parties must add up to exactly S. Bit j of
        # `sums` says some subset of the run so far holds j players.
        split = parties and rules.teams == 2
        full = np.int64((1 << (rules.team_size + 1)) - 1)
        sums = (np.int64(1) | (np.int64(1) << s)) & full if split else s
        for d in range(1, width):
            k = np.minimum(idx + d, m - 1)
            inside = d < length
            min_w = np.where(inside, np.minimum(min_w, w[k]), min_w)
            oldest = np.where(inside, np.maximum(oldest, age[k]), oldest)
            low = np.where(inside, np.minimum(low, r[k]), low)
            high = np.where(inside, np.maximum(high, r[k]), high)
            if regions and d < m:  # runs of d+1 or more: rows d apart, in place
                np.maximum(worst[:m - d], la[d:], out=worst[:m - d], where=inside[:m - d, None])
            if split:
                sums = np.where(inside, (sums | (sums << s[k])) & full, sums)
        if split:
            valid &= ((sums >> rules.team_size) & 1) == 1
        spread = high - low
        valid &= spread <= min_w
        if regions:
            region = np.argmin(worst, axis=1)
            best = np.take_along_axis(worst, region[:, None], axis=1)[:, 0]
            valid &= np.isfinite(best)
            if rules.max_region_latency_ms > 0:
                valid &= best <= rules.max_region_latency_ms
        else:
            region = np.full(m, -1)
            best = np.zeros(m)
        if not valid.any():
            break
        # Priority: the oldest ticket first, then the tightest spread, then the scramble.
        # Compared pairwise between overlapping candidates: no sort needed.
        oldest = np.where(valid, oldest, -np.inf)
        beaten = np.zeros(m, dtype=bool)
        for d in range(1, width):
            later = np.minimum(idx + d, m - 1)
            beaten |= (idx + d < m) & (later <= end) & _before(
                oldest[later], spread[later], key[later], oldest, spread, key)
            earlier = np.maximum(idx - d, 0)
            beaten |= (idx - d >= 0) & (end[earlier] >= idx) & _before(
                oldest[earlier], spread[earlier], key[earlier], oldest, spread, key)
        picked = np.flatnonzero(valid & ~beaten)
        if len(picked) == 0:
            break
        offs = np.arange(width)
        run = np.minimum(picked[:, None] + offs[None, :], m - 1)
        found_pos.append(np.where(offs[None, :] < length[picked][:, None], alive[run], -1))
        found_region.append(region[picked])
        found_lat.append(best[picked])
        cover = np.zeros(m + 1, dtype=np.int64)
        cover[picked] = 1  # picked runs never overlap: each index appears once
        cover[end[picked] + 1] -= 1
        keep = np.cumsum(cover[:m]) == 0
        left = max_rounds - rnd - 1
        if focus and left:
            # Only runs within `reach` of this round's candidates can be candidates in the
            # rounds left; a taken run is one of those, so its gap is covered too.
            reach = (left + 2) * width
            starts = np.flatnonzero(valid)
            edges = (np.bincount(np.maximum(starts - reach, 0), minlength=m + 1)
                     - np.bincount(np.minimum(starts + reach + 1, m), minlength=m + 1))
            near = np.cumsum(edges[:m]) > 0
            split_at = np.ones(m, dtype=bool)
            split_at[1:] = ~near[:-1] | (seg[1:] != seg[:-1])
            seg = np.cumsum(split_at)
            keep &= near
        alive = alive[keep]
        seg = seg[keep]
    return _assemble(pool, rules, order, found_pos, found_region, found_lat)


def _sorted(pool: Pool, mix: NDArray[np.uint64]) -> Ints:
    """Tickets by home region (the nearest), then rating, equal ratings in `mix` order.

    Players near one region meet each other first: runs of one home region mostly share a
    low-latency region, runs across regions rarely do. One sort of 64-bit keys: the rating's
    bits in an order-keeping form with the last 24 (ratings closer than about 1e-7 of each
    other) replaced by the scramble, then a stable (radix) sort by home region.
    """
    bits = pool.rating.view(np.int64)
    ordered = bits ^ ((bits >> 63) & np.int64(0x7FFFFFFFFFFFFFFF))  # negatives reversed
    key = ((ordered >> 24) << 24) | (mix & np.uint64(0xFFFFFF)).astype(np.int64)
    order: Ints = np.argsort(key)
    if pool.latency.ndim == 2 and pool.latency.shape[1] > 1:
        home = np.argmin(pool.latency, axis=1)[order]
        if pool.latency.shape[1] < 1 << 16:
            home = home.astype(np.uint16)  # stable sorts of 16-bit keys are radix sorts
        order = order[np.argsort(home, kind="stable")]
    return order


def _before(old_a: Floats, spread_a: Floats, key_a: NDArray[np.uint64], old_b: Floats,
            spread_b: Floats, key_b: NDArray[np.uint64]) -> NDArray[np.bool_]:
    """Whether candidate a goes before b: older, then tighter, then the higher scramble key
    (keys differ between candidates, so exactly one of two goes first)."""
    tie = (spread_a < spread_b) | ((spread_a == spread_b) & (key_a > key_b))
    out: NDArray[np.bool_] = (old_a > old_b) | ((old_a == old_b) & tie)
    return out


def _assemble(pool: Pool, rules: Rules, order: Ints, runs: list[Ints], regions: list[Ints],
              lats: list[Floats]) -> Matches:
    """Runs of sorted positions to ticket indices, teams and predicted outcomes."""
    need = rules.players
    if not runs:
        e = np.zeros((0, need), dtype=np.int64)
        return Matches(e, e.copy(), np.zeros(0, np.int64), np.zeros(0), np.zeros(0),
                       np.zeros(0), np.zeros((0, rules.teams)))
    pos = np.concatenate(runs)
    g = len(pos)
    tickets = np.where(pos >= 0, order[np.maximum(pos, 0)], -1)
    valid = tickets >= 0
    safe = np.maximum(tickets, 0)
    rating = pool.rating[safe]
    spread = (np.where(valid, rating, -np.inf).max(axis=1)
              - np.where(valid, rating, np.inf).min(axis=1))
    max_wait = np.where(valid, pool.wait[safe], -np.inf).max(axis=1)
    team = _teams(pool, rules, tickets)
    win = win_probability(pool, rules, tickets, team)
    fits = team[:, 0] >= 0  # a greedy split of many teams can fail: those tickets wait
    return Matches(tickets[fits], team[fits], np.concatenate(regions)[fits],
                   np.concatenate(lats)[fits], spread[fits], max_wait[fits],
                   win.reshape(g, rules.teams)[fits])


def _teams(pool: Pool, rules: Rules, tickets: Ints) -> Ints:
    """Team of every ticket of every match: parties stay whole, team ratings close."""
    g, width = tickets.shape
    team = np.full((g, width), -1, dtype=np.int64)
    valid = tickets >= 0
    solo = valid.sum(axis=1) == rules.players  # every ticket a single player
    if solo.any():
        rows = np.flatnonzero(solo)
        mu = pool.mu[tickets[rows][:, :rules.players]]
        strongest = np.argsort(-mu, axis=1, kind="stable")
        # Snake draft: 0,1,..,T-1, T-1,..,0, 0,1,..: the strongest picks alternate.
        p = np.arange(rules.players)
        turn, within = divmod(p, rules.teams)
        snake = np.where(turn % 2 == 0, within, rules.teams - 1 - within)
        assigned = np.empty_like(strongest)
        np.put_along_axis(assigned, strongest, snake[None, :].repeat(len(rows), 0), axis=1)
        team[rows, :rules.players] = assigned
    rest = np.flatnonzero(~solo)
    k = int(valid[rest].sum(axis=1).max()) if len(rest) else 0
    if len(rest) and rules.teams == 2 and k <= EXACT_WIDTH:
        # A match's tickets fill the left of its row: k columns hold them all.
        sub, ok = tickets[rest, :k], valid[rest, :k]
        pairs = _two_teams(pool.size[sub] * ok, pool.mu[sub] * ok, rules.team_size)
        team[rest, :k] = np.where(ok & (pairs[:, :1] >= 0), pairs, -1)
        rest = rest[:0]
    for row in rest:
        k = int(valid[row].sum())
        greedy = _party_teams(pool.size[tickets[row, :k]], pool.mu[tickets[row, :k]], rules)
        if greedy is not None:
            team[row, :k] = greedy
    return team


def _two_teams(size: Ints, mu: Floats, team_size: int) -> Ints:
    """Two teams for many matches at once: of every split whose first team holds exactly
    `team_size` players, the one with the closest team ratings; -1 rows when none fits.
    Padding columns carry size 0 and mu 0."""
    g, k = size.shape
    # The first ticket is always on the side the mask counts: half the splits, no loss.
    masks = np.arange(1 << (k - 1)) * 2 + 1
    bits = (masks[:, None] >> np.arange(k)[None, :]) & 1  # (splits, k)
    fbits = bits.T.astype(np.float64)  # float products go through BLAS; integer ones do not
    first = size.astype(np.float64) @ fbits
    strength = mu @ fbits
    gap = np.abs(2 * strength - mu.sum(axis=1, keepdims=True))
    gap[first != team_size] = np.inf
    best = np.argmin(gap, axis=1)
    out: Ints = (1 - bits[best]).astype(np.int64)
    out[~np.isfinite(gap[np.arange(g), best])] = -1
    return out


def _party_teams(size: Ints, mu: Floats, rules: Rules) -> Ints | None:
    """Teams for one match with parties: exact for two teams, greedy for more."""
    k = len(size)
    if rules.teams == 2:
        masks = np.arange(1 << k, dtype=np.int64)
        bits = (masks[:, None] >> np.arange(k)[None, :]) & 1
        first = bits @ size
        strength = bits @ mu
        gap = np.abs(2 * strength - mu.sum())
        gap = np.where(first == rules.team_size, gap, np.inf)
        best = int(np.argmin(gap))
        if not np.isfinite(gap[best]):
            return None
        out: Ints = (1 - bits[best]).astype(np.int64)
        return out
    room = np.full(rules.teams, rules.team_size)
    total = np.zeros(rules.teams)
    out = np.full(k, -1, dtype=np.int64)
    for i in np.lexsort((-mu, -size)):  # largest parties first, strongest first
        fits = np.flatnonzero(room >= size[i])
        if len(fits) == 0:
            return None
        t = fits[np.argmin(total[fits])]
        out[i] = t
        room[t] -= size[i]
        total[t] += mu[i]
    return out


def _normal_cdf(x: Floats) -> Floats:
    """Standard normal CDF; erf by Abramowitz and Stegun 7.1.26 (error below 1.5e-7)."""
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                          + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    out: Floats = 0.5 * (1.0 + np.sign(x) * erf)
    return out


def win_probability(pool: Pool, rules: Rules, tickets: Ints, team: Ints) -> Floats:
    """(G, teams) chance of each team winning, as openskill's `predict_win` computes it."""
    g = len(tickets)
    t = rules.teams
    valid = tickets >= 0
    safe = np.maximum(tickets, 0)
    slot = (np.arange(g)[:, None] * t + np.maximum(team, 0))[valid]
    mu = np.bincount(slot, pool.mu[safe][valid], g * t).reshape(g, t)
    s2 = np.bincount(slot, pool.sigma2[safe][valid], g * t).reshape(g, t)
    if t == 2:
        first = _normal_cdf((mu[:, 0] - mu[:, 1])
                            / np.sqrt(2 * rules.beta ** 2 + s2[:, 0] + s2[:, 1]))
        two: Floats = np.stack([first, 1.0 - first], axis=1)
        return two
    diff = mu[:, :, None] - mu[:, None, :]
    scale = np.sqrt(2 * rules.beta ** 2 + s2[:, :, None] + s2[:, None, :])
    pair = _normal_cdf(diff / scale)
    pair[:, np.arange(t), np.arange(t)] = 0.0
    raw = pair.sum(axis=2) / (t - 1)
    out: Floats = raw / raw.sum(axis=1, keepdims=True)
    return out.reshape(g, t)
