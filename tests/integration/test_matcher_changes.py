"""A queue's matcher reads the changes to the waiting set after its first pass, and reads
the whole set again when the changes cannot be trusted: trimmed, restarted, or a count of
waiting tickets that the columns do not match. A waiting ticket without its record fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from loadtest.matchmaker.seed import write_waiting
from matchmaker import keys
from matchmaker.metrics import Metrics
from matchmaker.passes import QueueMatcher
from matchmaker.queues import Queue
from matchmaker.store import Store, Ticket
from stadium.redis_client import connect
from stadium.redis_server import EmbeddedRedis


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def setup(redis_url: str) -> AsyncIterator[tuple[object, Store, QueueMatcher]]:
    redis = await connect(redis_url)
    await redis.flushall()
    queue = Queue("ch", teams=2, team_size=1, rating_window=5.0, max_wait=600.0)
    store = Store(redis, {queue.name: queue})
    matcher = QueueMatcher(store, queue, Metrics(), owner="test", secret=None, seat_ttl=10,
                           lease_ttl=5)
    try:
        yield redis, store, matcher
    finally:
        await redis.aclose()


async def _ranges(redis: object) -> int:
    stats = await redis.info("commandstats")  # type: ignore[attr-defined]
    return int(stats.get("cmdstat_zrange", {}).get("calls", 0))


async def _alone(store: Store, name: str) -> Ticket:
    """A ticket nobody can be matched with: a region of its own."""
    return (await store.create_ticket("ch", name, regions={f"r-{name}": 20.0}))[0]


def _held(matcher: QueueMatcher, tickets: list[Ticket]) -> bool:
    return bool((matcher._columns.rows([t.id.encode() for t in tickets]) >= 0).all())


async def test_changes_are_numbered_and_name_each_ticket(
        setup: tuple[object, Store, QueueMatcher]) -> None:
    redis, store, _ = setup
    a = await _alone(store, "a")
    b = await _alone(store, "b")
    await store.cancel(a.id)
    got = await store.changes("ch", 0)
    assert got is not None
    assert (got.last, got.added, got.removed, got.more, got.waiting) == (
        3, [a.id.encode(), b.id.encode()], [a.id.encode()], False, 1)
    assert await store.last_change("ch") == 3
    later = await store.changes("ch", 1, limit=1)
    assert later is not None and (later.last, later.added, later.more) == (2, [b.id.encode()],
                                                                           True)
    assert await store.changes("ch", 3) is not None
    assert await store.changes("ch", 9) is None  # beyond the log: it started again


async def test_a_trimmed_log_makes_the_matcher_read_every_ticket(
        setup: tuple[object, Store, QueueMatcher], caplog: pytest.LogCaptureFixture) -> None:
    redis, store, matcher = setup
    first = [await _alone(store, f"f{i}") for i in range(3)]
    assert await matcher.step() == 0 and _held(matcher, first)
    ranges = await _ranges(redis)
    newer = [await _alone(store, f"n{i}") for i in range(3)]
    await redis.xtrim(keys.changes("ch"), maxlen=1, approximate=False)  # type: ignore
    with caplog.at_level(logging.WARNING, "stadium.matchmaker"):
        assert await matcher.step() == 0
    assert "trimmed" in caplog.text
    assert await _ranges(redis) == ranges + 1
    assert len(matcher._columns) == 6 and _held(matcher, first + newer)


async def test_a_log_started_again_makes_the_matcher_read_every_ticket(
        setup: tuple[object, Store, QueueMatcher]) -> None:
    redis, store, matcher = setup
    first = [await _alone(store, f"f{i}") for i in range(3)]
    assert await matcher.step() == 0
    await redis.delete(keys.changes("ch"))  # type: ignore[attr-defined]
    newer = [await _alone(store, "n")]  # logged as change 1, behind what the matcher saw
    assert await matcher.step() == 0
    assert len(matcher._columns) == 4 and _held(matcher, first + newer)


async def test_a_ticket_written_without_its_change_is_found_by_the_count(
        setup: tuple[object, Store, QueueMatcher], caplog: pytest.LogCaptureFixture) -> None:
    redis, store, matcher = setup
    first = [await _alone(store, f"f{i}") for i in range(3)]
    assert await matcher.step() == 0
    quiet = Ticket("ch." + "ab" * 16, "ch", ["quiet"], [25.0], [3.0], {"r-q": 20.0},
                   first[0].created)
    await write_waiting(redis, [quiet])
    with caplog.at_level(logging.WARNING, "stadium.matchmaker"):
        assert await matcher.step() == 0
    assert "4 tickets wait, the matcher holds 3" in caplog.text
    assert len(matcher._columns) == 4 and _held(matcher, [*first, quiet])


async def test_a_waiting_ticket_without_its_record_fails(
        setup: tuple[object, Store, QueueMatcher]) -> None:
    redis, store, matcher = setup
    kept = await _alone(store, "kept")
    lost = await _alone(store, "lost")
    await redis.delete(keys.ticket("ch", lost.id))  # type: ignore[attr-defined]
    assert await matcher.step() == 0
    assert await redis.zscore(keys.waiting("ch"), lost.id) is None  # type: ignore
    assert not await redis.exists(keys.ticket("ch", lost.id))  # type: ignore
    assert len(matcher._columns) == 1 and _held(matcher, [kept])
    # and it is logged as gone: the next pass trusts the changes again
    ranges = await _ranges(redis)
    assert await matcher.step() == 0
    assert await _ranges(redis) == ranges
