"""The benchmark's seeding straight into Redis writes exactly what the submit script writes."""

from __future__ import annotations

import random
import time

from leaderboard import keys, periods
from leaderboard.store import Board, Store
from loadtest.leaderboard.seed import CHUNK, seed_board
from stadium.redis_client import connect
from stadium.redis_server import EmbeddedRedis


async def test_seeding_straight_into_redis_matches_the_api() -> None:
    rng = random.Random(3)
    scores = [(f"p{i:04d}", rng.randrange(40)) for i in range(2 * CHUNK + 500)]  # many ties
    board = Board(periods=["daily", "weekly"])
    at = float(int(time.time()))
    with EmbeddedRedis() as server:
        redis = await connect(server.url)
        store = Store(redis)
        for name in ("seeded", "submitted"):
            await store.put_board(name, board)
        await seed_board(redis, "seeded", board, scores, at)
        for n, i in enumerate(range(0, len(scores), CHUNK)):
            # Chunk n of the seeding reaches its scores n ms after `at`.
            await store.submit("submitted", [{"player": p, "score": s}
                                             for p, s in scores[i:i + CHUNK]],
                               at=at + (n + 0.5) / 1000)
        pids = ["all", *(periods.current(kind, at)[0] for kind in board.periods)]
        for pid in pids:
            got = [(await redis.zrange(keys.entries(name, pid), 0, -1, withscores=True),
                    await redis.hgetall(keys.index(name, pid)),
                    await redis.expiretime(keys.entries(name, pid)),
                    await redis.expiretime(keys.index(name, pid)))
                   for name in ("seeded", "submitted")]
            assert len(got[0][0]) == len(scores)
            assert got[0] == got[1], pid
        assert await redis.smembers(keys.periods("seeded")) == \
            await redis.smembers(keys.periods("submitted"))
        page = await store.page("seeded", "daily", limit=5)
        assert [e["rank"] for e in page["entries"]] == [1, 2, 3, 4, 5]
        await store.aclose()
        await redis.aclose()
