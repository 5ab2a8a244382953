"""Ticket requests and match results with an Idempotency-Key take effect once, however often
they are retried: also when Redis did the write and its answer was lost, so the matchmaker
answered 503 (a TCP link between the matchmaker and a real Redis that drops Redis' answer to
one chosen request, as a network fault would)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from loadtest.processes import start_service
from matchmaker import keys, scripts
from stadium import tokens
from stadium.redis_server import EmbeddedRedis
from stadium_client import MatchmakerClient
from tests.queues import queue, queues_file

SECRET = "once-secret"
KEY = "once-server-key"
SERVER = {"X-API-Key": KEY}
QUEUES = [queue("duel"), queue("duo", 2)]


class LossyLink:
    """A TCP link to Redis that passes everything both ways, except for the next request
    holding a chosen needle: after `lose(needle)` Redis' answers on that request's
    connection are dropped (the request is done, its client never hears of it); after
    `delay(needle, s1, s2...)` the next requests holding it reach Redis s1, s2... seconds
    late. `met` is set when the first comes by."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.needle: bytes | None = None
        self.late: list[float] = []
        self.met = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.links:
            task.cancel()
        await asyncio.gather(*self.links, return_exceptions=True)

    def lose(self, needle: bytes) -> None:
        self.needle, self.late = needle, []
        self.met.clear()

    def delay(self, needle: bytes, *seconds: float) -> None:
        self.needle, self.late = needle, list(seconds)
        self.met.clear()

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
                    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.links.add(task)
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self.port)
        muted = False

        async def up() -> None:
            nonlocal muted
            while data := await client_r.read(65536):
                if self.needle is not None and self.needle in data:
                    self.met.set()
                    if self.late:
                        late = self.late.pop(0)
                        if not self.late:
                            self.needle = None
                        await asyncio.sleep(late)
                    else:
                        self.needle, muted = None, True
                redis_w.write(data)
                await redis_w.drain()

        async def down() -> None:
            while data := await redis_r.read(65536):
                if not muted:
                    client_w.write(data)
                    await client_w.drain()

        try:
            await asyncio.gather(up(), down())
        except OSError:
            pass
        finally:
            self.links.discard(task)
            for w in (client_w, redis_w):
                w.close()


@contextlib.asynccontextmanager
async def _stack(tmp_path: Path) -> AsyncIterator[tuple[LossyLink, httpx.AsyncClient]]:
    """A relay on a real Redis, and a matchmaker that reaches that Redis through a LossyLink
    and gives up on Redis after half a second. The matchmaker's scripts are loaded (as in a
    Redis that has served it a while): the request whose answer is lost runs its script."""
    queues = queues_file(tmp_path, *QUEUES)
    with EmbeddedRedis() as redis:
        direct = aioredis.from_url(redis.url)
        for script in (scripts.CREATE, scripts.SWAP, scripts.RESULT, scripts.RATE):
            await direct.script_load(script)
        await direct.aclose()
        relay = start_service("relay", "--redis-url", redis.url, "--secret", SECRET)
        link = LossyLink(redis.port)
        try:
            async with link as lossy_url:
                # in a thread: this loop carries the link the matchmaker starts through
                mm = await asyncio.to_thread(
                    start_service, "matchmaker", "--redis-url", lossy_url, "--secret", SECRET,
                    "--api-key", KEY, "--queues", str(queues), "--match-interval", "0.05",
                    "--lease-ttl", "1", "--redis-timeout", "0.5")
                try:
                    async with httpx.AsyncClient(base_url=mm.url, timeout=10) as http:
                        yield link, http
                finally:
                    await asyncio.to_thread(mm.stop)
        finally:
            relay.stop()


