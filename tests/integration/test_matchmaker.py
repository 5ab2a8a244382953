"""The matchmaker service over HTTP: the real `stadium matchmaker` and `stadium relay`
processes on a real embedded Redis, then on a 3-master Redis Cluster. Bad input, timeouts,
cancels racing the matcher, several matchmaker processes on one Redis, the relay directory
and long-poll notices."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from loadtest.processes import ServiceProcess, start_service
from matchmaker.waiters import RECHECK
from stadium.redis_server import EmbeddedRedis
from tests.players import PlayerTokens
from tests.queues import queue, queues_file

SECRET = "relay-secret"
KEY = "server-key"
QUEUES = [queue("duel", rating_window=50.0), queue("brief", rating_window=0.0, max_wait=1),
          queue("trio", 3, rating_window=50.0, regions=["eu", "us"], max_region_latency_ms=100)]


def matchmaker(redis_url: str, queues: Path, *args: str) -> ServiceProcess:
    return start_service("matchmaker", "--redis-url", redis_url, "--secret", SECRET,
                         "--api-key", KEY, "--queues", str(queues), "--match-interval", "0.05",
                         "--lease-ttl", "1", *args)


@pytest.fixture(scope="module")
def queues(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return queues_file(tmp_path_factory.mktemp("mm"), *QUEUES)


@pytest.fixture(scope="module")
def relay(redis_url: str) -> Iterator[ServiceProcess]:
    proc = start_service("relay", "--redis-url", redis_url, "--secret", SECRET)
    yield proc
    proc.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def service(redis_url: str, queues: Path, relay: ServiceProcess) -> Iterator[str]:
    proc = matchmaker(redis_url, queues)
    yield proc.url
    proc.stop()


@pytest.fixture
async def http(service: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose ticket requests carry their player's token."""
    async with httpx.AsyncClient(base_url=service, timeout=30,
                                 auth=PlayerTokens(SECRET)) as client:
        yield client


