"""The matcher's columns kept across passes (`PoolColumns`) equal what `pool_of` builds from
the same tickets, over random sequences of arrivals and departures; and a queue's passes on
a real Redis read each ticket once and drop the ones that leave."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import numpy as np
import pytest

from loadtest.matchmaker.seed import write_relay, write_waiting
from matchmaker import keys
from matchmaker.matcher import Pool, Rules, match
from matchmaker.metrics import Metrics
from matchmaker.passes import PoolColumns, QueueMatcher, pool_of
from matchmaker.queues import Queue
from matchmaker.store import Store, Ticket
from stadium.redis_client import connect
from stadium.redis_server import EmbeddedRedis

REGIONS = [f"r{i}" for i in range(12)]


def _ticket(rng: random.Random, n: int) -> Ticket:
    size = rng.choice([1, 1, 1, 2, 3])
    named = rng.sample(REGIONS, rng.choice([0, 1, 2, 4])) if rng.random() < 0.9 else []
    return Ticket(f"q.{n}", "q", [f"p{n}-{j}" for j in range(size)],
                  [rng.gauss(25, 5) for _ in range(size)],
                  [rng.uniform(1, 8.4) for _ in range(size)],
                  {r: float(rng.randint(0, 300)) for r in named}, 1000.0 + rng.uniform(0, 60))


def _same(a: Pool, b: Pool) -> None:
    for column in ("rating", "mu", "sigma2", "size", "wait", "latency"):
        x, y = getattr(a, column), getattr(b, column)
        assert x.shape == y.shape and x.dtype == y.dtype, column
        assert np.array_equal(x, y), column


@pytest.mark.parametrize("seed", range(6))
def test_columns_equal_pool_of_over_arrivals_and_departures(seed: int) -> None:
    rng = random.Random(seed)
    cols = PoolColumns(capacity=2)  # small: rows and region columns grow along the way
    held: dict[str, Ticket] = {}
    made = 0
    for step in range(60):
        for _ in range(rng.randint(0, 25)):
            t = _ticket(rng, made)
            made += 1
            held[t.id] = t
            cols.add([t])
        if rng.random() < 0.3 and held:  # a whole batch, some of it already held
            batch = [_ticket(rng, made + k) for k in range(rng.randint(1, 30))]
            made += len(batch)
            again = rng.sample(list(held.values()), min(3, len(held)))
            cols.add(batch + again)
            held.update((t.id, t) for t in batch)
        for tid in rng.sample(list(held), rng.randint(0, len(held) // 2)):
            cols.remove(tid)
            del held[tid]
        cols.remove("q.never-held")
        assert len(cols) == len(held)
        # a pass gathers every waiting ticket, in the waiting order (here: shuffled)
        order = list(held.values())
        rng.shuffle(order)
        rows = cols.rows([t.id.encode() for t in order])
        assert (rows >= 0).all()
        now = 1030.0 + step
        mine, my_names = cols.gather(rows, now)
        theirs, their_names = pool_of(order, now)
        assert my_names == their_names
        _same(mine, theirs)
        # and any subset (late tickets left out) as well
        some = sorted(rng.sample(range(len(order)), len(order) // 3))
        mine, my_names = cols.gather(rows[some], now)
        theirs, their_names = pool_of([order[i] for i in some], now)
        assert my_names == their_names
        _same(mine, theirs)
    assert made > 500


def test_regions_no_ticket_names_any_more_leave_the_pool() -> None:
    a = Ticket("q.a", "q", ["a"], [25.0], [8.0], {"eu": 30.0}, 0.0)
    b = Ticket("q.b", "q", ["b"], [25.0], [8.0], {"us": 40.0}, 0.0)
    c = Ticket("q.c", "q", ["c"], [25.0], [8.0], {}, 0.0)
    cols = PoolColumns()
    cols.add([a, b, c])
    cols.remove("q.b")
    d = Ticket("q.d", "q", ["d"], [25.0], [8.0], {"asia": 90.0}, 0.0)  # reuses us' column
    cols.add([d])
    pool, names = cols.gather(cols.rows([b"q.a", b"q.c", b"q.d"]), 10.0)
    assert names == ["asia", "eu"]
    assert pool.latency.tolist() == [[np.inf, 30.0], [0.0, 0.0], [90.0, np.inf]]
    assert cols.rows([b"q.b", b"q.x"]).tolist() == [-1, -1]


def test_keep_frees_the_rows_of_tickets_that_left() -> None:
    rng = random.Random(9)
    tickets = [_ticket(rng, n) for n in range(50)]
    cols = PoolColumns()
    cols.add(tickets)
    stay = tickets[::3]
    cols.keep(cols.rows([t.id.encode() for t in stay]))
    assert len(cols) == len(stay)
    rows = cols.rows([t.id.encode() for t in tickets])
    assert [t.id for t, r in zip(tickets, rows.tolist(), strict=True) if r >= 0] == \
        [t.id for t in stay]
    pool, names = cols.gather(rows[rows >= 0], 1100.0)
    theirs, their_names = pool_of(stay, 1100.0)
    assert names == their_names
    _same(pool, theirs)


def test_matches_from_the_columns_are_matches_from_pool_of() -> None:
    rng = random.Random(4)
    tickets = [_ticket(rng, n) for n in range(3000)]
    cols = PoolColumns()
    cols.add(tickets)
    for t in tickets[::4]:
        cols.remove(t.id)
    left = [t for i, t in enumerate(tickets) if i % 4]
    rules = Rules(2, 3, 3.0, 0.25, 150.0)
    mine = match(cols.gather(cols.rows([t.id.encode() for t in left]), 1060.0)[0], rules)
    theirs = match(pool_of(left, 1060.0)[0], rules)
    assert len(mine) > 100
    assert np.array_equal(mine.tickets, theirs.tickets)
    assert np.array_equal(mine.team, theirs.team)
    assert np.array_equal(mine.region, theirs.region)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


async def _calls(redis: object, command: str) -> int:
    stats = await redis.info("commandstats")  # type: ignore[attr-defined]
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_passes_read_each_ticket_once_and_drop_those_that_leave(redis_url: str) -> None:
    redis = await connect(redis_url)
    try:
        await redis.flushall()
        queue = Queue("cols", teams=2, team_size=1, rating_window=5.0, max_wait=600.0)
        store = Store(redis, {queue.name: queue})
        matcher = QueueMatcher(store, queue, Metrics(), owner="test", secret="s", seat_ttl=10,
                               lease_ttl=5)
        # each in a region of its own: nobody can be matched with anybody
        alone = [(await store.create_ticket("cols", f"solo{i}", regions={f"x{i}": 20.0}))[0]
                 for i in range(40)]
        assert await matcher.step() == 0
        assert len(matcher._columns) == 40
        for t in alone[:10]:
            await store.cancel(t.id)
        newer = [(await store.create_ticket("cols", f"late{i}", regions={f"y{i}": 20.0}))[0]
                 for i in range(5)]
        before = await _calls(redis, "hget")
        ranges = await _calls(redis, "zrange")
        assert await matcher.step() == 0
        # 5 ticket reads for the newcomers; nothing for the 30 already read, and the
        # changes told them apart: the waiting set was not read
        assert await _calls(redis, "hget") - before == 5
        assert await _calls(redis, "zrange") == ranges
        waiting = {t.id.encode() for t in alone[10:] + newer}
        assert len(matcher._columns) == len(waiting)
        assert (matcher._columns.rows(sorted(waiting)) >= 0).all()
        # two who fit each other, with a relay in the directory: one match, rows freed
        await write_relay(redis, "ws://relay.test:1")
        pair = [(await store.create_ticket("cols", p, regions={"eu": 30.0}))[0] for p in "ab"]
        assert await matcher.step() == 1
        assert len(matcher._columns) == len(waiting)
        for t in pair:
            assert (await store.ticket(t.id))["status"] == "matched"
        assert matcher._columns.rows([t.id.encode() for t in pair]).tolist() == [-1, -1]
    finally:
        await redis.aclose()


async def test_a_pass_commits_more_matches_than_one_batch(redis_url: str) -> None:
    """2,400 waiting tickets written as the create script writes them: one pass commits
    1,200 matches (more than one pipeline batch) and releases every player."""
    redis = await connect(redis_url)
    try:
        await redis.flushall()
        queue = Queue("bulk", teams=2, team_size=1, rating_window=50.0, max_wait=600.0)
        store = Store(redis, {queue.name: queue})
        now = time.time()
        rng = random.Random(2)
        await write_waiting(redis, (
            Ticket(f"bulk.{i:032x}", "bulk", [f"b{i}"], [rng.gauss(25, 4)], [3.0],
                   {"eu": 30.0}, now - i / 1000) for i in range(2400)))
        await write_relay(redis, "ws://relay.test:1")
        matcher = QueueMatcher(store, queue, Metrics(), owner="test", secret="s", seat_ttl=10,
                               lease_ttl=5)
        assert await matcher.step() == 1200
        assert await redis.zcard(keys.waiting("bulk")) == 0
        assert len(matcher._columns) == 0
        assert await redis.exists(*(keys.player(f"b{i}") for i in range(2400))) == 0
        seen = await store.ticket(f"bulk.{2399:032x}")
        assert seen["status"] == "matched" and seen["seats"]["b2399"]["token"]
        assert await redis.zcard(keys.seating("bulk")) == 1200
    finally:
        await redis.aclose()
