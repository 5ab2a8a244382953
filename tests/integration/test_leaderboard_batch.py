"""Script calls batched per loop pass: each runs exactly once, even when Redis forgets scripts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from leaderboard import scripts
from leaderboard.service import connect
from leaderboard.store import Board, Store
from stadium.redis_server import EmbeddedRedis


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    with EmbeddedRedis() as server:
        redis = await connect(server.url)
        yield Store(redis)
        await redis.aclose()


async def test_concurrent_calls_share_a_pipeline_and_each_runs_once(store: Store) -> None:
    await store.put_board("coins", Board(operator="incr"))
    await store.put_board("top", Board())
    await store.submit("top", [{"player": "seed", "score": 1}])  # loads some scripts, not all
    await store.redis.script_flush()  # the server forgets every script...
    await store.redis.script_load(scripts.SUBMIT)  # ...but SUBMIT: the batch half-succeeds
    # 50 increments, 50 reads and 50 submits to another board in the same loop pass.
    await asyncio.gather(
        *(store.submit("coins", [{"player": "p", "score": 1}]) for _ in range(50)),
        *(store.page("top") for _ in range(50)),
        *(store.submit("top", [{"player": f"t{i}", "score": i}]) for i in range(50)))
    assert (await store.player("coins", "p"))["score"] == 50  # no increment ran twice
    assert len((await store.page("top", limit=100))["entries"]) == 51


async def test_an_error_reaches_only_its_caller(store: Store) -> None:
    await store.put_board("big", Board(operator="incr"))
    await store.submit("big", [{"player": "rich", "score": 2**53 - 2}])
    results = await asyncio.gather(
        store.submit("big", [{"player": "rich", "score": 5}]),
        store.submit("big", [{"player": "poor", "score": 5}]),
        return_exceptions=True)
    assert getattr(results[0], "code", None) == "score_out_of_range"
    assert isinstance(results[1], list) and results[1][0]["periods"]["all"]["score"] == 5
