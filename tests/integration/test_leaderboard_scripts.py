"""The submit script's rules on a real Redis and a 3-master cluster: ties go to whoever reached
the score first, `best` never lowers a score, `incr` adds, and period keys get their expiry
when they are created."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from leaderboard import keys, periods
from leaderboard.store import GRACE, Board, Store
from stadium.redis_client import connect

# Noon UTC today: every submit of a test falls in one day and week, and period keys written
# for it expire in the future.
T0 = time.time() // 86400 * 86400 + 43200.0


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    redis = await connect(redis_url)
    store = Store(redis)
    yield store
    await store.aclose()
    await redis.aclose()


async def _submit(store: Store, board: str, player: str, score: float,
                  at: float) -> dict[str, Any]:
    """The player's {period: {score, rank}} as the submit answers it."""
    result: dict[str, Any] = (await store.submit(board, [{"player": player, "score": score}],
                                                 at=at))[0]["periods"]
    return result


async def _order(store: Store, board: str, period: str = "all") -> list[tuple[str, float]]:
    page = await store.page(board, period, limit=100)
    return [(e["player"], e["score"]) for e in page["entries"]]


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_equal_scores_keep_whoever_reached_them_first(store: Store, order: str) -> None:
    board = f"ties-{order}"
    await store.put_board(board, Board(order=order, periods=["daily"]))
    await _submit(store, board, "carol", 10, T0)
    await _submit(store, board, "bob", 10, T0 + 1)
    await _submit(store, board, "alice", 10, T0 + 2)
    # Submitting the same score again later does not move anyone back.
    got = await _submit(store, board, "carol", 10, T0 + 3)
    assert got["all"] == got["daily"] == {"score": 10, "rank": 1}
    for period in ("all", "daily"):
        assert [p for p, _ in await _order(store, board, period)] == ["carol", "bob", "alice"]
    # A better score reached later ranks above the tie; carol still leads the tied ones.
    better = 11 if order == "desc" else 9
    assert (await _submit(store, board, "alice", better, T0 + 4))["all"]["rank"] == 1
    assert [p for p, _ in await _order(store, board)] == ["alice", "carol", "bob"]


async def test_latest_keeps_the_place_only_for_the_same_score(store: Store) -> None:
    await store.put_board("latest", Board(operator="latest"))
    for i, player in enumerate(["ann", "ben", "cat"]):
        await _submit(store, "latest", player, 5, T0 + i)
    await _submit(store, "latest", "ann", 5, T0 + 10)  # unchanged: keeps its first place
    assert [p for p, _ in await _order(store, "latest")] == ["ann", "ben", "cat"]
    await _submit(store, "latest", "ann", 3, T0 + 11)  # overwritten, even downwards
    await _submit(store, "latest", "ann", 5, T0 + 12)  # back to 5, but reached last
    assert await _order(store, "latest") == [("ben", 5), ("cat", 5), ("ann", 5)]


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_best_never_lowers_a_score(store: Store, order: str) -> None:
    board = f"best-{order}"
    await store.put_board(board, Board(order=order, periods=["daily", "weekly"]))
    await _submit(store, board, "rival", 70, T0)
    worse, better = (50, 90) if order == "desc" else (90, 50)
    first = await _submit(store, board, "ann", 70, T0 + 1)
    assert first["all"] == {"score": 70, "rank": 2}
    for at, score, expected in ((T0 + 2, worse, 70), (T0 + 3, better, better),
                                (T0 + 4, worse, better), (T0 + 5, 70, better)):
        got = await _submit(store, board, "ann", score, at)
        assert {p: got[p] for p in ("all", "daily", "weekly")} == {
            p: {"score": expected, "rank": 1 if expected == better else 2}
            for p in ("all", "daily", "weekly")}, (score, got)
    assert await _order(store, board) == [("ann", better), ("rival", 70)]


async def test_incr_adds_in_every_period(store: Store) -> None:
    await store.put_board("coins", Board(operator="incr", periods=["daily"]))
    for at, delta, total in ((T0, 5, 5), (T0 + 1, 7, 12), (T0 + 2, -2, 10), (T0 + 3, 0.5, 10.5)):
        got = await _submit(store, "coins", "ann", delta, at)
        assert got["all"] == got["daily"] == {"score": total, "rank": 1}
    # The next day's period starts from nothing; all-time keeps adding.
    got = await _submit(store, "coins", "ann", 1, T0 + 86400)
    assert (got["all"]["score"], got["daily"]["score"]) == (11.5, 1)


async def test_period_keys_expire_and_are_listed_once_created(store: Store) -> None:
    board = Board(periods=["daily", "weekly"])
    await store.put_board("expiry", board)
    redis = store.redis
    pids = {kind: periods.current(kind, T0)[0] for kind in board.periods}
    ends = {kind: int(periods.current(kind, T0)[1] + GRACE[kind]) for kind in board.periods}

    async def expiry(pid: str) -> tuple[int, int]:
        return (await redis.expiretime(keys.entries("expiry", pid)),
                await redis.expiretime(keys.index("expiry", pid)))

    await _submit(store, "expiry", "ann", 1, T0)
    await _submit(store, "expiry", "ann", 2, T0 + 1)  # an update: the keys exist already
    await _submit(store, "expiry", "ben", 1, T0 + 2)
    for kind, pid in pids.items():
        assert await expiry(pid) == (ends[kind], ends[kind])
    assert await expiry("all") == (-1, -1)  # all-time never expires
    listed = {p.decode() for p in await redis.smembers(keys.periods("expiry"))}
    assert listed == {"all", *pids.values()}
    # The daily keys gone (as when they expire): the next submit makes them again, with expiry.
    await redis.delete(keys.entries("expiry", pids["daily"]))
    await redis.delete(keys.index("expiry", pids["daily"]))
    got = await _submit(store, "expiry", "ann", 3, T0 + 3)
    assert got["daily"] == {"score": 3, "rank": 1} and got["all"] == {"score": 3, "rank": 1}
    assert await expiry(pids["daily"]) == (ends["daily"], ends["daily"])
    assert await store.remove("expiry", "ann") == 3


async def test_an_index_entry_without_its_member_is_written_anew(store: Store) -> None:
    await store.put_board("healed", Board())
    await _submit(store, "healed", "ben", 4, T0)
    # An index pointing at a member the sorted set does not hold.
    await store.redis.hset(keys.index("healed", "all"), "ann", "0000000000000ann")
    got = await _submit(store, "healed", "ann", 5, T0 + 1)
    assert got["all"] == {"score": 5, "rank": 1}
    assert await _order(store, "healed") == [("ann", 5), ("ben", 4)]
    assert (await store.player("healed", "ann"))["rank"] == 1


async def test_ranks_of_a_batch_see_every_write_of_the_batch(store: Store) -> None:
    await store.put_board("batch", Board(periods=["daily"]))
    await _submit(store, "batch", "ann", 10, T0)
    results = await store.submit("batch", [{"player": "ann", "score": 5},  # not written
                                           {"player": "ben", "score": 20}], at=T0 + 1)
    assert results[0]["periods"]["all"] == {"score": 10, "rank": 2}
    assert results[1]["periods"]["daily"] == {"score": 20, "rank": 1}
