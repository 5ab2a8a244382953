"""Writes with an Idempotency-Key (score submits, board settings, a player's removal) are
applied once, however often they are retried, also after a 503 whose write landed (Redis
paused past --redis-timeout): a retry answers the first outcome and writes nothing."""

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


async def _settings(http: httpx.AsyncClient, board: str) -> dict[str, object] | None:
    r = await http.get(f"/boards/{board}/settings")
    return None if r.status_code == 404 else dict(r.json())


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


async def test_a_retried_board_change_with_its_key_answers_the_first_outcome() -> None:
    async with _leaderboard() as (redis, http):
        once = {"Idempotency-Key": "put-1"}
        first = await http.put("/boards/arena", headers=once, json={"operator": "incr"})
        assert first.status_code == 201
        # a change made in between under another key is not undone by the retry
        latest = await http.put("/boards/arena", headers={"Idempotency-Key": "put-2"},
                                json={"operator": "latest"})
        assert latest.status_code == 200
        again = await http.put("/boards/arena", headers=once, json={"operator": "incr"})
        assert again.status_code == 201 and again.json() == first.json()
        assert (await _settings(http, "arena") or {})["operator"] == "latest"
        # the key with another body is refused and writes nothing
        other = await http.put("/boards/arena", headers=once, json={"operator": "best"})
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        assert (await _settings(http, "arena") or {})["operator"] == "latest"
        # a key is the board's for any write: a board change's key is not a submit's
        r = await http.post("/boards/arena/scores", headers=once,
                            json={"player": "ann", "score": 1})
        assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"
        assert await _score(http, "arena", "ann") is None
        # a 409 is an outcome too: its retry answers it again
        await http.post("/boards/arena/scores", json={"player": "ann", "score": 1})
        flip = {"Idempotency-Key": "put-3"}
        for _ in range(2):
            r = await http.put("/boards/arena", headers=flip, json={"order": "asc"})
            assert r.status_code == 409 and r.json()["error"]["code"] == "board_has_entries"


async def test_a_retried_removal_with_its_key_answers_the_first_count() -> None:
    async with _leaderboard() as (redis, http):
        await http.put("/boards/race", json={"periods": ["daily"]})
        await http.post("/boards/race/scores", json={"player": "ann", "score": 3})
        once = {"Idempotency-Key": "remove-1"}
        for _ in range(2):
            r = await http.delete("/boards/race/players/ann", headers=once)
            assert r.status_code == 200
            assert r.json() == {"board": "race", "player": "ann", "removed_from_periods": 2}
        assert await _score(http, "race", "ann") is None
        # the key for another player is another request; without a key, a removal again is 404
        r = await http.delete("/boards/race/players/bob", headers=once)
        assert r.status_code == 422 and r.json()["error"]["code"] == "idempotency_key_reused"
        assert (await http.delete("/boards/race/players/ann")).status_code == 404


async def test_a_board_change_answered_503_whose_write_landed_answers_its_first_outcome(
        ) -> None:
    async with _leaderboard("--redis-timeout", "0.5") as (redis, http):
        assert redis.pid is not None
        await http.put("/boards/warmup", headers={"Idempotency-Key": "put-0"},
                       json={})  # the script is loaded
        once = {"Idempotency-Key": "put-42"}
        os.kill(redis.pid, signal.SIGSTOP)  # alive, connected, answering nothing
        try:
            r = await http.put("/boards/late", headers=once, json={"operator": "incr"})
            assert r.status_code == 503
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        async with asyncio.timeout(10):  # the write was queued in Redis: it lands
            while await _settings(http, "late") is None:
                await asyncio.sleep(0.05)
        retry = await http.put("/boards/late", headers=once, json={"operator": "incr"})
        assert retry.status_code == 201  # the first one created the board
        assert retry.json()["operator"] == "incr"
        # without a key the same request is another change
        assert (await http.put("/boards/late", json={"operator": "incr"})).status_code == 200


async def test_the_python_sdk_retries_a_board_change_under_one_key() -> None:
    async with _leaderboard("--redis-timeout", "0.5") as (redis, http):
        assert redis.pid is not None
        board = LeaderboardClient(str(http.base_url))
        await board.configure("gems", operator="incr")  # loads the script
        os.kill(redis.pid, signal.SIGSTOP)
        asyncio.get_running_loop().call_later(
            1.3, os.kill, redis.pid, signal.SIGCONT)  # after a 503 or two
        settings = await board.configure("late", operator="incr", periods=["daily"])
        assert settings["operator"] == "incr" and settings["periods"] == ["daily"]
        assert await _settings(http, "late") == settings
        # every attempt went under the first one's key: one record, which the retries
        # answered from (a key per attempt would leave a record each)
        assert redis.command("EVAL", "return #redis.call('KEYS', ARGV[1])", "0",
                             "lb:{late}:once:*") == "1"
        await board.close()
