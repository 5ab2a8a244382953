"""The matchmaker without --secret and --token-key (open mode): the real `stadium matchmaker`
and `stadium relay` on a real Redis. Player tokens cannot be checked, so anyone queues, reads,
waits on and cancels tickets as any player, and the process warns so at start; seats carry
no join token and anyone gets one again; a 409 names a waiting ticket to the server key only;
results still need the server key. With --signing-key alone, seats are signed and a fresh
one goes to the server key only."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from loadtest.processes import ServiceProcess, start_service
from stadium.redis_server import EmbeddedRedis
from stadium_client import MatchmakerClient, MatchmakerError, Room
from tests.queues import queue, queues_file

KEY = "open-backend-key"
SERVER = {"X-API-Key": KEY}
JUNK = {"Authorization": "Bearer not-a-player-token"}  # not checked, so not refused
NOT_CHECKED = "no --secret or --token-key: player tokens are not checked"
QUEUES = [queue("duel"), queue("trio", 3)]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="module")
def queues(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return queues_file(tmp_path_factory.mktemp("open"), *QUEUES)


@pytest.fixture(scope="module")
def stack(redis_url: str, queues: Path) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """A relay that admits anyone and a matchmaker with a server key but nothing to check
    player tokens with or sign seats with."""
    relay = start_service("relay", "--redis-url", redis_url)
    mm = start_service("matchmaker", "--redis-url", redis_url, "--api-key", KEY,
                       "--queues", str(queues), "--match-interval", "0.05", "--lease-ttl", "1")
    try:
        yield relay, mm
    finally:
        mm.stop()
        relay.stop(signal.SIGKILL)


def code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, str(r.json()["error"]["code"])


async def _matched(http: httpx.AsyncClient, player: str, queue: str = "duel"
                   ) -> dict[str, Any]:
    r = await http.post("/tickets", json={"player": player, "queue": queue})
    assert r.status_code == 201, r.text
    ticket = r.json()
    while ticket["status"] == "waiting":
        ticket = (await http.get(f"/tickets/{ticket['id']}/wait",
                                 params={"timeout": 10})).json()
    assert ticket["status"] == "matched", ticket
    return dict(ticket)


async def test_it_warns_at_start_that_nothing_is_checked_or_signed(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    log = mm.log()
    assert NOT_CHECKED in log and "anyone may queue, read and cancel tickets" in log
    assert "no --secret or --signing-key: seats carry no join token" in log
    assert "no --api-key" not in log  # results are not open: it has a server key
    # the document asks for no credential on the ticket routes, and lists no 401 for them
    async with httpx.AsyncClient() as http:
        document = (await http.get(f"{mm.url}/openapi.json")).json()
    for path in ("/tickets", "/tickets/{ticket_id}", "/matches/{match_id}/seat"):
        for operation in document["paths"][path].values():
            assert "401" not in operation["responses"], path
            assert "security" not in operation, path
    assert "429" not in document["paths"]["/matches/{match_id}/seat"]["post"]["responses"]


async def test_anyone_queues_reads_waits_on_and_cancels_any_players_ticket(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    async with httpx.AsyncClient(base_url=mm.url) as http:
        # no credential, or a token nobody checks: a ticket for any player, a party without
        # a party token
        r = await http.post("/tickets", json={"player": "ann", "queue": "trio"})
        assert r.status_code == 201, r.text
        ann = r.json()["id"]
        r = await http.post("/tickets", json={"player": "lead", "queue": "trio",
                                              "party": ["m1", "m2"]}, headers=JUNK)
        assert r.status_code == 201 and r.json()["players"] == ["lead", "m1", "m2"], r.text
        party = r.json()["id"]
        for headers in ({}, JUNK):
            r = await http.get(f"/tickets/{ann}", headers=headers)
            assert r.status_code == 200 and r.json()["players"] == ["ann"]
            r = await http.get(f"/tickets/{party}/wait", params={"timeout": 0.2},
                               headers=headers)
            assert r.status_code == 200 and r.json()["status"] == "waiting"
        assert code(await http.get("/tickets/trio." + "0" * 32)) == (404, "unknown_ticket")
        r = await http.delete(f"/tickets/{ann}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        r = await http.delete(f"/tickets/{party}", headers=JUNK)
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
    # the Python SDK, with no token at all
    async with MatchmakerClient(mm.url) as client:
        ticket = await client.create_ticket("trio", "sdk-player")
        assert (await client.ticket(ticket["id"]))["status"] == "waiting"
        assert (await client.cancel(ticket["id"]))["status"] == "cancelled"


async def test_already_queued_names_the_ticket_to_the_server_key_only(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    """Anyone may say they are vic: only the server key is told which ticket vic waits in
    (a stranger who knew it could read and cancel it)."""
    _, mm = stack
    async with httpx.AsyncClient(base_url=mm.url) as http:
        r = await http.post("/tickets", json={"player": "vic", "queue": "trio",
                                              "party": ["pal"]})
        ticket = r.json()["id"]
        for body in ({"player": "vic", "queue": "duel"}, {"player": "pal", "queue": "duel"},
                     {"player": "eve", "queue": "trio", "party": ["vic"]}):
            for headers in ({}, JUNK):
                r = await http.post("/tickets", json=body, headers=headers)
                assert code(r) == (409, "already_queued") and ticket not in r.text, r.text
        r = await http.post("/tickets", json={"player": "vic", "queue": "duel"},
                            headers=SERVER)
        assert code(r) == (409, "already_queued") and ticket in r.text
        # a member of vic's party is not told the leader's ticket, even by the server key
        r = await http.post("/tickets", json={"player": "pal", "queue": "duel"},
                            headers=SERVER)
        assert code(r) == (409, "already_queued") and ticket not in r.text
        await http.delete(f"/tickets/{ticket}")
    assert ticket not in mm.log()


async def test_seats_carry_no_token_and_anyone_gets_one_again(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    async with httpx.AsyncClient(base_url=mm.url, timeout=30) as http:
        al, bo = await asyncio.gather(_matched(http, "al"), _matched(http, "bo"))
        seat = al["seats"]["al"]
        assert seat["token"] is None and bo["seats"]["bo"]["token"] is None
        assert seat["match_id"] == bo["seats"]["bo"]["match_id"]
        path = f"/matches/{seat['match_id']}/seat"
        # no signer: a fresh seat needs no credential, but names its player; it is not
        # limited per minute, there being no token to mint
        assert code(await http.post(path, json={})) == (422, "player_required")
        for _ in range(15):
            r = await http.post(path, json={"player": "al"})
            assert r.status_code == 200, r.text
            fresh = r.json()
            assert fresh["token"] is None
            assert {k: fresh[k] for k in ("player", "team", "room_id", "url")} == \
                {k: seat[k] for k in ("player", "team", "room_id", "url")}
        r = await http.post(path, json={"player": "stranger"})
        assert code(r) == (404, "unknown_match")
    async with MatchmakerClient(mm.url) as client:
        again = await client.fresh_seat(seat["match_id"], "bo")
        assert again.token is None and again.player == "bo"
        # the relay admits anyone, so the seat without a token opens the room
        a = await Room.connect(seat["url"], None)
        b = await again.join()
        try:
            await a.send("gg")
            assert await asyncio.wait_for(b.recv(), 5) == "gg"
        finally:
            await a.close()
            await b.close()


async def test_results_need_the_server_key(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    async with httpx.AsyncClient(base_url=mm.url, timeout=30) as http:
        cy, _ = await asyncio.gather(_matched(http, "cy"), _matched(http, "di"))
        path = f"/matches/{cy['match_id']}/result"
        for headers in ({}, JUNK, {"X-API-Key": "guess"}):
            r = await http.post(path, json={"ranks": [1, 2]}, headers=headers)
            assert code(r) == (401, "bad_api_key"), headers
        r = await http.post(path, json={"ranks": [1, 2]}, headers=SERVER)
        assert r.status_code == 200 and set(r.json()["ratings"]) == {"cy", "di"}, r.text
        assert code(await http.post(path, json={"ranks": [2, 1]}, headers=SERVER)) == \
            (409, "result_reported")


async def test_with_a_signing_key_alone_a_fresh_seat_is_the_server_keys(
        redis_url: str, stack: tuple[ServiceProcess, ServiceProcess], tmp_path: Path) -> None:
    """--signing-key without --secret or --token-key: seats are signed, player tokens are
    still not checked, so a fresh signed join token goes to the server key only."""
    (tmp_path / "mm.key").write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    # the shipped queues: the open matchmaker above (duel, trio only) never seats these
    mm = start_service("matchmaker", "--redis-url", redis_url, "--api-key", KEY,
                       "--signing-key", str(tmp_path / "mm.key"), "--match-interval", "0.05",
                       "--lease-ttl", "1")
    try:
        assert NOT_CHECKED in mm.log()
        assert "seats carry no join token" not in mm.log()
        async with httpx.AsyncClient(base_url=mm.url, timeout=30) as http:
            ed, _ = await asyncio.gather(_matched(http, "ed", "1v1"),
                                         _matched(http, "fay", "1v1"))
            assert ed["seats"]["ed"]["token"] is not None
            path = f"/matches/{ed['match_id']}/seat"
            for headers in ({}, JUNK, {"X-API-Key": "guess"}):
                r = await http.post(path, json={"player": "ed"}, headers=headers)
                assert code(r) == (401, "missing_token"), headers
                assert "eyJ" not in r.text
            r = await http.post(path, json={"player": "ed"}, headers=SERVER)
            assert r.status_code == 200 and r.json()["token"] is not None, r.text
            document = (await http.get("/openapi.json")).json()
        responses = document["paths"]["/matches/{match_id}/seat"]["post"]["responses"]
        assert "missing_token" in responses["401"]["description"]
        async with MatchmakerClient(mm.url) as client:
            with pytest.raises(MatchmakerError) as refused:
                await client.fresh_seat(ed["match_id"], "ed")
            assert (refused.value.status, refused.value.code) == (401, "missing_token")
    finally:
        mm.stop()