def _error(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


async def _ticket(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await http.post("/tickets", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _settled(http: httpx.AsyncClient, ticket_id: str) -> dict[str, Any]:
    r = await http.get(f"/tickets/{ticket_id}/wait", params={"timeout": 20})
    assert r.status_code == 200
    return dict(r.json())


async def test_bad_input_gets_a_4xx_with_an_error_body(http: httpx.AsyncClient) -> None:
    held = await _ticket(http, player="held", queue="trio", party=["held2"],
                         regions={"eu": 20})
    bad: list[tuple[str, str, Any, int, str]] = [
        ("post", "/tickets", {"player": "a", "queue": "nope"}, 404, "unknown_queue"),
        ("post", "/tickets", {"player": "a b", "queue": "duel"}, 400, "bad_player"),
        ("post", "/tickets", {"player": "a", "queue": "duel", "party": ["b"]}, 422,
         "party_too_large"),
        ("post", "/tickets", {"player": "a", "queue": "trio", "party": ["a"]}, 422,
         "duplicate_player"),
        ("post", "/tickets", {"player": "a", "queue": "trio", "regions": {"mars": 5}}, 422,
         "unknown_region"),
        ("post", "/tickets", {"player": "a", "queue": "trio", "regions": {"eu": -1}}, 422,
         "bad_latency"),
        ("post", "/tickets", {"player": "a", "queue": "trio", "regions": {"eu": "fast"}}, 422,
         "invalid_request"),
        ("post", "/tickets", {"queue": "duel"}, 422, "invalid_request"),
        ("post", "/tickets", {"player": "held2", "queue": "duel"}, 409, "already_queued"),
        ("get", "/tickets/duel.0123", None, 404, "unknown_ticket"),
        ("get", "/tickets/duel." + "0" * 32, None, 404, "unknown_ticket"),
        ("get", f"/tickets/{held['id']}/wait?timeout=999", None, 422, "bad_timeout"),
        ("delete", "/tickets/nonsense", None, 404, "unknown_ticket"),
        ("get", "/matches/duel.0000000000000000", None, 404, "unknown_match"),
        ("post", "/matches/duel.0000000000000000/result", {"ranks": [1, 2]}, 401,
         "bad_api_key"),
        ("get", "/players/no%20one", None, 400, "bad_player"),
    ]
    for method, path, body, status, code in bad:
        r = await http.request(method, path, json=body)
        assert (r.status_code, _error(r)) == (status, code), (method, path, r.text)
    r = await http.post("/tickets", content=b"{not json", headers={"content-type":
                                                                    "application/json"})
    assert r.status_code == 422 and _error(r) == "invalid_request"
    auth = {"X-API-Key": KEY}
    r = await http.post("/matches/duel.0000000000000000/result", json={"ranks": [1, 2]},
                        headers=auth)
    assert r.status_code == 404 and _error(r) == "unknown_match"
    r = await http.post("/matches/duel.0000000000000000/result", json={"ranks": [1, 5]},
                        headers=auth)
    assert r.status_code == 422 and _error(r) == "bad_ranks"
    r = await http.delete(f"/tickets/{held['id']}")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # Cancelled: both players are free again, and a second cancel changes nothing.
    assert (await http.delete(f"/tickets/{held['id']}")).json()["status"] == "cancelled"
    again = await _ticket(http, player="held2", queue="trio", regions={"eu": 20})
    assert (await http.delete(f"/tickets/{again['id']}")).status_code == 200


async def test_a_ticket_past_max_wait_fails_with_a_reason(http: httpx.AsyncClient) -> None:
    t = await _ticket(http, player="lonely", queue="brief")
    done = await _settled(http, t["id"])
    assert (done["status"], done["reason"]) == ("failed", "timeout")
    r = await http.delete(f"/tickets/{t['id']}")
    assert r.status_code == 409 and _error(r) == "already_failed"
    again = await _ticket(http, player="lonely", queue="duel")  # free to queue again
    assert (await http.delete(f"/tickets/{again['id']}")).status_code == 200


async def test_regions_and_parties_shape_the_match(http: httpx.AsyncClient,
                                                   relay: ServiceProcess) -> None:
    party = await _ticket(http, player="p1", queue="trio", party=["p2"],
                          regions={"eu": 30, "us": 90})
    far = await _ticket(http, player="far", queue="trio", regions={"us": 20, "eu": 400})
    for i in range(3):
        await _ticket(http, player=f"s{i}", queue="trio", regions={"eu": 10 + i, "us": 50})
    done = await _settled(http, party["id"])
    assert done["status"] == "matched"
    seats = done["seats"]
    assert set(seats) == {"p1", "p2"} and seats["p1"]["team"] == seats["p2"]["team"]
    assert seats["p1"]["url"].startswith(relay.url + "/rooms/broadcast/")
    match = (await http.get(f"/matches/{done['match_id']}")).json()
    # Six players, so all five tickets; eu would be 400 ms for "far": the match is in us.
    assert sorted(p for team in match["teams"] for p in team) == \
        ["far", "p1", "p2", "s0", "s1", "s2"]
    assert (match["region"], match["worst_latency_ms"]) == ("us", 90)
    assert sorted(len(t) for t in match["teams"]) == [3, 3]
    assert "tickets" not in match  # ticket ids would give away other players' tokens
    # Tickets with no region in common never meet.
    eu = await _ticket(http, player="eu1", queue="trio", party=["eu2", "eu3"],
                       regions={"eu": 10})
    us = await _ticket(http, player="us1", queue="trio", party=["us2", "us3"],
                       regions={"us": 10})
    assert (await http.get(f"/tickets/{eu['id']}/wait", params={"timeout": 1})).json()[
        "status"] == "waiting"
    for t in (eu, us):
        assert (await http.delete(f"/tickets/{t['id']}")).json()["status"] == "cancelled"
    assert far["status"] == "waiting"


async def test_cancel_racing_the_matcher_never_matches_a_cancelled_ticket(
        http: httpx.AsyncClient) -> None:
    async def one(i: int) -> tuple[str, int, dict[str, Any]]:
        a = await _ticket(http, player=f"race-a{i}", queue="duel")
        await _ticket(http, player=f"race-b{i}", queue="duel")
        await asyncio.sleep((i % 7) * 0.01)
        r = await http.delete(f"/tickets/{a['id']}")
        return a["id"], r.status_code, r.json()

    results = await asyncio.gather(*(one(i) for i in range(60)))
    codes = {code for _, code, _ in results}
    assert codes <= {200, 409}
    cancelled = {body["players"][0] for _, code, body in results if code == 200}
    for _, code, body in results:
        if code == 409:
            assert _error_code(body) == "already_matched"
    # Let every remaining ticket settle, then read every match that was formed.
    await asyncio.sleep(1.0)
    seen: dict[str, str] = {}
    for i in range(60):
        for who in ("a", "b"):
            r = await http.post("/tickets", json={"player": f"race-{who}{i}", "queue": "duel"})
            # Cancelled or matched players are free again (a "b" may still be waiting).
            if who == "a":
                assert r.status_code == 201, r.text
            if r.status_code == 201:
                await http.delete(f"/tickets/{r.json()['id']}")
    for tid, code, _ in results:
        t = (await http.get(f"/tickets/{tid}")).json()
        assert t["status"] == ("cancelled" if code == 200 else "matched")
        if code == 409:
            match = (await http.get(f"/matches/{t['match_id']}")).json()
            for team in match["teams"]:
                for p in team:
                    assert p not in cancelled
                    assert seen.setdefault(p, match["id"]) == match["id"]


def _error_code(body: dict[str, Any]) -> str:
    return str(body["error"]["code"])


async def test_results_update_ratings_once(http: httpx.AsyncClient) -> None:
    a = await _ticket(http, player="winner", queue="duel")
    await _ticket(http, player="loser", queue="duel")
    done = await _settled(http, a["id"])
    match = (await http.get(f"/matches/{done['match_id']}")).json()
    ranks = [1, 2] if match["teams"][0] == ["winner"] else [2, 1]
    r = await http.post(f"/matches/{match['id']}/result", json={"ranks": ranks},
                        headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text
    w = (await http.get("/players/winner")).json()
    lo = (await http.get("/players/loser")).json()
    assert w["mu"] > 25 > lo["mu"] and w["games"] == lo["games"] == 1
    assert w["sigma"] < 25 / 3
    r = await http.post(f"/matches/{match['id']}/result", json={"ranks": ranks},
                        headers={"X-API-Key": KEY})
    assert r.status_code == 409 and _error(r) == "result_reported"
    assert (await http.get("/players/winner")).json() == w


async def test_health_and_match_quality_metrics(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    a = await _ticket(http, player="m1", queue="duel")
    await _ticket(http, player="m2", queue="duel")
    assert (await _settled(http, a["id"]))["status"] == "matched"
    text = (await http.get("/metrics")).text
    for name in ("stadium_matchmaker_matches_total{queue=\"duel\"}",
                 "stadium_matchmaker_match_wait_seconds_count{queue=\"duel\"}",
                 "stadium_matchmaker_match_rating_spread_count{queue=\"duel\"}",
                 "stadium_matchmaker_match_favourite_win_probability_count{queue=\"duel\"}",
                 "stadium_matchmaker_pass_seconds_count{queue=\"duel\"}"):
        assert name in text, name
    queues = (await http.get("/queues")).json()["queues"]
    assert {q["name"] for q in queues} == {"duel", "brief", "trio"}


async def test_two_processes_share_one_redis_without_double_matching(
        redis_url: str, queues: Path, relay: ServiceProcess) -> None:
    second = matchmaker(redis_url, queues)
    third = matchmaker(redis_url, queues)
    try:
        urls = [second.url, third.url]
        players = PlayerTokens(SECRET)
        clients = [httpx.AsyncClient(base_url=u, timeout=30, auth=players) for u in urls]
        try:
            made = await asyncio.gather(*(
                clients[i % 2].post("/tickets", json={"player": f"two-{i}", "queue": "duel"})
                for i in range(100)))
            ids = [r.json()["id"] for r in made]
            done = await asyncio.gather(*(
                clients[i % 2].get(f"/tickets/{tid}/wait", params={"timeout": 20})
                for i, tid in enumerate(ids)))
            matches: dict[str, list[str]] = {}
            for r in done:
                t = r.json()
                assert t["status"] == "matched", t
                matches.setdefault(t["match_id"], []).extend(t["players"])
            assert len(matches) == 50
            assert sorted(p for ps in matches.values() for p in ps) == \
                sorted(f"two-{i}" for i in range(100))
            # Stop one process: the other continues from Redis.
            second.stop()
            t = (await clients[1].post("/tickets", json={"player": "late-1",
                                                          "queue": "duel"})).json()
            await clients[1].post("/tickets", json={"player": "late-2", "queue": "duel"})
            r = await clients[1].get(f"/tickets/{t['id']}/wait", params={"timeout": 20})
            assert r.json()["status"] == "matched"
        finally:
            for c in clients:
                await c.aclose()
    finally:
        second.stop()
        third.stop()


async def test_matches_wait_for_a_relay_in_the_directory(redis_url: str, queues: Path,
                                                         tmp_path: Path) -> None:
    with EmbeddedRedis() as own:  # a Redis no relay has registered in
        mm = matchmaker(own.url, queues)
        try:
            async with httpx.AsyncClient(base_url=mm.url, timeout=30,
                                         auth=PlayerTokens(SECRET)) as http:
                a = await _ticket(http, player="d1", queue="duel")
                await _ticket(http, player="d2", queue="duel")
                waiting = (await http.get(f"/tickets/{a['id']}/wait",
                                          params={"timeout": 1})).json()
                assert waiting["status"] == "waiting"
                assert "stadium_matchmaker_no_relay_total" in (await http.get("/metrics")).text
                relay = start_service("relay", "--redis-url", own.url, "--secret", SECRET)
                try:
                    done = await _settled(http, a["id"])
                    assert done["status"] == "matched"
                    assert done["seats"]["d1"]["url"].startswith(relay.url)
                    # A relay that stops leaves the directory at once.
                    relay.stop()
                    assert own.command("HLEN", "stadium:relays") == "0"
                finally:
                    relay.stop()
        finally:
            mm.stop()


async def _ticket_reads(redis: Any) -> int:
    """How many times Redis has served a ticket's whole hash (what a status read does)."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


async def test_a_long_poll_reads_the_ticket_only_when_it_starts_and_ends(
        queues: Path) -> None:
    # Its own Redis and matchmaker: nothing else there reads whole hashes (seat releases of
    # the other tests' matches would).
    with EmbeddedRedis() as own:
        mm = matchmaker(own.url, queues)
        redis = aioredis.from_url(own.url)
        try:
            async with httpx.AsyncClient(base_url=mm.url, timeout=30,
                                         auth=PlayerTokens(SECRET)) as http:
                t = await _ticket(http, player="patient", queue="trio", regions={"eu": 20})
                before = await _ticket_reads(redis)
                r = await http.get(f"/tickets/{t['id']}/wait", params={"timeout": 2})
                assert r.json()["status"] == "waiting"
                # One read when it starts and one when it times out (a timer polling every
                # 50-250 ms would have read it a dozen times).
                assert await _ticket_reads(redis) - before <= 4
        finally:
            await redis.aclose()
            mm.stop()


async def test_long_polls_wait_for_a_notice_not_a_timer(http: httpx.AsyncClient) -> None:
    t = await _ticket(http, player="patient", queue="trio", regions={"eu": 20})
    started = time.monotonic()
    poll = asyncio.create_task(http.get(f"/tickets/{t['id']}/wait",
                                        params={"timeout": 25}))
    await asyncio.sleep(0.3)
    assert (await http.delete(f"/tickets/{t['id']}")).status_code == 200
    r = await asyncio.wait_for(poll, 10)
    assert r.json()["status"] == "cancelled"
    # The cancel's notice ended it, not the long-poll's periodic re-read (a safety net
    # for lost notices, every RECHECK seconds).
    assert time.monotonic() - started < RECHECK
    # A match's notice too: both long-polls end with their seats.
    a = await _ticket(http, player="notice-a", queue="duel")
    started = time.monotonic()
    polls = [asyncio.create_task(http.get(f"/tickets/{a['id']}/wait",
                                          params={"timeout": 25}))]
    await asyncio.sleep(0.3)
    b = await _ticket(http, player="notice-b", queue="duel")
    polls.append(asyncio.create_task(http.get(f"/tickets/{b['id']}/wait",
                                              params={"timeout": 25})))
    views = [r.json() for r in await asyncio.wait_for(asyncio.gather(*polls), 10)]
    assert [v["status"] for v in views] == ["matched", "matched"]
    assert views[0]["match_id"] == views[1]["match_id"]
    assert time.monotonic() - started < RECHECK
