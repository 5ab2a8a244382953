"""Score submits with an Idempotency-Key count once, however often they are retried, also
after a 503 whose write landed (Redis paused past --redis-timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator

import httpx

from loadtest.processes import start_service
from stadium.redis_server import EmbeddedRedis
from stadium_client import LeaderboardClient


@contextlib.asynccontextmanager
async def _leaderboard(*args: str) -> AsyncIterator[tuple[EmbeddedRedis, httpx.AsyncClient]]:
    """A leaderboard service (with `args`) on an embedded Redis of its own, and a client."""
    with EmbeddedRedis() as redis:
        proc = start_service("leaderboard", "--redis-url", redis.url, *args)
        try:
            async with httpx.AsyncClient(base_url=proc.url, timeout=10) as http:
                yield redis, http
        finally:
            if redis.pid is not None:
                os.kill(redis.pid, signal.SIGCONT)  # a test that paused it may have failed
            proc.stop()


async def _score(http: httpx.AsyncClient, board: str, player: str) -> float | None:
    r = await http.get(f"/boards/{board}/players/{player}")
    return None if r.status_code == 404 else r.json()["score"]


async def test_a_retried_submit_with_its_key_counts_once() -> None:
    async with _leaderboard() as (redis, http):
        assert (await http.put("/boards/kills", json={"operator": "incr"})).is_success
        once = {"Idempotency-Key": "submit-1"}
        first = await http.post("/boards/kills/scores", headers=once,
                                json={"player": "ann", "score": 5})
        again = await http.post("/boards/kills/scores", headers=once,
                                json={"player": "ann", "score": 5})
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert await _score(http, "kills", "ann") == 5
        # the same key for another request is refused, and writes nothing
        other = await http.post("/boards/kills/scores", headers=once,
                                json={"player": "ann", "score": 7})
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        assert await _score(http, "kills", "ann") == 5
        # a new key is a new submit; a batch with a key counts once too
        batch = {"scores": [{"player": "ann", "score": 1}, {"player": "bob", "score": 2}]}
        for _ in range(3):
            r = await http.post("/boards/kills/scores", json=batch,
                                headers={"Idempotency-Key": "batch-1"})
            assert r.status_code == 200
        assert await _score(http, "kills", "ann") == 6
        assert await _score(http, "kills", "bob") == 2
        # a key is per board: the same key on another board is another submit
        await http.put("/boards/deaths", json={"operator": "incr"})
        r = await http.post("/boards/deaths/scores", headers=once,
                            json={"player": "ann", "score": 5})
        assert r.status_code == 200 and await _score(http, "deaths", "ann") == 5
        for bad in (b"", b"with space", b"x" * 256, b"\xe9"):
            r = await http.post("/boards/kills/scores", json={"player": "ann", "score": 1},
                                headers={"Idempotency-Key": bad})
            assert r.status_code == 422, bad
        assert await _score(http, "kills", "ann") == 6


async def test_a_submit_answered_503_whose_write_landed_is_not_counted_again() -> None:
    async with _leaderboard("--redis-timeout", "0.5") as (redis, http):
        assert redis.pid is not None
        await http.put("/boards/coins", json={"operator": "incr"})
        await http.post("/boards/coins/scores", json={"player": "bob", "score": 1},
                        headers={"Idempotency-Key": "coin-1"})  # the script is loaded
        once = {"Idempotency-Key": "coin-42"}
        os.kill(redis.pid, signal.SIGSTOP)  # alive, connected, answering nothing
        try:
            r = await http.post("/boards/coins/scores", headers=once,
                                json={"player": "ann", "score": 5})
            assert r.status_code == 503
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        async with asyncio.timeout(10):  # the write was queued in Redis: it lands
            while await _score(http, "coins", "ann") != 5:
                await asyncio.sleep(0.05)
        retry = await http.post("/boards/coins/scores", headers=once,
                                json={"player": "ann", "score": 5})
        assert retry.status_code == 200
        assert retry.json()["results"][0]["periods"]["all"]["score"] == 5
        assert await _score(http, "coins", "ann") == 5
        # without a key the same request is another submit
        await http.post("/boards/coins/scores", json={"player": "ann", "score": 5})
        assert await _score(http, "coins", "ann") == 10


async def test_the_python_sdk_retries_a_submit_under_one_key() -> None:
    async with _leaderboard("--redis-timeout", "0.5") as (redis, http):
        assert redis.pid is not None
        await http.put("/boards/gems", json={"operator": "incr"})
        board = LeaderboardClient(str(http.base_url))
        await board.submit("gems", "bob", 1)  # loads the script
        os.kill(redis.pid, signal.SIGSTOP)
        asyncio.get_running_loop().call_later(
            1.3, os.kill, redis.pid, signal.SIGCONT)  # after a 503 or two
        periods = await board.submit("gems", "ann", 3)
        assert periods["all"]["score"] == 3
        await asyncio.sleep(0.3)
        assert await _score(http, "gems", "ann") == 3
        await board.close()
