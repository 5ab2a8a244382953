"""Room hibernation on a real relay: idle rooms sleep with their sockets open, and wake with
their state on the next message, close or alarm; pings and auto-responses do not wake them."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator

import aiohttp
import msgpack
import pytest
import redis.asyncio as aioredis

from stadium.redis_server import EmbeddedRedis
from stadium_client import Room
from tests.conftest import RelayProcess, start_relay


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayProcess]:
    r = start_relay("--hibernate-after", "1", "--room", "sleepy=tests.rooms:SleepyRoom",
                    "--room", "echo=tests.rooms:EchoRoom")
    yield r
    r.stop(signal.SIGKILL)


async def _metric(relay: RelayProcess, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"{relay.http}/metrics") as resp:
        text = await resp.text()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


async def _until_hibernated(relay: RelayProcess, n: float) -> None:
    async with asyncio.timeout(10):
        while await _metric(relay, "stadium_relay_rooms_hibernated") != n:
            await asyncio.sleep(0.2)


async def test_an_idle_room_sleeps_and_wakes_with_its_state(relay: RelayProcess) -> None:
    async with await Room.connect(f"{relay.url}/rooms/sleepy/s1") as a:
        for i in range(3):
            await a.send("inc")
            assert await a.recv() == str(i + 1)
        hibernations = await _metric(relay, "stadium_relay_room_hibernations_total")
        await _until_hibernated(relay, 1)
        assert await _metric(relay, "stadium_relay_room_hibernations_total") == hibernations + 1
        wakes = await _metric(relay, "stadium_relay_room_wakes_total")
        # The socket stayed open; the table answers pings and auto-responses without waking.
        await a.send("ping")
        assert await a.recv() == "pong"
        await (await a._ws.ping())
        assert await _metric(relay, "stadium_relay_room_wakes_total") == wakes
        assert await _metric(relay, "stadium_relay_rooms_hibernated") == 1
        await a.send("inc")
        assert await a.recv() == "4"  # on_start restored the count from the snapshot
        assert await _metric(relay, "stadium_relay_room_wakes_total") == wakes + 1
        assert await _metric(relay, "stadium_relay_rooms_hibernated") == 0


async def test_an_alarm_wakes_a_sleeping_room(relay: RelayProcess) -> None:
    async with await Room.connect(f"{relay.url}/rooms/sleepy/s2") as a:
        await a.send("inc")
        assert await a.recv() == "1"
        await a.send("alarm")
        assert await a.recv() == "alarm set"
        await _until_hibernated(relay, 1)
        assert await asyncio.wait_for(a.recv(), 10) == "alarm fired, count 1"


async def test_a_room_without_snapshot_stays_awake(relay: RelayProcess) -> None:
    async with await Room.connect(f"{relay.url}/rooms/echo/awake"):
        await asyncio.sleep(2.5)
        assert await _metric(relay, "stadium_relay_rooms_hibernated") == 0
        assert await _metric(relay, "stadium_relay_rooms") >= 1


async def test_with_redis_the_snapshot_waits_in_redis() -> None:
    with EmbeddedRedis() as server:
        r = start_relay("--hibernate-after", "1", "--redis-url", server.url,
                        "--room", "sleepy=tests.rooms:SleepyRoom")
        redis = aioredis.from_url(server.url)
        key = "stadium:room:sleepy:r1:snapshot"
        try:
            async with await Room.connect(f"{r.url}/rooms/sleepy/r1") as a:
                for i in range(2):
                    await a.send("inc")
                    assert await a.recv() == str(i + 1)
                async with asyncio.timeout(10):
                    while await redis.get(key) is None:
                        await asyncio.sleep(0.2)
                assert msgpack.unpackb(await redis.get(key)) == {"count": 2}
                for _ in range(3):  # sent together: all wait for the snapshot, in order
                    await a.send("inc")
                assert [await a.recv() for _ in range(3)] == ["3", "4", "5"]
                assert await redis.get(key) is None  # deleted once awake
                assert await _metric(r, "stadium_relay_room_wakes_total") == 1
        finally:
            await redis.aclose()
            r.stop(signal.SIGKILL)