def _as(player: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {tokens.sign_player(SECRET, player=player)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def _ticket(player: str, **more: Any) -> dict[str, Any]:
    return {"queue": "duel", "player": player, **more}


async def _matched(http: httpx.AsyncClient) -> str:
    """The id of a match between ann and bob."""
    ids = []
    for p in ("ann", "bob"):
        r = await http.post("/tickets", json=_ticket(p), headers=_as(p))
        assert r.status_code == 201, r.text
        ids.append((p, r.json()["id"]))
    for p, tid in ids:
        while (t := (await http.get(f"/tickets/{tid}/wait", params={"timeout": 5},
                                    headers=_as(p))).json())["status"] == "waiting":
            pass
        assert t["status"] == "matched", t
    return str(t["match_id"])


async def _waiting(link: LossyLink, queue: str = "duel") -> int:
    """Tickets waiting in the queue, read from Redis itself."""
    direct = aioredis.from_url(f"redis://127.0.0.1:{link.port}")
    try:
        return int(await direct.zcard(keys.waiting(queue)))
    finally:
        await direct.aclose()


async def _games(http: httpx.AsyncClient, player: str) -> int:
    return int((await http.get(f"/players/{player}")).json()["games"])


async def test_a_retried_ticket_request_with_its_key_makes_one_ticket(tmp_path: Path) -> None:
    async with _stack(tmp_path) as (_, http):
        first = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann", "t-1"))
        again = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann", "t-1"))
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        tid = first.json()["id"]
        # the same key with another request is refused, and writes nothing
        other = await http.post("/tickets", json=_ticket("ann", regions={"eu": 20}),
                                headers=_as("ann", "t-1"))
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        # keys are each player's own: bob's "t-1" is his ticket, not ann's
        bobs = await http.post("/tickets", json=_ticket("bob"), headers=_as("bob", "t-1"))
        assert bobs.status_code == 201 and bobs.json()["id"] != tid
        await http.delete(f"/tickets/{bobs.json()['id']}", headers=_as("bob"))
        # without the key, ann is still queued once
        plain = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann"))
        assert plain.status_code == 409 and tid in plain.json()["error"]["message"]
        # after a cancel the retry answers the cancelled ticket and queues nobody again
        assert (await http.delete(f"/tickets/{tid}", headers=_as("ann"))).status_code == 200
        late = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann", "t-1"))
        assert late.status_code == 201
        assert (late.json()["id"], late.json()["status"]) == (tid, "cancelled")
        fresh = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann"))
        assert fresh.status_code == 201 and fresh.json()["id"] != tid
        for bad in (b"", b"with space", b"x" * 256):
            r = await http.post("/tickets", json=_ticket("cid"), headers={
                **_as("cid"), "Idempotency-Key": bad})
            assert r.status_code == 422, bad


async def test_a_ticket_request_whose_answer_was_lost_is_not_made_again(
        tmp_path: Path) -> None:
    async with _stack(tmp_path) as (link, http):
        link.lose(b'"attributes":')  # the ticket's data, written by the create script only
        lost = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann", "t-9"))
        assert lost.status_code == 503 and link.met.is_set()
        assert await _waiting(link) == 1  # the ticket was made
        retry = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann", "t-9"))
        assert retry.status_code == 201, retry.text
        assert retry.json()["status"] == "waiting"
        plain = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann"))
        assert plain.status_code == 409  # one ticket: the one the retry answered
        assert retry.json()["id"] in plain.json()["error"]["message"]


async def test_a_ticket_request_stopped_between_its_steps_is_finished_by_its_retry(
        tmp_path: Path) -> None:
    """The answer lost after the player was marked as waiting in the new ticket, before the
    ticket was stored: the retry under the key makes that ticket; a request without the key
    meanwhile is refused (the player is being queued), not queued twice."""
    async with _stack(tmp_path) as (link, http):
        link.lose(b"mm:player:ann")  # the hold, the first step
        lost = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann", "t-5"))
        assert lost.status_code == 503 and link.met.is_set()
        assert await _waiting(link) == 0
        plain = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann"))
        assert plain.status_code == 409 and plain.json()["error"]["code"] == "already_queued"
        retry = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann", "t-5"))
        assert retry.status_code == 201, retry.text
        assert await _waiting(link) == 1
        again = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann", "t-5"))
        assert again.json()["id"] == retry.json()["id"] and await _waiting(link) == 1


async def test_a_retry_while_the_first_attempt_is_still_under_way_makes_one_ticket(
        tmp_path: Path) -> None:
    """The first attempt holds the party and is slow to store its ticket; a retry under the
    same key starts meanwhile, and its own store arrives after the first's. One ticket, both
    answered with it, the party held."""
    async with _stack(tmp_path) as (link, http):
        duo = {"queue": "duo", "player": "ann", "party": ["bob"]}
        once = {**SERVER, "Idempotency-Key": "slow-first"}
        link.delay(b'"attributes":', 0.2, 0.4)  # each attempt's ticket, stored late
        first = asyncio.create_task(http.post("/tickets", json=duo, headers=once))
        await link.met.wait()
        retry = await http.post("/tickets", json=duo, headers=once)
        answers = [await first, retry]
        assert [r.status_code for r in answers] == [201, 201], [r.text for r in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        assert await _waiting(link, "duo") == 1
        for p in ("ann", "bob"):  # both still held by that ticket
            r = await http.post("/tickets", json=_ticket(p), headers=_as(p))
            assert r.status_code == 409, r.text


async def test_the_python_sdk_retries_a_ticket_request_under_one_key(tmp_path: Path) -> None:
    async with _stack(tmp_path) as (link, http):
        client = MatchmakerClient(str(http.base_url), token=tokens.sign_player(SECRET,
                                                                              player="ann"))
        link.lose(b'"attributes":')
        ticket = await client.create_ticket("duel", "ann")
        assert link.met.is_set() and ticket["status"] == "waiting"
        assert await _waiting(link) == 1
        plain = await http.post("/tickets", json=_ticket("ann"), headers=_as("ann"))
        assert plain.status_code == 409 and ticket["id"] in plain.json()["error"]["message"]
        await client.close()


async def test_a_retried_result_with_its_key_rates_once(tmp_path: Path) -> None:
    async with _stack(tmp_path) as (_, http):
        match_id = await _matched(http)
        url = f"/matches/{match_id}/result"
        first = await http.post(url, json={"ranks": [1, 2]},
                                headers={**SERVER, "Idempotency-Key": "r-1"})
        again = await http.post(url, json={"ranks": [1, 2]},
                                headers={**SERVER, "Idempotency-Key": "r-1"})
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert await _games(http, "ann") == await _games(http, "bob") == 1
        cases: list[tuple[dict[str, str], list[int], int]] = [
            ({"Idempotency-Key": "r-1"}, [2, 1], 422),  # the key, another result
            ({"Idempotency-Key": "r-2"}, [1, 2], 409),  # another key
            ({}, [1, 2], 409)]  # no key
        for headers, ranks, status in cases:
            r = await http.post(url, json={"ranks": ranks}, headers={**SERVER, **headers})
            assert r.status_code == status, r.text
        assert await _games(http, "ann") == await _games(http, "bob") == 1
        assert (await http.get(f"/matches/{match_id}")).json()["result"] == {"ranks": [1, 2]}


@pytest.mark.parametrize("lost", [b'{"ranks"', b'"match_id"'], ids=["result", "ratings"])
async def test_a_result_whose_answer_was_lost_is_finished_once_by_its_retry(
        tmp_path: Path, lost: bytes) -> None:
    """The answer lost after the result was recorded (ratings not yet updated), or after the
    ratings were updated: a retry under the key finishes what is missing, nothing twice."""
    async with _stack(tmp_path) as (link, http):
        match_id = await _matched(http)
        url = f"/matches/{match_id}/result"
        once = {**SERVER, "Idempotency-Key": "r-lost"}
        link.lose(lost)
        r = await http.post(url, json={"ranks": [2, 1]}, headers=once)
        assert r.status_code == 503 and link.met.is_set()
        assert (await http.get(f"/matches/{match_id}")).json()["result"] == {"ranks": [2, 1]}
        # the lost answer was the result's (no ratings yet), or the ratings' (made)
        assert await _games(http, "ann") == (0 if lost == b'{"ranks"' else 1)
        retry = await http.post(url, json={"ranks": [2, 1]}, headers=once)
        assert retry.status_code == 200, retry.text
        ratings = retry.json()["ratings"]
        assert ratings["bob"]["mu"] > ratings["ann"]["mu"]
        assert await _games(http, "ann") == await _games(http, "bob") == 1
        assert (await http.post(url, json={"ranks": [2, 1]}, headers=once)).json() == \
            retry.json()
        assert await _games(http, "ann") == await _games(http, "bob") == 1


async def test_a_result_whose_ratings_were_never_made_is_finished_by_the_next_post(
        tmp_path: Path) -> None:
    """A result recorded without its key (the answer lost before the ratings): the next post
    is refused 409, and the ratings of the first result are made, once."""
    async with _stack(tmp_path) as (link, http):
        match_id = await _matched(http)
        url = f"/matches/{match_id}/result"
        link.lose(b'{"ranks"')
        assert (await http.post(url, json={"ranks": [1, 2]}, headers=SERVER)).status_code == 503
        assert await _games(http, "ann") == 0
        r = await http.post(url, json={"ranks": [2, 1]}, headers=SERVER)
        assert r.status_code == 409 and r.json()["error"]["code"] == "result_reported"
        assert await _games(http, "ann") == await _games(http, "bob") == 1
        ann = (await http.get("/players/ann")).json()
        bob = (await http.get("/players/bob")).json()
        assert ann["mu"] > bob["mu"]  # the first result's ranks: ann won


async def test_a_result_recorded_by_an_older_version_is_not_rated_again(tmp_path: Path) -> None:
    """Results stored before ratings were recorded once (no `rating` note): a later post is
    refused and rates nobody, as those results were rated when they were posted."""
    async with _stack(tmp_path) as (link, http):
        match_id = await _matched(http)
        direct = aioredis.from_url(f"redis://127.0.0.1:{link.port}")
        await direct.hset(keys.match("duel", match_id), "result", '{"ranks": [1, 2]}')
        await direct.aclose()
        for headers in ({}, {"Idempotency-Key": "late"}):
            r = await http.post(f"/matches/{match_id}/result", json={"ranks": [1, 2]},
                                headers={**SERVER, **headers})
            assert r.status_code == 409, r.text
        assert await _games(http, "ann") == await _games(http, "bob") == 0
