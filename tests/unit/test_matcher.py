"""The matcher on numpy inputs: parties whole, windows that widen, balanced teams, regions,
oldest first, and nobody in two matches."""

from __future__ import annotations

import numpy as np
import pytest

from matchmaker.matcher import Matches, Pool, Rules, match
from matchmaker.passes import pool_of
from matchmaker.ratings import Rating, predict_win
from matchmaker.store import Ticket

SIGMA2 = (25 / 3) ** 2


def pool(rating: list[float], size: list[int] | None = None, wait: list[float] | None = None,
         latency: list[list[float]] | None = None) -> Pool:
    n = len(rating)
    r = np.array(rating, dtype=float)
    s = np.array(size or [1] * n, dtype=np.int64)
    lat = np.zeros((n, 0)) if latency is None else np.array(latency, dtype=float)
    return Pool(r, r * s, SIGMA2 * s.astype(float), s,
                np.array(wait or [0.0] * n, dtype=float), lat)


def matched(m: Matches) -> list[set[int]]:
    return [set(int(t) for t in row if t >= 0) for row in m.tickets]


def check_invariants(p: Pool, rules: Rules, m: Matches) -> None:
    """What every pass must hold, whatever the input."""
    used = m.tickets[m.tickets >= 0]
    assert len(used) == len(set(used.tolist())), "a ticket is in two matches"
    for g in range(len(m)):
        row = m.tickets[g][m.tickets[g] >= 0]
        team = m.team[g][m.tickets[g] >= 0]
        per_team = np.bincount(team, weights=p.size[row], minlength=rules.teams)
        assert per_team.tolist() == [rules.team_size] * rules.teams
        spread = p.rating[row].max() - p.rating[row].min()
        assert spread == pytest.approx(m.spread[g])
        window = rules.rating_window + rules.widen_per_second * p.wait[row]
        assert spread <= window.min() + 1e-9
        if p.latency.shape[1]:
            worst = p.latency[row].max(axis=0)
            assert m.worst_latency[g] == worst.min() == worst[m.region[g]]
            if rules.max_region_latency_ms:
                assert m.worst_latency[g] <= rules.max_region_latency_ms
        assert m.win[g].sum() == pytest.approx(1.0)


def test_one_v_one_pairs_neighbours_in_rating() -> None:
    p = pool([10, 30, 11, 31])
    m = match(p, Rules(2, 1, 2.0, 0.0))
    assert sorted(map(sorted, matched(m))) == [[0, 2], [1, 3]]
    check_invariants(p, Rules(2, 1, 2.0, 0.0), m)


def test_windows_widen_with_wait() -> None:
    rules = Rules(2, 1, rating_window=2.0, widen_per_second=1.0)
    assert len(match(pool([20, 30]), rules)) == 0
    # Both tickets must accept the other: one patient ticket is not enough.
    assert len(match(pool([20, 30], wait=[20, 0]), rules)) == 0
    m = match(pool([20, 30], wait=[8, 9]), rules)
    assert matched(m) == [{0, 1}] and m.spread[0] == 10


def test_parties_stay_whole_on_one_team() -> None:
    rules = Rules(2, 5, 100.0, 0.0)
    p = pool([25, 24, 26, 25, 23, 27], size=[3, 3, 1, 1, 1, 1])
    m = match(p, rules)
    assert len(m) == 1 and matched(m)[0] == set(range(6))
    team = dict(zip(m.tickets[0].tolist(), m.team[0].tolist(), strict=True))
    assert team[0] != team[1]  # two parties of 3 cannot share a team of 5
    check_invariants(p, rules, m)


def test_parties_that_cannot_split_into_teams_wait() -> None:
    rules = Rules(2, 5, 100.0, 0.0)
    # 3 + 3 + 3 + 1 = 10 players, but no team of exactly 5 can be made of them.
    assert len(match(pool([25, 25, 25, 25], size=[3, 3, 3, 1]), rules)) == 0
    # The first run of 10 (3+3+3+1) cannot be split; the next one (3+3+1+2+1) can.
    p = pool([25] * 6, size=[3, 3, 3, 1, 2, 1])
    m = match(p, rules)
    check_invariants(p, rules, m)
    assert matched(m) == [{1, 2, 3, 4, 5}]


