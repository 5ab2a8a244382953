"""The operator console on a real relay: the operator key, what its JSON shows of rooms,
members and closes (never a join token), its bounds, and the matchmaker's queues and the
leaderboard's boards read from those services."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from loadtest.processes import ServiceProcess, start_service
from stadium import tokens
from stadium.redis_server import EmbeddedRedis
from stadium_client import Room
from tests.conftest import RelayProcess, start_relay

KEY = "operator-key-for-tests"
SECRET = "join-secret"
BEARER = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayProcess]:
    r = start_relay("--admin-key", KEY, "--secret", SECRET, "--hibernate-after", "1",
                    "--room", "echo=tests.rooms:EchoRoom",
                    "--room", "sleepy=tests.rooms:SleepyRoom",
                    "--room", "slow=tests.rooms:SlowTickRoom")
    yield r
    r.stop(signal.SIGKILL)


@pytest.fixture
async def http(relay: RelayProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=relay.http, timeout=10) as client:
        yield client


def _token(room: str, player: str) -> str:
    room_type, _, room_id = room.partition("/")
    return tokens.sign(SECRET, room_type=room_type, room_id=room_id, player=player)


async def _join(relay: RelayProcess, room: str, player: str) -> tuple[Room, str]:
    token = _token(room, player)
    return await Room.connect(f"{relay.url}/rooms/{room}", token), token


async def _until(http: httpx.AsyncClient, path: str, ok: Any, timeout: float = 10) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            body = (await http.get(path, headers=BEARER)).json()
            if ok(body):
                return body
            await asyncio.sleep(0.1)


async def test_without_a_key_or_dev_there_is_no_console(relay_factory: Any) -> None:
    bare = relay_factory()
    async with httpx.AsyncClient(base_url=bare.http) as http:
        for path in ("/console", "/console/console.js", "/console/api/rooms"):
            resp = await http.get(path, headers=BEARER)
            assert resp.status_code == 404, path
            assert resp.json()["error"]["code"] == "not_found"


async def test_the_api_needs_the_operator_key(relay: RelayProcess,
                                              http: httpx.AsyncClient) -> None:
    page = await http.get("/console")
    assert page.status_code == 200 and "Stadium console" in page.text  # the page holds no data
    assert (await http.get("/console/console.js")).status_code == 200
    for headers in ({}, {"Authorization": "Bearer not-the-key"}, {"X-Admin-Key": KEY[:-1]},
                    {"Authorization": KEY}):
        resp = await http.get("/console/api/rooms", headers=headers)
        assert resp.status_code == 401, headers
        assert resp.json()["error"]["code"] == "bad_admin_key"
        assert resp.headers["www-authenticate"].startswith("Bearer")
    assert "bad_admin_key" in relay.log()
    for headers in (BEARER, {"X-Admin-Key": KEY}):
        assert (await http.get("/console/api/rooms", headers=headers)).status_code == 200
    resp = await http.post("/console/api/rooms", headers=BEARER)
    assert resp.status_code == 405 and resp.headers["allow"] == "GET, HEAD"
    assert (await http.get("/console/nope.js")).status_code == 404
    assert (await http.get("/console/api/nope", headers=BEARER)).status_code == 404


async def test_rooms_members_and_recent_closes(relay: RelayProcess,
                                               http: httpx.AsyncClient) -> None:
    ann, ann_token = await _join(relay, "echo/hall", "ann")
    bob, bob_token = await _join(relay, "echo/hall", "bob")
    cyd, cyd_token = await _join(relay, "echo/side", "cyd")
    try:
        await cyd.close()
        rooms = await _until(http, "/console/api/rooms",
                             lambda b: any(r["id"] == "hall" and r["members"] == 2
                                           for r in b["rooms"]))
        hall = next(r for r in rooms["rooms"] if r["id"] == "hall")
        assert hall == {**hall, "type": "echo", "awake": True, "tick_rate": None}
        assert rooms["rooms"][0]["members"] >= rooms["rooms"][-1]["members"]  # fullest first

        room = (await http.get("/console/api/rooms/echo/hall", headers=BEARER)).json()
        assert sorted(m["player"] for m in room["members_listed"]) == ["ann", "bob"]
        assert all(m["kind"] == "websocket" and m["open"] for m in room["members_listed"])
        assert room["more"] == 0 and room["closes"] == []
        one = (await http.get("/console/api/rooms/echo/hall?limit=1", headers=BEARER)).json()
        assert len(one["members_listed"]) == 1 and one["more"] == 1

        await bob.close()
        room = await _until(http, "/console/api/rooms/echo/hall", lambda b: b["closes"])
        assert [(c["player"], c["code"]) for c in room["closes"]] == [("bob", 1000)]
        assert room["members"] == 1

        overview = (await http.get("/console/api/relay", headers=BEARER)).json()
        assert overview["console"] == "key" and overview["connections"] >= 1
        assert overview["messages_out"] >= 0 and "1000" in overview["closes"]
        nodes = (await http.get("/console/api/nodes", headers=BEARER)).json()
        assert nodes["directory"] is False  # no Redis: this relay alone
        assert [(n["url"], n["self"]) for n in nodes["nodes"]] == [(relay.url, True)]

        answers = [await http.get(p, headers=BEARER) for p in (
            "/console/api/relay", "/console/api/rooms", "/console/api/rooms/echo/hall",
            "/console/api/nodes")]
        for token in (ann_token, bob_token, cyd_token):  # a join token is never shown
            assert not any(token in a.text or token.split(".")[-1] in a.text for a in answers)
    finally:
        await ann.close()


async def test_listings_are_bounded(relay: RelayProcess, http: httpx.AsyncClient) -> None:
    rooms = [(await _join(relay, f"echo/many-{i}", f"p{i}"))[0] for i in range(3)]
    try:
        body = await _until(http, "/console/api/rooms?type=echo&limit=2",
                            lambda b: b["count"] >= 3)
        assert len(body["rooms"]) == 2 and body["more"] == body["count"] - 2
        for bad in ("0", "", "x", "1001"):
            resp = await http.get(f"/console/api/rooms?limit={bad}", headers=BEARER)
            assert resp.status_code == 422 and resp.json()["error"]["code"] == "bad_limit"
        missing = await http.get("/console/api/rooms/echo/none-here", headers=BEARER)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_room"
    finally:
        for room in rooms:
            await room.close()


async def test_ticks_overruns_and_hibernation(relay: RelayProcess,
                                              http: httpx.AsyncClient) -> None:
    slow, _ = await _join(relay, "slow/s1", "sid")
    sleepy, _ = await _join(relay, "sleepy/z1", "zoe")
    try:
        rooms = await _until(http, "/console/api/rooms", lambda b: any(
            r["id"] == "s1" and r["overruns"] > 0 for r in b["rooms"]) and any(
            r["id"] == "z1" and not r["awake"] for r in b["rooms"]))
        s1 = next(r for r in rooms["rooms"] if r["id"] == "s1")
        assert s1["tick"] > 0 and s1["tick_ms"] >= 40 and s1["tick_rate"] == 50
        ticks = (await http.get("/console/api/relay", headers=BEARER)).json()["ticks"]["slow"]
        assert ticks["ticks"] > 0 and ticks["overruns"] > 0 and ticks["mean_ms"] >= 40
        assert rooms["rooms"] and (await http.get("/console/api/relay", headers=BEARER)
                                   ).json()["rooms_hibernated"] >= 1
    finally:
        await slow.close()
        await sleepy.close()


async def test_services_not_configured(http: httpx.AsyncClient) -> None:
    queues = (await http.get("/console/api/queues", headers=BEARER)).json()
    assert queues == {"url": None, "queues": [], "error": None}
    boards = (await http.get("/console/api/boards", headers=BEARER)).json()
    assert boards["url"] is None and boards["boards"] == []


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[ServiceProcess, ServiceProcess, ServiceProcess]]:
    """Redis, a matchmaker, a leaderboard, and a relay whose console reads both."""
    with EmbeddedRedis() as redis:
        mm = start_service("matchmaker", "--redis-url", redis.url)
        lb = start_service("leaderboard", "--redis-url", redis.url)
        relay = start_relay("--redis-url", redis.url, "--admin-key", KEY,
                            "--matchmaker-url", mm.http, "--leaderboard-url", lb.http)
        try:
            yield relay, mm, lb
        finally:
            relay.stop(signal.SIGKILL)
            mm.stop()
            lb.stop()


async def test_queues_boards_and_nodes_from_the_services(
        stack: tuple[ServiceProcess, ServiceProcess, ServiceProcess]) -> None:
    relay, mm, lb = stack
    async with httpx.AsyncClient(timeout=10) as client:
        for player in ("ann", "bob"):  # 2v2 needs four: these two wait
            resp = await client.post(f"{mm.http}/tickets", json={"player": player,
                                                                 "queue": "2v2"})
            assert resp.status_code == 201
        for board in ("alpha", "beta"):
            await client.put(f"{lb.http}/boards/{board}", json={"order": "desc"})
        await client.post(f"{lb.http}/boards/alpha/scores", json={"scores": [
            {"player": "ann", "score": 30}, {"player": "bob", "score": 10}]})

        async with asyncio.timeout(15):
            while True:
                queues = (await client.get(f"{relay.http}/console/api/queues",
                                           headers=BEARER)).json()
                waiting = {q["name"]: q["waiting"] for q in queues["queues"]}
                if waiting.get("2v2") == 2:
                    break
                await asyncio.sleep(0.2)
        assert queues["error"] is None and queues["url"] == mm.http
        q = next(q for q in queues["queues"] if q["name"] == "2v2")
        assert (q["teams"], q["team_size"], q["matches"]) == (2, 2, 0)
        assert q["wait_seconds"]["p50"] is None  # nothing matched yet
        assert set(q["quality"]) == {"rating_spread_mean", "favourite_win_mean"}

        boards = (await client.get(f"{relay.http}/console/api/boards", headers=BEARER)).json()
        assert boards["error"] is None
        assert [(b["board"], b["entries"]) for b in boards["boards"]] == [("alpha", 2),
                                                                          ("beta", 0)]
        assert boards["boards"][0]["top"] == [{"player": "ann", "score": 30},
                                              {"player": "bob", "score": 10}]

        nodes = (await client.get(f"{relay.http}/console/api/nodes", headers=BEARER)).json()
        assert nodes["directory"] is True
        assert [n["url"] for n in nodes["nodes"] if n["self"]] == [relay.url]

        lb.stop()  # a service that does not answer is said so, not a failure
        boards = (await client.get(f"{relay.http}/console/api/boards", headers=BEARER)).json()
        assert boards["boards"] == [] and "did not answer" in boards["error"]


async def test_the_leaderboard_lists_boards(redis_url: str) -> None:
    lb = start_service("leaderboard", "--redis-url", redis_url)
    try:
        async with httpx.AsyncClient(base_url=lb.http, timeout=10) as client:
            names = [f"list-{i}" for i in range(5)]
            for name in names:
                await client.put(f"/boards/{name}", json={"operator": "incr"})
            await client.post("/boards/list-3/scores", json={"player": "p", "score": 2})
            listed = (await client.get("/boards", params={"limit": 3})).json()
            mine = [b for b in listed["boards"] if b["board"].startswith("list-")]
            assert listed["count"] >= 5 and listed["more"] is True and len(listed["boards"]) == 3
            assert all(b["operator"] == "incr" for b in mine)
            every = (await client.get("/boards", params={"limit": 1000})).json()["boards"]
            assert {b["board"]: b["entries"] for b in every if b["board"] in names} == {
                "list-0": 0, "list-1": 0, "list-2": 0, "list-3": 1, "list-4": 0}
            assert (await client.get("/boards", params={"limit": 0})).status_code == 422
    finally:
        lb.stop()
