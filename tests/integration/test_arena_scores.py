"""The arena room posts its players' scores to the real leaderboard service."""

from __future__ import annotations

import asyncio
import math
import signal

import httpx
import msgpack
import numpy as np

from loadtest.processes import start_service
from stadium.redis_server import EmbeddedRedis
from stadium_client import Room
from tests.conftest import start_relay

KEY = "arena-key"


async def _score_a_coin(room: Room, ship: int) -> int:
    """Steer toward the nearest coin until the ship has scored."""
    async with asyncio.timeout(30):
        while True:
            mirror = await room.wait_state()
            ships, coins = mirror["ships"], mirror["coins"]
            me = ships.get(ship)
            if me["score"] >= 1:
                return int(me["score"])
            world = mirror.doc["world"]
            dx = (coins.values("x")[coins.ids] - me["x"] + world / 2) % world - world / 2
            dy = (coins.values("y")[coins.ids] - me["y"] + world / 2) % world - world / 2
            k = int(np.argmin(dx * dx + dy * dy))
            turn = (math.atan2(dy[k], dx[k]) - me["angle"] + math.pi) % (2 * math.pi) - math.pi
            # Slow down to turn: at full thrust the ship's turning circle (4 m across at
            # 12 m/s and 3 rad/s) can hold a coin beside it out of reach, an orbit forever.
            thrust = 1.0 if abs(turn) < 0.6 else 0.25
            await room.send({"turn": max(-1.0, min(1.0, turn * 3)), "thrust": thrust})


async def test_a_players_score_reaches_the_leaderboard_when_they_leave() -> None:
    with EmbeddedRedis() as redis:
        board = start_service("leaderboard", "--redis-url", redis.url, "--api-key", KEY)
        relay = start_relay("--leaderboard-url", board.url, "--leaderboard-api-key", KEY)
        try:
            async with await Room.connect(f"{relay.url}/rooms/arena/scores?name=ada") as room:
                ship = msgpack.unpackb(await room.recv())["ship"]
                score = await _score_a_coin(room, ship)
            async with httpx.AsyncClient(base_url=board.url) as http, asyncio.timeout(10):
                while True:
                    r = await http.get("/boards/arena/players/ada")
                    if r.status_code == 200:
                        break
                    await asyncio.sleep(0.1)
            assert r.json()["score"] >= score
            assert r.json()["rank"] == 1
        finally:
            relay.stop(signal.SIGKILL)
            board.stop()