def test_teams_are_balanced_and_win_probability_is_openskills() -> None:
    rules = Rules(2, 2, 100.0, 0.0)
    p = pool([30, 28, 22, 20])
    m = match(p, rules)
    team = dict(zip(m.tickets[0].tolist(), m.team[0].tolist(), strict=True))
    assert team[0] == team[3] and team[1] == team[2]  # 30+20 vs 28+22
    teams: list[list[Rating]] = [[], []]
    for t, k in team.items():
        teams[k].append(Rating(float(p.rating[t]), 25 / 3))
    assert m.win[0].tolist() == pytest.approx(predict_win(teams), abs=1e-6)
    assert abs(m.win[0][0] - 0.5) < 0.05


def test_win_probability_matches_openskill_for_three_teams() -> None:
    rules = Rules(3, 1, 100.0, 0.0)
    p = pool([20, 25, 33])
    m = match(p, rules)
    order = m.tickets[0][np.argsort(m.team[0])]
    expected = predict_win([[Rating(float(p.rating[t]), 25 / 3)] for t in order])
    assert m.win[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_party_teams_balance_exactly() -> None:
    rules = Rules(2, 3, 100.0, 0.0)
    # A party of two at 30 each, singles 29, 21, 20, 20: the closest split is 80 vs 70.
    p = pool([30, 29, 21, 20, 20], size=[2, 1, 1, 1, 1])
    m = match(p, rules)
    check_invariants(p, rules, m)
    row = m.tickets[0] >= 0
    sums = np.bincount(m.team[0][row], weights=p.mu[m.tickets[0][row]], minlength=2)
    assert abs(sums[0] - sums[1]) == pytest.approx(10.0)  # 80 vs 70: the best there is


def test_region_minimises_the_worst_latency() -> None:
    rules = Rules(2, 1, 10.0, 0.0, max_region_latency_ms=90)
    p = pool([25, 25], latency=[[30, 100], [80, 40]])
    m = match(p, rules)
    assert m.region.tolist() == [0] and m.worst_latency.tolist() == [80]
    tight = Rules(2, 1, 10.0, 0.0, max_region_latency_ms=50)
    assert len(match(p, tight)) == 0
    apart = pool([25, 25], latency=[[30, np.inf], [np.inf, 40]])
    assert len(match(apart, rules)) == 0
    anywhere = pool([25, 25], latency=[[30, 100], [0, 0]])  # second ticket named no region
    assert match(anywhere, rules).worst_latency.tolist() == [30]


def test_oldest_ticket_is_served_first() -> None:
    rules = Rules(2, 1, 1.0, 0.0)
    m = match(pool([10, 10.5, 11], wait=[0, 0, 100]), rules)
    assert matched(m) == [{1, 2}]
    m = match(pool([10, 10.5, 11], wait=[100, 0, 0]), rules)
    assert matched(m) == [{0, 1}]


def test_free_for_all() -> None:
    rules = Rules(4, 1, 100.0, 0.0)
    p = pool([20, 21, 22, 23, 24])
    m = match(p, rules)
    check_invariants(p, rules, m)
    assert len(m) == 1 and sorted(m.team[0].tolist()) == [0, 1, 2, 3]


def test_three_teams_with_parties() -> None:
    rules = Rules(3, 2, 100.0, 0.0)
    p = pool([25, 25, 25, 25], size=[2, 2, 1, 1])
    m = match(p, rules)
    check_invariants(p, rules, m)
    assert len(m) == 1


def test_empty_pool_and_bad_sizes() -> None:
    m = match(pool([]), Rules(2, 1, 1.0, 0.0))
    assert len(m) == 0 and m.win.shape == (0, 2)
    with pytest.raises(ValueError):
        match(pool([25, 25], size=[2, 1]), Rules(2, 1, 1.0, 0.0))


@pytest.mark.parametrize("seed", range(40))
def test_random_pools_keep_every_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    teams, team_size = [(2, 1), (2, 2), (2, 5), (3, 3), (6, 1)][seed % 5]
    rules = Rules(teams, team_size, float(rng.uniform(0, 3)), float(rng.uniform(0, 0.5)),
                  float(rng.choice([0, 120])))
    n = int(rng.integers(0, 400))
    size = np.where(rng.random(n) < 0.2, rng.integers(1, team_size + 1, n), 1)
    latency = rng.uniform(10, 200, (n, 3))
    latency[rng.random((n, 3)) < 0.2] = np.inf
    r = rng.normal(25, 4, n)
    p = Pool(r, r * size, SIGMA2 * size, size.astype(np.int64), rng.uniform(0, 30, n), latency)
    m = match(p, rules)
    check_invariants(p, rules, m)
    if rules.players == 2 and n:
        # The oldest ticket is matched whenever a rating neighbour would have it.
        oldest = int(np.argmax(p.wait))
        order = np.argsort(p.rating, kind="stable").tolist()
        at = order.index(oldest)
        w = rules.rating_window + rules.widen_per_second * p.wait
        limit = rules.max_region_latency_ms or np.inf
        fits = [j for j in order[max(at - 1, 0):at + 2] if j != oldest
                and abs(p.rating[j] - p.rating[oldest]) <= min(w[j], w[oldest])
                and np.max(latency[[j, oldest]], axis=0).min() <= limit]
        if fits:
            assert oldest in set(m.tickets[m.tickets >= 0].tolist())


def test_pool_of_tickets() -> None:
    t1 = Ticket("q.1", "q", ["a", "b"], [20.0, 30.0], [3.0, 4.0], {"eu": 30.0}, 100.0)
    t2 = Ticket("q.2", "q", ["c"], [25.0], [8.0], {}, 110.0)
    t3 = Ticket("q.3", "q", ["d"], [25.0], [8.0], {"us": 70.0, "eu": 90.0}, 105.0)
    p, regions = pool_of([t1, t2, t3], now=120.0)
    assert regions == ["eu", "us"]
    assert p.size.tolist() == [2, 1, 1] and p.rating.tolist() == [25.0, 25.0, 25.0]
    assert p.mu.tolist() == [50.0, 25.0, 25.0] and p.sigma2.tolist() == [25.0, 64.0, 64.0]
    assert p.wait.tolist() == [20.0, 10.0, 15.0]
    assert p.latency.tolist() == [[30.0, np.inf], [0.0, 0.0], [90.0, 70.0]]


@pytest.mark.parametrize("waits", ["equal", "arrival order"])
@pytest.mark.parametrize("teams, team_size", [(2, 1), (2, 5), (4, 1)])
def test_a_crowd_of_equal_ratings_is_matched_in_one_pass(waits: str, teams: int,
                                                        team_size: int) -> None:
    # Launch day: every new player has mu 25. Candidates of equal priority must not form a
    # chain in which each round takes only the first.
    rules = Rules(teams, team_size, 2.0, 0.25)
    n = 240 * rules.players
    wait = [0.0] * n if waits == "equal" else [30.0 * (n - i) / n for i in range(n)]
    p = pool([25.0] * n, wait=wait)
    m = match(p, rules)
    check_invariants(p, rules, m)
    assert len(m) == n // rules.players


def _same(a: Matches, b: Matches) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("tickets", "team", "region", "worst_latency", "spread", "win"))


