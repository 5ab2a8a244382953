"""Bots on timeout: the real `stadium matchmaker` and `stadium relay` on a real embedded
Redis, then on a 3-master Redis Cluster. Tickets past `max_wait` in a queue with `bots = true`
are matched with bots in the seats left, take their seats on the relay, and results rate the
humans against the bots; a queue without bots still fails them."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from loadtest.processes import start_service
from matchmaker import keys
from matchmaker.ratings import SIGMA
from stadium.redis_client import connect
from stadium_client import Room
from tests.players import PlayerTokens

SECRET = "bot-secret"
KEY = "server-key"
QUEUES = """
[queues.solo]
teams = 2
team_size = 1
max_wait = 1
bots = true

[queues.pairs]
teams = 2
team_size = 2
max_wait = 1
bots = true

[queues.five]
teams = 2
team_size = 5
max_wait = 1
bots = true

[queues.near]
teams = 2
team_size = 1
max_wait = 1
max_region_latency_ms = 100
bots = true

[queues.plain]
teams = 2
team_size = 1
max_wait = 1
"""


@pytest.fixture(scope="module")
def service(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    queues = tmp_path_factory.mktemp("bots") / "queues.toml"
    queues.write_text(QUEUES)
    relay = start_service("relay", "--redis-url", redis_url, "--secret", SECRET)
    mm = start_service("matchmaker", "--redis-url", redis_url, "--secret", SECRET,
                       "--api-key", KEY, "--queues", str(queues), "--match-interval",
                       "0.05", "--lease-ttl", "1")
    try:
        yield mm.url
    finally:
        mm.stop()
        relay.stop(signal.SIGKILL)


@pytest.fixture
async def http(service: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose ticket requests carry their player's token."""
    async with httpx.AsyncClient(base_url=service, timeout=30,
                                 auth=PlayerTokens(SECRET)) as client:
        yield client


