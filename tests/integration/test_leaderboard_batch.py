"""Script calls batched per loop pass, over the store's own connection and over redis-py:
each runs exactly once, even when Redis forgets scripts, and Redis failing is an error
for the callers, not a hang or a crash."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from leaderboard import scripts
from leaderboard.store import Board, Store
from loadtest.processes import start_service
from stadium.redis_client import connect
from stadium.redis_server import EmbeddedRedis


@pytest.fixture(params=["own connection", "own connection, one write per pass",
                        "redis-py pipelines"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    with EmbeddedRedis() as server:
        redis = await connect(server.url)
        direct = request.param != "redis-py pipelines"
        store = Store(redis, direct=direct, redis_chunk=0 if "one write" in request.param else 3)
        assert store._batcher is not None and store._batcher.direct == direct
        yield store
        await store.aclose()
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


async def test_calls_of_one_pass_go_out_in_chunks_and_answer_in_order() -> None:
    with EmbeddedRedis() as server:
        redis = await connect(server.url)
        for chunk, writes in ((0, 1), (8, 7), (50, 1), (1, 50)):
            store = Store(redis, redis_chunk=chunk, coalesce=1)  # one call per submit
            assert store._batcher is not None
            await store.put_board(f"c{chunk}", Board(operator="incr"))
            # Connects and loads the script, so the calls below are one pass and nothing else.
            await store.submit(f"c{chunk}", [{"player": "first", "score": 1}])
            before = store._batcher.writes
            results = await asyncio.gather(*(store.submit(f"c{chunk}", [
                {"player": f"p{i}", "score": i}]) for i in range(50)))
            assert store._batcher.writes - before == writes, chunk
            assert [r[0]["player"] for r in results] == [f"p{i}" for i in range(50)]
            assert [r[0]["periods"]["all"]["score"] for r in results] == list(range(50))
            await store.aclose()
        await redis.aclose()


async def test_an_error_reaches_only_its_caller(store: Store) -> None:
    await store.put_board("big", Board(operator="incr"))
    await store.submit("big", [{"player": "rich", "score": 2**53 - 2}])
    results = await asyncio.gather(
        store.submit("big", [{"player": "rich", "score": 5}]),
        store.submit("big", [{"player": "poor", "score": 5}]),
        return_exceptions=True)
    assert getattr(results[0], "code", None) == "score_out_of_range"
    assert isinstance(results[1], list) and results[1][0]["periods"]["all"]["score"] == 5


async def test_own_connection_logs_in_and_selects_the_database() -> None:
    with EmbeddedRedis() as server:
        server.command("CONFIG", "SET", "requirepass", "s3cret")
        url = f"redis://:s3cret@{server.host}:{server.port}/3"
        redis = aioredis.from_url(url)
        store = Store(redis)
        assert store._batcher is not None and store._batcher.direct
        await store.put_board("auth", Board())
        result = await store.submit("auth", [{"player": "ann", "score": 7}])
        assert result[0]["periods"]["all"] == {"score": 7, "rank": 1}
        await store.aclose()
        await redis.aclose()
        other = aioredis.from_url(f"redis://:s3cret@{server.host}:{server.port}/0")
        assert await other.zcard("lb:{auth}:z:all") == 0  # written to database 3, not 0
        await other.execute_command("SELECT", 3)
        assert await other.zcard("lb:{auth}:z:all") == 1
        await other.aclose()


async def test_a_silent_redis_times_out_and_the_link_recovers() -> None:
    with EmbeddedRedis() as server:
        assert server.pid is not None
        redis = aioredis.from_url(server.url)
        store = Store(redis, redis_timeout=0.5)
        await store.put_board("quiet", Board())
        await store.submit("quiet", [{"player": "ann", "score": 1}])
        os.kill(server.pid, signal.SIGSTOP)  # alive, connected, and answering nothing
        try:
            with pytest.raises(RedisTimeoutError):
                await asyncio.wait_for(store.player("quiet", "ann"), 5)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert (await store.player("quiet", "ann"))["score"] == 1  # a new connection
        await store.aclose()
        with pytest.raises(RedisConnectionError):
            await store.player("quiet", "ann")
        await redis.aclose()


async def test_service_answers_503_while_redis_is_down_and_recovers() -> None:
    server = EmbeddedRedis().start()
    port = server.port
    proc = start_service("leaderboard", "--redis-url", server.url)
    try:
        async with httpx.AsyncClient(base_url=proc.url, timeout=10) as http:
            await http.put("/boards/down", json={})
            r = await http.post("/boards/down/scores", json={"player": "ann", "score": 3})
            assert r.status_code == 200, r.text
            server.stop()
            for method, url, body in (("GET", "/boards/down/players/ann", None),
                                      ("POST", "/boards/down/scores",
                                       {"player": "ann", "score": 4}),
                                      ("GET", "/boards/down/players/ann/around", None)):
                r = await http.request(method, url, json=body)
                assert r.status_code == 503, (url, r.text)
                assert r.json()["error"]["code"] == "redis_unavailable"
            assert (await http.get("/healthz")).status_code == 503
            server = EmbeddedRedis(port=port).start()  # empty: the board is created again
            # redis-py's pool may hand out a connection the old server closed: that request
            # fails, the next one connects again.
            for _ in range(5):
                if (await http.get("/healthz")).status_code == 200:
                    break
            else:
                raise AssertionError(f"no recovery:\n{proc.log()}")
            await asyncio.sleep(1.1)  # past the settings cache
            r = await http.put("/boards/down", json={})
            assert r.status_code == 201, proc.log()
            r = await http.post("/boards/down/scores", json={"player": "ann", "score": 5})
            assert r.status_code == 200, r.text
            r = await http.get("/boards/down/players/ann")
            assert (r.status_code, r.json()["score"]) == (200, 5)
        assert "503 redis_unavailable" in proc.log()
    finally:
        proc.stop()
        server.stop()


async def _script_calls(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def test_single_submits_of_one_pass_share_a_call_and_each_stands_alone(
        store: Store) -> None:
    await store.put_board("merged", Board(operator="incr"))
    await store.submit("merged", [{"player": "rich", "score": 2**53 - 2}])
    calls = await _script_calls(store.redis)
    results = await asyncio.gather(
        store.submit("merged", [{"player": "rich", "score": 5}]),  # would leave the range
        store.submit("merged", [{"player": "poor", "score": 5}]),
        store.submit("merged", [{"player": "ann", "score": 1}]),
        store.submit("merged", [{"player": "ann", "score": 2}]),  # ann again: the next call
        store.submit("merged", [{"player": "ben", "score": 4, "metadata": {"hat": 1}}]),
        store.submit("merged", [{"player": "cat", "score": 6}]),
        return_exceptions=True)
    # Six submits, two script calls: ann's second submit starts a call of its own.
    assert await _script_calls(store.redis) - calls == 2
    assert getattr(results[0], "code", None) == "score_out_of_range"
    answers = [r[0]["periods"]["all"] if isinstance(r, list) else None for r in results]
    assert answers[1:] == [{"score": 5, "rank": 2}, {"score": 1, "rank": 3},
                           {"score": 3, "rank": 3}, {"score": 4, "rank": 3},
                           {"score": 6, "rank": 2}]
    page = await store.page("merged", limit=10)
    assert [(e["player"], e["score"], e["metadata"]) for e in page["entries"]] == [
        ("rich", 2**53 - 2, None), ("cat", 6, None), ("poor", 5, None),
        ("ben", 4, {"hat": 1}), ("ann", 3, None)]


async def test_full_calls_go_at_once_and_batches_are_never_merged(store: Store) -> None:
    store.coalesce = 3
    await store.put_board("full", Board())
    await store.submit("full", [{"player": "seed", "score": 0}])
    calls = await _script_calls(store.redis)
    results = await asyncio.gather(
        *(store.submit("full", [{"player": f"p{i}", "score": i}]) for i in range(7)),
        store.submit("full", [{"player": "b1", "score": 1}, {"player": "b2", "score": 2}]),
        store.submit("full", [{"player": "t", "score": 9}], at=T_FIXED))
    # Calls of 3, 3 and 1 single submits, the batch and the timed submit on their own.
    assert await _script_calls(store.redis) - calls == 5
    assert [r[0]["periods"]["all"]["score"] for r in results[:7]] == list(range(7))
    assert [r["player"] for r in results[7]] == ["b1", "b2"]
    assert (await store.player("full", "t"))["rank"] == 1


T_FIXED = 1_900_000_000.0
