"""Bots on timeout, on numpy inputs: expired tickets grouped oldest first into matches of the
queue's shape with parties whole and a region in common, bots in the seats left, and win
probabilities that count the bots; the queue option; a pass over a backlog on Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from loadtest.matchmaker.seed import write_relay, write_waiting
from matchmaker import keys
from matchmaker.bots import BotMatches, fill, reach
from matchmaker.matcher import Pool, Rules
from matchmaker.metrics import Metrics
from matchmaker.passes import BOTS_BATCH, QueueMatcher
from matchmaker.queues import Queue, load, parse
from matchmaker.ratings import SIGMA, Rating, predict_win
from matchmaker.store import Store, Ticket
from stadium.config import ConfigError
from stadium.redis_client import connect
from stadium.redis_server import EmbeddedRedis


def pool(mu: list[list[float]], wait: list[float] | None = None,
         latency: list[list[float]] | None = None, sigma: float = SIGMA) -> Pool:
    """One ticket per entry of `mu`: the mu of each of its players."""
    n = len(mu)
    size = np.array([len(m) for m in mu], np.int64)
    total = np.array([sum(m) for m in mu], float)
    lat = np.zeros((n, 0)) if latency is None else np.array(latency, float)
    return Pool(total / size, total, size.astype(float) * sigma ** 2, size,
                np.array(wait or [0.0] * n, float), lat)


def groups(f: BotMatches) -> list[list[int]]:
    return [[int(t) for t in row if t >= 0] for row in f.matches.tickets]


def check(p: Pool, rules: Rules, f: BotMatches) -> None:
    """What every fill must hold: each ticket once, teams of exactly team_size with the bots,
    parties whole, a shared region within the limit, and the lowest worst latency chosen."""
    m = f.matches
    seen = [*m.tickets[m.tickets >= 0].tolist(), *f.unplaced.tolist()]
    assert sorted(seen) == list(range(len(p))), "a ticket lost or in two places"
    for g in range(len(f)):
        valid = m.tickets[g] >= 0
        row, team = m.tickets[g][valid], m.team[g][valid]
        humans = np.bincount(team, weights=p.size[row], minlength=rules.teams)
        assert (humans + f.bots[g]).tolist() == [rules.team_size] * rules.teams
        assert f.bot_mu[g] == pytest.approx(p.mu[row].sum() / p.size[row].sum())
        assert m.win[g].sum() == pytest.approx(1.0)
        if p.latency.shape[1]:
            worst = p.latency[row].max(axis=0)
            assert m.worst_latency[g] == worst.min() == worst[m.region[g]]
            if rules.max_region_latency_ms:
                assert m.worst_latency[g] <= rules.max_region_latency_ms
        else:
            assert m.region[g] == -1


def test_a_lone_ticket_gets_a_match_of_itself_and_bots() -> None:
    p, rules = pool([[31.0]], wait=[130]), Rules(2, 1, 2.0, 0.25)
    f = fill(p, rules, SIGMA)
    assert groups(f) == [[0]] and f.bots.tolist() == [[0, 1]]
    assert f.bot_mu.tolist() == [31.0] and len(f.unplaced) == 0
    # the bot has the human's mu and the default sigma: an even match
    assert f.matches.win[0].tolist() == pytest.approx([0.5, 0.5])
    check(p, rules, f)


def test_a_party_gets_a_bot_team() -> None:
    p, rules = pool([[20.0, 30.0]]), Rules(2, 2, 2.0, 0.25)
    f = fill(p, rules, SIGMA)
    assert groups(f) == [[0]] and f.matches.team[0][0] == 0
    assert f.bots.tolist() == [[0, 2]] and f.bot_mu.tolist() == [25.0]
    check(p, rules, f)


def test_lonely_tickets_share_one_match_with_teams_of_the_right_size() -> None:
    p, rules = pool([[24.0], [26.0, 28.0]], wait=[301, 300.5]), Rules(2, 5, 3.0, 0.25)
    f = fill(p, rules, SIGMA)
    assert groups(f) == [[0, 1]]
    assert int(f.bots.sum()) == 7
    # the oldest opens team 0, the party goes where there is the most room: team 1
    assert f.matches.team[0][:2].tolist() == [0, 1] and f.bots.tolist() == [[4, 3]]
    check(p, rules, f)


def test_oldest_first_and_full_matches_before_bots() -> None:
    p, rules = pool([[25.0]] * 3, wait=[5, 9, 7]), Rules(2, 1, 2.0, 0.25)
    f = fill(p, rules, SIGMA)
    assert groups(f) == [[1, 2], [0]]  # the two oldest play each other; the last gets a bot
    assert f.bots.tolist() == [[0, 0], [0, 1]]
    assert f.matches.max_wait.tolist() == [9, 5]
    check(p, rules, f)


def test_a_party_that_does_not_fit_waits_for_the_next_match() -> None:
    # 2v2: solo, solo, then a party of two. The solos take one seat per team, so the party
    # fits no team: it opens the next match.
    p, rules = pool([[25.0], [25.0], [25.0, 25.0]], wait=[3, 2, 1]), Rules(2, 2, 2.0, 0.25)
    f = fill(p, rules, SIGMA)
    assert groups(f) == [[0, 1], [2]]
    assert f.bots.tolist() == [[1, 1], [0, 2]]
    check(p, rules, f)


def test_regions_group_only_tickets_with_a_region_in_common() -> None:
    rules = Rules(2, 2, 2.0, 0.25, max_region_latency_ms=100)
    # columns: eu, us. 0 and 2 share eu; 1 is us only; 3 named no region (plays anywhere)
    latency: list[list[float]] = [[30, 300], [400, 20], [60, 90], [0, 0]]
    p = pool([[25.0]] * 4, wait=[4, 3, 2, 1], latency=latency)
    f = fill(p, rules, SIGMA)
    assert groups(f) == [[0, 2, 3], [1]]
    assert f.matches.region.tolist() == [0, 1]  # eu (worst 60 beats 300), then us
    assert f.matches.worst_latency.tolist() == [60, 20]
    check(p, rules, f)


def test_the_region_with_the_lowest_worst_latency_is_chosen() -> None:
    rules = Rules(2, 1, 2.0, 0.25, max_region_latency_ms=0)
    p = pool([[25.0], [25.0]], wait=[2, 1], latency=[[10, 80], [120, 70]])
    f = fill(p, rules, SIGMA)
    assert groups(f) == [[0, 1]]
    assert (f.matches.region[0], f.matches.worst_latency[0]) == (1, 80)


def test_a_ticket_with_no_region_in_reach_is_unplaced() -> None:
    rules = Rules(2, 1, 2.0, 0.25, max_region_latency_ms=150)
    p = pool([[25.0], [25.0]], wait=[2, 1], latency=[[400, np.inf], [np.inf, 20]])
    f = fill(p, rules, SIGMA)
    assert f.unplaced.tolist() == [0] and groups(f) == [[1]]
    check(p, rules, f)


def test_free_for_all_fills_every_other_seat_with_a_bot() -> None:
    p, rules = pool([[20.0], [30.0]], wait=[2, 1]), Rules(4, 1, 2.0, 0.25)
    f = fill(p, rules, SIGMA)
    assert groups(f) == [[0, 1]] and f.bots.tolist() == [[0, 0, 1, 1]]
    expected = predict_win([[Rating(20.0)], [Rating(30.0)], [Rating(25.0)], [Rating(25.0)]])
    assert f.matches.win[0].tolist() == pytest.approx(expected, abs=1e-6)
    check(p, rules, f)


def test_win_probability_counts_the_bots_as_openskill_does() -> None:
    p = pool([[30.0, 36.0], [18.0]], wait=[2, 1], sigma=4.0)
    rules = Rules(2, 3, 2.0, 0.25)
    f = fill(p, rules, SIGMA)
    assert groups(f) == [[0, 1]] and f.bots.tolist() == [[1, 2]]
    bot = Rating(28.0, SIGMA)  # the humans' mean mu: (30 + 36 + 18) / 3
    expected = predict_win([[Rating(30.0, 4.0), Rating(36.0, 4.0), bot],
                            [Rating(18.0, 4.0), bot, bot]])
    assert f.matches.win[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_nothing_in_nothing_out() -> None:
    f = fill(pool([]), Rules(2, 2, 2.0, 0.25), SIGMA)
    assert len(f) == 0 and f.matches.tickets.shape == (0, 4) and len(f.unplaced) == 0


def test_reach_is_a_mask_of_regions_within_the_limit() -> None:
    lat = np.array([[10, 200, np.inf], [0, 0, 0]], float)
    assert reach(lat, 100) == [0b001, 0b111]
    assert reach(lat, 0) == [0b011, 0b111]
    assert reach(np.zeros((3, 0)), 100) == [1, 1, 1]
    wide = np.zeros((1, 70))  # more regions than an int64 holds
    wide[0, 69] = np.inf
    assert reach(wide, 0) == [(1 << 69) - 1]


def _reference(p: Pool, rules: Rules) -> list[list[int]]:
    """The rule as said: scan every ticket left, oldest first, taking each that fits."""
    masks = reach(p.latency, rules.max_region_latency_ms)
    left = [int(i) for i in np.argsort(-p.wait, kind="stable") if masks[i]]
    out = []
    while left:
        room = [rules.team_size] * rules.teams
        common, taken, rest = masks[left[0]], [], []
        for i in left:
            if masks[i] & common and p.size[i] <= max(room):
                t = max(range(rules.teams), key=lambda t: (room[t], -t))
                room[t] -= int(p.size[i])
                common &= masks[i]
                taken.append(i)
            else:
                rest.append(i)
        out.append(taken)
        left = rest
    return out


@pytest.mark.parametrize("seed", range(20))
def test_random_pools_keep_every_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    teams, team_size = int(rng.integers(2, 5)), int(rng.integers(1, 6))
    rules = Rules(teams, team_size, 2.0, 0.25,
                  max_region_latency_ms=float(rng.choice([0, 80, 150])))
    n = int(rng.integers(1, 60))
    mu = [list(rng.normal(25, 5, int(rng.integers(1, team_size + 1)))) for _ in range(n)]
    regions = int(rng.integers(0, 4))
    latency = rng.uniform(5, 250, (n, regions))
    latency[rng.random((n, regions)) < 0.3] = np.inf  # regions a ticket did not name
    latency[rng.random(n) < 0.1] = 0.0  # tickets that named none
    p = pool(mu, wait=list(rng.uniform(120, 130, n).round(1)), latency=latency.tolist())
    f = fill(p, rules, SIGMA)
    check(p, rules, f)
    assert groups(f) == _reference(p, rules)


def test_the_queue_option_is_off_by_default_and_must_be_a_boolean() -> None:
    assert not any(q.bots for q in load(None).values())
    queues = parse({"queues": {"q": {"bots": True, "max_wait": 1}}}, "test")
    assert queues["q"].bots is True
    with pytest.raises(ConfigError, match="bots must be true or false"):
        parse({"queues": {"q": {"bots": "yes"}}}, "test")


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


async def test_a_backlog_of_expired_tickets_is_matched_over_several_passes(
        redis_url: str) -> None:
    """More expired tickets than one pass groups: the oldest BOTS_BATCH first, the rest in
    the next pass; one with no region in reach fails; matches of two humans have no bots."""
    redis = await connect(redis_url)
    try:
        await redis.flushall()
        queue = Queue("late", teams=2, team_size=1, max_wait=60.0,
                      max_region_latency_ms=150.0, bots=True)
        store = Store(redis, {queue.name: queue})
        now = time.time()
        n = BOTS_BATCH + 501
        # ticket 0 is the oldest and plays nowhere within 150 ms
        await write_waiting(redis, (
            Ticket(f"late.{i:032x}", "late", [f"p{i}"], [25.0], [SIGMA],
                   {"eu": 400.0 if i == 0 else 30.0}, now - 100 - (n - i) / 1000)
            for i in range(n)))
        await write_relay(redis, "ws://relay.test:1")
        metrics = Metrics()
        matcher = QueueMatcher(store, queue, metrics, owner="test", secret="s", seat_ttl=10,
                               lease_ttl=5)
        # the 2,000 oldest: ticket 0 fails, 1,999 make 999 pairs and one match with a bot
        assert await matcher.step() == BOTS_BATCH // 2
        assert (await store.ticket(f"late.{0:032x}"))["reason"] == "timeout"
        assert await redis.zcard(keys.waiting("late")) == n - BOTS_BATCH
        newest = await store.ticket(f"late.{n - 1:032x}")
        assert newest["status"] == "waiting"
        assert await matcher.step() == 251  # 250 pairs and one with a bot
        assert await redis.zcard(keys.waiting("late")) == 0
        for name in ("stadium_matchmaker_bot_matches_total",
                     "stadium_matchmaker_bot_seats_total"):
            assert metrics.registry.get_sample_value(name, {"queue": "late"}) == 2
        # the newest ticket was left over alone: it plays a bot
        newest = await store.ticket(f"late.{n - 1:032x}")
        last = await store.match(newest["match_id"])
        assert last["with_bots"] and last["teams"] == [[f"p{n - 1}"], []]
        assert last["bots"] == [[], [{"name": "bot-1", "mu": 25.0, "sigma": SIGMA}]]
        mine = await store.ticket(f"late.{1:032x}")  # the oldest placeable ticket
        first = await store.match(mine["match_id"])
        assert (first["with_bots"], first["bots"]) == (False, [[], []])
        assert sorted(p for team in first["teams"] for p in team) == ["p1", "p2"]
        assert await redis.exists(*(keys.player(f"p{i}") for i in range(n))) == 0
    finally:
        await redis.aclose()