@pytest.mark.parametrize("seed", range(60))
def test_focused_rounds_find_what_rescanning_every_ticket_finds(seed: int) -> None:
    # Rounds after the first look only near the last round's candidates; whatever the pool
    # (dense, or a few matchable tickets among many that cannot play), the matches are the
    # ones a rescan of every ticket each round forms.
    rng = np.random.default_rng(1000 + seed)
    teams, team_size = [(2, 1), (2, 2), (2, 5), (3, 3), (6, 1), (4, 1)][seed % 6]
    rules = Rules(teams, team_size, float(rng.uniform(0.1, 3)), float(rng.uniform(0, 0.3)),
                  float(rng.choice([0, 150])))
    n = int(rng.integers(1, 3000))
    size = np.where(rng.random(n) < 0.3, rng.integers(1, team_size + 1, n), 1)
    regions = int(rng.integers(0, 4))
    latency = rng.uniform(10, 250, (n, regions))
    latency[rng.random((n, regions)) < 0.2] = np.inf
    if seed % 2:  # sparse: most tickets out of every region's reach, a few near ones
        latency[rng.random(n) < 0.95] = np.inf
    r = np.round(rng.normal(25, 4, n), int(rng.integers(0, 3)))  # ties too
    p = Pool(r, r * size, SIGMA2 * size, size.astype(np.int64), rng.uniform(0, 60, n), latency)
    for rounds in (1, 2, 3, 64):
        focused = match(p, rules, max_rounds=rounds)
        assert _same(focused, match(p, rules, max_rounds=rounds, focus=False))
        check_invariants(p, rules, focused)


def test_sorting_keeps_rating_order_across_zero() -> None:
    # Ratings are sorted as 64-bit keys: negative ones must come before positive ones and
    # the most negative first, or neighbours in rating would not be neighbours in the run.
    p = pool([-3.0, 2.0, -1.0, 0.5, -2.5, 1.5])
    m = match(p, Rules(2, 1, 0.75, 0.0))
    assert sorted(map(sorted, matched(m))) == [[0, 4], [1, 5]]
