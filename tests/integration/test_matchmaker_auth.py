"""Tickets and seats belong to their player: the real `stadium matchmaker` and `stadium relay`
on a real Redis, called as players with their tokens, as strangers, and as a game backend
with the server key. Nobody queues as another player, reads, waits on or cancels another's
ticket, or learns another's ticket id; a seated player whose join token expired gets back
in with a fresh one, as often as --fresh-seats-per-minute allows; `--dev-auth` mints player
tokens only when it is given."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import InvalidStatus

from loadtest.processes import ServiceProcess, start_service
from stadium import tokens
from stadium.redis_server import EmbeddedRedis
from stadium_client import MatchmakerClient, MatchmakerError, Room
from tests.queues import queue, queues_file

SECRET = "player-secret"
KEY = "backend-key"
SERVER = {"X-API-Key": KEY}
SEAT_TTL = 1.5
QUEUES = [queue("duel"), queue("trio", 3)]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    queues = queues_file(tmp_path_factory.mktemp("auth"), *QUEUES)
    # no leeway on the relay: a seat's token is refused as soon as it has expired
    relay = start_service("relay", "--redis-url", redis_url, "--secret", SECRET,
                          "--token-leeway", "0")
    mm = start_service("matchmaker", "--redis-url", redis_url, "--secret", SECRET,
                       "--api-key", KEY, "--queues", str(queues), "--match-interval", "0.05",
                       "--lease-ttl", "1", "--seat-ttl", str(SEAT_TTL), "--seat-grace", "0.5")
    try:
        yield relay, mm
    finally:
        mm.stop()
        relay.stop(signal.SIGKILL)


def bearer(player: str, **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.sign_player(SECRET, player=player, **kw)}"}


def code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, str(r.json()["error"]["code"])


async def _party_ticket(http: httpx.AsyncClient, leader: str, mate: str) -> str:
    """The id of a trio ticket `leader` queued with `mate`, with a party token of theirs."""
    r = await http.post("/tickets", json={
        "player": leader, "queue": "trio", "party": [mate],
        "party_token": tokens.sign_party(SECRET, leader=leader, members=[mate])},
        headers=bearer(leader))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _matched(http: httpx.AsyncClient, ticket: dict[str, Any], player: str
                   ) -> dict[str, Any]:
    while ticket["status"] == "waiting":
        r = await http.get(f"/tickets/{ticket['id']}/wait", params={"timeout": 10},
                           headers=bearer(player))
        ticket = r.json()
    assert ticket["status"] == "matched", ticket
    return ticket


async def test_queueing_needs_the_players_own_token_or_the_server_key(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    ann = {"player": "ann", "queue": "trio"}
    wrong_key = tokens.sign_player("another secret", player="ann")
    join = tokens.sign(SECRET, room_type="broadcast", room_id="r", player="ann")
    async with httpx.AsyncClient(base_url=mm.url) as http:
        refused = [
            ({}, (401, "missing_token")),
            ({"Authorization": "Basic YW5uOng="}, (401, "missing_token")),
            ({"Authorization": "Bearer not-a-jwt"}, (401, "malformed")),
            ({"Authorization": f"Bearer {wrong_key}"}, (401, "bad_signature")),
            ({"Authorization": f"Bearer {join}"}, (401, "wrong_kind")),
            (bearer("ann", ttl=1, now=time.time() - 60), (401, "expired")),
            ({"X-API-Key": "guess"}, (401, "bad_api_key")),
            (bearer("mallory"), (403, "wrong_player")),
        ]
        for headers, expected in refused:
            r = await http.post("/tickets", json=ann, headers=headers)
            assert code(r) == expected, (headers, r.text)
            assert "eyJ" not in r.text  # no token comes back
        r = await http.post("/tickets", json=ann, headers=bearer("ann"))
        assert r.status_code == 201, r.text
        # the server key (a game backend) queues anyone, as X-API-Key or a bearer token
        for i, headers in enumerate((SERVER, {"Authorization": f"Bearer {KEY}"})):
            r = await http.post("/tickets", json={"player": f"npc-{i}",
                                                  "queue": "trio"}, headers=headers)
            assert r.status_code == 201, r.text


async def test_a_party_needs_its_members_agreement(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    body = {"player": "lead", "queue": "trio", "party": ["m1", "m2"]}
    agreed = tokens.sign_party(SECRET, leader="lead", members=["m1", "m2", "m3"])
    async with httpx.AsyncClient(base_url=mm.url) as http:
        for party_token in (None, "junk",
                            tokens.sign_party(SECRET, leader="other", members=["m1", "m2"]),
                            tokens.sign_party(SECRET, leader="lead", members=["m1"]),
                            tokens.sign_party(SECRET, leader="lead", members=["m1", "m2"],
                                              ttl=1, now=time.time() - 60),
                            tokens.sign_player(SECRET, player="lead")):
            r = await http.post("/tickets", json={**body, "party_token": party_token},
                                headers=bearer("lead"))
            assert code(r) == (403, "party_not_agreed"), r.text
        # a member cannot queue the party with the leader's agreement as if they led it
        r = await http.post("/tickets", json={"player": "m1", "queue": "trio", "party": ["m2"],
                                              "party_token": agreed}, headers=bearer("m1"))
        assert code(r) == (403, "party_not_agreed")
        r = await http.post("/tickets", json={**body, "party_token": agreed},
                            headers=bearer("lead"))
        assert r.status_code == 201 and r.json()["players"] == ["lead", "m1", "m2"], r.text
        # the server key says who plays together without a party token
        r = await http.post("/tickets", json={"player": "b-lead", "queue": "trio",
                                              "party": ["b-m1"]}, headers=SERVER)
        assert r.status_code == 201, r.text


async def test_a_ticket_is_read_waited_on_and_cancelled_by_its_player_only(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    async with httpx.AsyncClient(base_url=mm.url) as http:
        ticket = await _party_ticket(http, "owner", "mate")
        nowhere = "trio." + "0" * 32
        routes: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", "/tickets/{}", {}), ("GET", "/tickets/{}/wait", {"timeout": 0.2}),
            ("DELETE", "/tickets/{}", {})]
        for method, path, params in routes:
            r = await http.request(method, path.format(ticket), params=params)
            assert code(r) == (401, "missing_token"), (method, path)
            # someone else's ticket (the party's member's too) is one that does not exist
            missing = await http.request(method, path.format(nowhere), params=params,
                                         headers=bearer("owner"))
            assert code(missing) == (404, "unknown_ticket")
            for other in ("mallory", "mate"):
                r = await http.request(method, path.format(ticket), params=params,
                                       headers=bearer(other))
                assert (r.status_code, r.json()) == (404, missing.json()), (method, other)
                assert ticket not in r.text
        assert (await http.get(f"/tickets/{ticket}", headers=SERVER)).json()["status"] == \
            "waiting"
        r = await http.get(f"/tickets/{ticket}/wait", params={"timeout": 0.2},
                           headers=bearer("owner"))
        assert r.json()["status"] == "waiting"
        r = await http.delete(f"/tickets/{ticket}", headers=bearer("owner"))
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        # the server key cancels any ticket
        r = await http.post("/tickets", json={"player": "owner", "queue": "trio"},
                            headers=bearer("owner"))
        r = await http.delete(f"/tickets/{r.json()['id']}", headers=SERVER)
        assert r.json()["status"] == "cancelled"


async def test_already_queued_names_the_callers_own_ticket_only(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    async with httpx.AsyncClient(base_url=mm.url) as http:
        ticket = await _party_ticket(http, "vic", "pal")
        # vic again: their own ticket, named
        r = await http.post("/tickets", json={"player": "vic", "queue": "duel"},
                            headers=bearer("vic"))
        assert code(r) == (409, "already_queued") and ticket in r.text
        # pal waits in vic's ticket: pal is told so, without its id
        r = await http.post("/tickets", json={"player": "pal", "queue": "duel"},
                            headers=bearer("pal"))
        assert code(r) == (409, "already_queued") and ticket not in r.text
        # a stranger queueing vic (refused) or vic's party (refused) learns nothing either
        for body, who in (({"player": "vic", "queue": "duel"}, "eve"),
                          ({"player": "eve", "queue": "trio", "party": ["vic"]}, "eve")):
            r = await http.post("/tickets", json=body, headers=bearer(who))
            assert r.status_code in (403, 409) and ticket not in r.text, r.text
        # nor does a long list of requests: no body carries it unless it is vic's
        await http.delete(f"/tickets/{ticket}", headers=bearer("vic"))
    assert ticket not in mm.log()  # nor does any log line
    assert "eyJ" not in mm.log()  # nor any token


async def test_a_seated_player_gets_a_fresh_join_token_for_the_same_seat(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    relay, mm = stack
    async with httpx.AsyncClient(base_url=mm.url, timeout=30) as http:
        made = [(await http.post("/tickets", json={"player": p, "queue": "duel"},
                                 headers=bearer(p))).json() for p in ("sat", "gone")]
        sat, gone = await asyncio.gather(*(_matched(http, t, p) for t, p in
                                           zip(made, ("sat", "gone"), strict=True)))
        seat = sat["seats"]["sat"]
        match_id = seat["match_id"]
        path = f"/matches/{match_id}/seat"
        first = await Room.connect(seat["url"], seat["token"])  # sat takes the seat
        try:
            r = await http.post(path, json={}, headers=bearer("sat"))
            assert r.status_code == 200, r.text
            fresh = r.json()
            same = ("player", "team", "match_id", "room_type", "room_id", "url")
            assert {k: fresh[k] for k in same} == {k: seat[k] for k in same}
            claims = tokens.verify(SECRET, fresh["token"], room_type=seat["room_type"],
                                   room_id=seat["room_id"])
            assert (claims.player, claims.seat) == ("sat", "sat")
            assert dict(claims.extra) == {"team": seat["team"], "match": match_id}
            # who may ask for it: the player, or the server key naming them
            assert code(await http.post(path, json={})) == (401, "missing_token")
            assert code(await http.post(path, json={"player": "sat"}, headers=bearer("gone"))
                        ) == (403, "wrong_player")
            assert code(await http.post(path, json={}, headers=bearer("stranger"))
                        ) == (404, "unknown_match")
            nowhere = await http.post("/matches/duel.0000000000000000/seat", json={},
                                      headers=bearer("sat"))
            assert code(nowhere) == (404, "unknown_match")
            assert code(await http.post(path, json={}, headers=SERVER)) == \
                (422, "player_required")
            r = await http.post(path, json={"player": "sat"}, headers=SERVER)
            assert r.status_code == 200 and r.json()["player"] == "sat"

            # The seat's token expires; the relay refuses it, a fresh one gets sat back in.
            await asyncio.sleep(max(0.0, seat["expires"] - time.time()) + 1.5)
            await first.close()
            with pytest.raises(InvalidStatus) as refused:
                await Room.connect(seat["url"], seat["token"])
            assert refused.value.response.status_code == 401
            async with MatchmakerClient(mm.url, token=tokens.sign_player(
                    SECRET, player="sat")) as client:
                seat_obj = MatchmakerClient.seats(sat)["sat"]
                back = await client.join(seat_obj)  # refreshes by itself on 401 expired
                await back.close()
                # gone never took the seat: after the seat report it is released
                async def reported() -> None:
                    while (await client.match(match_id))["seats"]["status"] == "seating":
                        await asyncio.sleep(0.1)
                await asyncio.wait_for(reported(), 10)
                async with MatchmakerClient(mm.url, token=tokens.sign_player(
                        SECRET, player="gone")) as gone_client:
                    with pytest.raises(MatchmakerError) as released:
                        await gone_client.fresh_seat(match_id)
                    assert released.value.code == "seat_released"
                assert gone["status"] == "matched"
            # once the result is in, the match's seats are closed
            r = await http.post(f"/matches/{match_id}/result", json={"ranks": [1, 2]},
                                headers=SERVER)
            assert r.status_code == 200, r.text
            assert code(await http.post(path, json={}, headers=bearer("sat"))) == \
                (409, "match_over")
        finally:
            await first.close()


async def test_dev_auth_mints_player_tokens_only_when_turned_on(
        redis_url: str, stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{mm.url}/dev/player-token", json={"player": "dev"})
        assert code(r) == (404, "not_found")
        assert "/dev/player-token" not in (await http.get(f"{mm.url}/openapi.json")).text
    dev = start_service("matchmaker", "--redis-url", redis_url, "--secret", SECRET,
                        "--dev-auth")
    try:
        assert "--dev-auth: POST /dev/player-token" in dev.log()
        async with httpx.AsyncClient(base_url=dev.url) as http:
            r = await http.post("/dev/player-token", json={"player": "dev-1"})
            assert r.status_code == 200, r.text
            minted = r.json()
            assert tokens.verify_player(SECRET, minted["token"]).player == "dev-1"
            assert minted["expires"] > time.time() + 3000
            r = await http.post("/tickets", json={"player": "dev-1", "queue": "1v1"},
                                headers={"Authorization": f"Bearer {minted['token']}"})
            assert r.status_code == 201, r.text
            await http.delete(f"/tickets/{r.json()['id']}",
                              headers={"Authorization": f"Bearer {minted['token']}"})
            r = await http.post("/dev/player-token", json={"player": "a b"})
            assert code(r) == (400, "bad_player")
    finally:
        dev.stop()


async def test_fresh_seats_are_limited_per_player_across_processes(
        redis_url: str, stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    """--fresh-seats-per-minute 3 on two matchmakers sharing one Redis: a player's 4th fresh
    seat in the minute is refused wherever it is asked for; requests refused before their
    credential was accepted do not count, nor does the server key; other players go on."""
    args = ("--redis-url", redis_url, "--secret", SECRET, "--api-key", KEY,
            "--fresh-seats-per-minute", "3", "--match-interval", "0.05", "--lease-ttl", "1")
    one, two = start_service("matchmaker", *args), start_service("matchmaker", *args)
    try:
        async with httpx.AsyncClient(base_url=one.url, timeout=30) as http:
            made = [(await http.post("/tickets", json={"player": p, "queue": "1v1"},
                                     headers=bearer(p))).json() for p in ("rae", "sid")]
            rae, _ = await asyncio.gather(*(_matched(http, t, p) for t, p in
                                            zip(made, ("rae", "sid"), strict=True)))
        path = f"/matches/{rae['match_id']}/seat"

        async def seat(mm: ServiceProcess, headers: dict[str, str],
                       body: dict[str, str] | None = None) -> httpx.Response:
            async with httpx.AsyncClient(base_url=mm.url) as http:
                return await http.post(path, json=body or {}, headers=headers)

        # none of these gets past the credential check or the player check: none counts
        for headers, expected in [
                ({}, (401, "missing_token")),
                ({"Authorization": "Bearer not-a-jwt"}, (401, "malformed")),
                ({"Authorization": "Bearer " + tokens.sign_player("another secret",
                                                                   player="rae")},
                 (401, "bad_signature")),
                (bearer("rae", ttl=1, now=time.time() - 60), (401, "expired")),
                ({"X-API-Key": "guess"}, (401, "bad_api_key"))] * 2:
            assert code(await seat(one, headers)) == expected
        assert code(await seat(two, bearer("sid"), {"player": "rae"})) == (403, "wrong_player")
        # rae's own three, on either process, then the fourth is refused on either
        for mm in (one, two, one):
            r = await seat(mm, bearer("rae"))
            assert r.status_code == 200 and r.json()["player"] == "rae", r.text
        for mm in (two, one):
            r = await seat(mm, bearer("rae"))
            assert code(r) == (429, "rate_limited"), r.text
            assert 1 <= int(r.headers["Retry-After"]) <= 60
            assert "eyJ" not in r.text
        async with MatchmakerClient(two.url, token=tokens.sign_player(
                SECRET, player="rae")) as client:
            with pytest.raises(MatchmakerError) as limited:
                await client.fresh_seat(rae["match_id"])
            assert (limited.value.status, limited.value.code) == (429, "rate_limited")
        # the other player of the match, and the server key for rae, are not held back
        assert (await seat(two, bearer("sid"))).status_code == 200
        assert (await seat(one, SERVER, {"player": "rae"})).status_code == 200
        # the window is one minute from rae's first counted request, then starts over
        redis = aioredis.from_url(redis_url)
        try:
            assert 0 < await redis.pttl("mm:seat-rate:rae") <= 60_000
        finally:
            await redis.aclose()
        assert "429 rate_limited: rae asked for more than 3 fresh seats" in one.log() + two.log()
        async with httpx.AsyncClient() as http:
            document = (await http.get(f"{one.url}/openapi.json")).json()
        refused = document["paths"]["/matches/{match_id}/seat"]["post"]["responses"]["429"]
        assert "Retry-After" in refused["headers"]
        assert "eyJ" not in one.log() + two.log()
    finally:
        one.stop()
        two.stop()