async def _ticket(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await http.post("/tickets", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _settled(http: httpx.AsyncClient, ticket_id: str) -> dict[str, Any]:
    r = await http.get(f"/tickets/{ticket_id}/wait", params={"timeout": 20})
    assert r.status_code == 200 and r.json()["status"] != "waiting", r.text
    return dict(r.json())


async def _match(http: httpx.AsyncClient, match_id: str) -> dict[str, Any]:
    r = await http.get(f"/matches/{match_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _result(http: httpx.AsyncClient, match_id: str, ranks: list[int]) -> dict[str, Any]:
    r = await http.post(f"/matches/{match_id}/result", json={"ranks": ranks},
                        headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _counter(http: httpx.AsyncClient, name: str, queue: str) -> float:
    text = (await http.get("/metrics")).text
    found = re.search(rf'^{name}{{queue="{queue}"}} (\S+)$', text, re.M)
    return 0.0 if found is None else float(found.group(1))


def _bot(name: str, mu: float) -> dict[str, Any]:
    return {"name": name, "mu": pytest.approx(mu), "sigma": pytest.approx(SIGMA)}


async def test_a_lone_ticket_plays_a_bot_and_takes_its_seat(http: httpx.AsyncClient) -> None:
    assert {q["name"]: q["bots"] for q in (await http.get("/queues")).json()["queues"]} == {
        "solo": True, "pairs": True, "five": True, "near": True, "plain": False}
    matches_before = await _counter(http, "stadium_matchmaker_bot_matches_total", "solo")
    seats_before = await _counter(http, "stadium_matchmaker_bot_seats_total", "solo")
    t = await _ticket(http, player="ann", queue="solo")
    done = await _settled(http, t["id"])
    assert done["status"] == "matched" and set(done["seats"]) == {"ann"}
    match = await _match(http, done["match_id"])
    assert match["with_bots"] is True
    assert match["teams"] == [["ann"], []]  # humans only: seats and reports are theirs
    assert match["bots"] == [[], [_bot("bot-1", 25.0)]]
    assert match["win_probability"] == pytest.approx([0.5, 0.5])
    # The seat works: the relay admits ann with her token and records that she joined.
    seat = done["seats"]["ann"]
    room = await Room.connect(seat["url"], seat["token"])
    try:
        async with asyncio.timeout(10):
            while "ann" not in (await _match(http, match["id"]))["seats"]["joined"]:
                await asyncio.sleep(0.05)
    finally:
        await room.close()
    assert await _counter(http, "stadium_matchmaker_bot_matches_total", "solo") \
        == matches_before + 1
    assert await _counter(http, "stadium_matchmaker_bot_seats_total", "solo") \
        == seats_before + 1
    # A win over the bot moves ann's rating as a win over a player rated like her would.
    result = await _result(http, match["id"], [1, 2])
    assert set(result["ratings"]) == {"ann"}
    ann = (await http.get("/players/ann")).json()
    assert ann["mu"] == pytest.approx(result["ratings"]["ann"]["mu"])
    assert ann["mu"] > 25 and ann["sigma"] < SIGMA and ann["games"] == 1


async def test_a_party_past_max_wait_gets_a_bot_team_and_can_lose_to_it(
        http: httpx.AsyncClient) -> None:
    t = await _ticket(http, player="pa", queue="pairs", party=["pb"])
    done = await _settled(http, t["id"])
    assert done["status"] == "matched" and set(done["seats"]) == {"pa", "pb"}
    match = await _match(http, done["match_id"])
    assert match["teams"] == [["pa", "pb"], []]
    assert match["bots"] == [[], [_bot("bot-1", 25.0), _bot("bot-2", 25.0)]]
    # The all-bot team wins: both humans lose rating, and no bot rating is stored.
    result = await _result(http, match["id"], [2, 1])
    assert set(result["ratings"]) == {"pa", "pb"}
    for p in ("pa", "pb"):
        rating = (await http.get(f"/players/{p}")).json()
        assert rating["mu"] < 25 and rating["games"] == 1
    assert (await http.get("/players/bot-1")).json()["games"] == 0


async def test_lonely_tickets_past_max_wait_share_one_match_with_bots(
        http: httpx.AsyncClient, redis_url: str) -> None:
    # Hold the queue's lease meanwhile, as another matchmaker process would, so that both
    # tickets are past max_wait in the same pass once it is let go.
    redis = await connect(redis_url)
    try:
        await redis.set(keys.lease("five"), "the-test", px=10000)
        await asyncio.sleep(0.3)  # a pass already under way finishes
        solo = await _ticket(http, player="f1", queue="five")
        party = await _ticket(http, player="f2", queue="five", party=["f3"])
        await asyncio.sleep(1.2)
        waiting = (await http.get(f"/tickets/{solo['id']}")).json()
        assert waiting["status"] == "waiting"  # nobody ran the queue
        await redis.delete(keys.lease("five"))
    finally:
        await redis.aclose()
    a, b = await _settled(http, solo["id"]), await _settled(http, party["id"])
    assert a["status"] == b["status"] == "matched" and a["match_id"] == b["match_id"]
    match = await _match(http, a["match_id"])
    assert sorted(p for team in match["teams"] for p in team) == ["f1", "f2", "f3"]
    party_team = next(i for i, team in enumerate(match["teams"]) if "f2" in team)
    assert "f3" in match["teams"][party_team]  # the party is kept whole
    assert [len(h) + len(b) for h, b in zip(match["teams"], match["bots"],
                                            strict=True)] == [5, 5]
    bots = [bot for team in match["bots"] for bot in team]
    assert sorted(bot["name"] for bot in bots) == sorted(f"bot-{i}" for i in range(1, 8))
    assert all(bot == _bot(bot["name"], 25.0) for bot in bots)
    assert sum(match["win_probability"]) == pytest.approx(1.0)


async def test_without_bots_or_a_region_in_reach_the_ticket_still_fails(
        http: httpx.AsyncClient) -> None:
    plain = await _ticket(http, player="pat", queue="plain")
    far = await _ticket(http, player="pim", queue="near", regions={"eu": 400})
    for t in (plain, far):
        done = await _settled(http, t["id"])
        assert (done["status"], done["reason"]) == ("failed", "timeout")
    assert await _counter(http, "stadium_matchmaker_bot_matches_total", "plain") == 0
    assert await _counter(http, "stadium_matchmaker_bot_matches_total", "near") == 0
