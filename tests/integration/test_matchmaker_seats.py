"""Seats not taken in time: a real relay records who joined each match in Redis, and the
real matchmaker, once a seat's token has expired (plus --seat-grace), reports who joined and
who did not, marks the no-shows' tickets, counts them, and the relay refuses their tokens."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import InvalidStatus

from loadtest.processes import ServiceProcess, start_service
from stadium import tokens
from stadium.redis_server import EmbeddedRedis
from stadium_client import MatchmakerClient, Room, RoomClosed, Seat

SECRET = "seat-secret"
SEAT_TTL = 1.0
# over the relay's 5 s token leeway (a token's whole-second expiry is rounded down, never
# past the seat's): a released seat's token is refused
GRACE = 5.5
OPEN_QUEUE = """
[queues.open]
teams = 2
team_size = 1
"""


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture(scope="module")
def stack(redis_url: str) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    relay = start_service("relay", "--redis-url", redis_url, "--secret", SECRET)
    mm = start_service("matchmaker", "--redis-url", redis_url, "--secret", SECRET,
                       "--seat-ttl", str(SEAT_TTL), "--seat-grace", str(GRACE),
                       "--match-interval", "0.05", "--lease-ttl", "1")
    try:
        yield relay, mm
    finally:
        mm.stop()
        relay.stop(signal.SIGKILL)


async def _until(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """The first truthy value of `check()`, polled; fails after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while not (value := await check()):
            await asyncio.sleep(0.05)
    return value


def _token(player: str) -> str:
    """The player's own token, as the game's backend gave it to them."""
    return tokens.sign_player(SECRET, player=player)


async def _matched(client: MatchmakerClient, queue: str, player: str,
                   party: list[str] | None = None) -> dict[str, Any]:
    party_token = tokens.sign_party(SECRET, leader=player, members=party) if party else None
    ticket = await client.create_ticket(queue, player, party=party, party_token=party_token,
                                        token=_token(player))
    while ticket["status"] == "waiting":
        ticket = await client.wait(ticket["id"], 10, token=_token(player))
    assert ticket["status"] == "matched", ticket
    return ticket


async def _reported(client: MatchmakerClient, match_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        match = await client.match(match_id)
        return match if match["seats"]["status"] != "seating" else None
    return dict(await _until(done))


async def _counter(service: ServiceProcess, name: str, queue: str | None = None) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{service.http}/metrics")).text
    labels = "" if queue is None else f'{{queue="{re.escape(queue)}"}}'
    found = re.search(rf"^{name}_total{labels} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_seats_not_taken_are_released_and_reported(
        redis_url: str, stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    async with MatchmakerClient(mm.url) as client:
        # Two 1v1 matches, formed one after the other so the pairs are known.
        ada, bob = await asyncio.gather(*(_matched(client, "1v1", p) for p in ("ada", "bob")))
        cy, dee = await asyncio.gather(*(_matched(client, "1v1", p) for p in ("cy", "dee")))
        seat = {p: client.seats(t)[p] for p, t in
                (("ada", ada), ("bob", bob), ("cy", cy), ("dee", dee))}
        lost = seat["ada"].match_id
        full = seat["cy"].match_id
        assert seat["bob"].match_id == lost and seat["dee"].match_id == full != lost

        # ada joins (two sockets, as from two tabs: the newer takes her seat); bob never
        # does; cy and dee both join.
        rooms: list[Room] = [await seat[p].join() for p in ("ada", "ada", "cy", "dee")]
        try:
            # Before the deadline the match is seating and shows who is in so far.
            async def ada_in() -> dict[str, Any] | None:
                m = await client.match(lost)
                return m if "ada" in m["seats"]["joined"] else None
            early = (await _until(ada_in))["seats"]
            assert early["status"] == "seating" and early["no_shows"] == []
            assert set(early["joined"]) == {"ada"}
            assert early["expires"] == pytest.approx(seat["ada"].expires)
            redis = aioredis.from_url(redis_url)
            try:  # the relay's record: player -> unix ms, kept a day
                joined = await redis.hgetall(f"stadium:match:{{{lost}}}:joined")
                assert set(joined) == {b"ada"}
                assert 0 < await redis.ttl(f"stadium:match:{{{lost}}}:joined") <= 86400
            finally:
                await redis.aclose()

            report = (await _reported(client, lost))["seats"]
            assert report["status"] == "incomplete"
            assert set(report["joined"]) == {"ada"} and report["no_shows"] == ["bob"]
            assert report["joined"]["ada"] <= seat["ada"].expires + 5
            seated = (await _reported(client, full))["seats"]
            assert seated["status"] == "seated"
            assert set(seated["joined"]) == {"cy", "dee"} and seated["no_shows"] == []

            # The no-show's ticket says so and keeps its seat; everyone else's is untouched.
            bob_now = await client.ticket(bob["id"], token=_token("bob"))
            assert bob_now["status"] == "no_show" and bob_now["no_shows"] == ["bob"]
            assert client.seats(bob_now)["bob"] == seat["bob"]
            for t in (ada, cy, dee):
                now = await client.ticket(t["id"], token=_token(t["players"][0]))
                assert now["status"] == "matched" and "no_shows" not in now
            assert await _counter(mm, "stadium_matchmaker_seats_released", "1v1") == 1
            assert await _counter(mm, "stadium_matchmaker_matches_incomplete", "1v1") == 1
            assert f"match {lost}: 1 of 2 seats not taken by their expiry: bob" in mm.log()

            # The released seat's token no longer opens the room...
            with pytest.raises(InvalidStatus) as refused:
                await seat["bob"].join()
            assert refused.value.response.status_code == 401
            assert b"expired" in refused.value.response.body
            # ...and the player who came keeps her seat, on her newer socket.
            with pytest.raises(RoomClosed) as replaced:
                await asyncio.wait_for(rooms[0].recv(), 5)
            assert replaced.value.code == 4409
            await rooms[1].send("still here")
            assert rooms[1].close_code is None
            await rooms[2].send("gg")
            assert await asyncio.wait_for(rooms[3].recv(), 5) == "gg"
            # A ticket reported as a no-show cannot be cancelled as if it were waiting.
            async with httpx.AsyncClient() as http:
                r = await http.delete(f"{mm.url}/tickets/{bob['id']}",
                                      headers={"Authorization": f"Bearer {_token('bob')}"})
            assert r.status_code == 409 and r.json()["error"]["code"] == "already_matched"
        finally:
            for room in rooms:
                await room.close()


async def test_a_party_with_a_member_away_stays_matched(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    async with MatchmakerClient(mm.url) as client:
        party, *solos = await asyncio.gather(
            _matched(client, "2v2", "pam", ["pat"]),
            *(_matched(client, "2v2", p) for p in ("sol1", "sol2")))
        seats: dict[str, Seat] = {}
        for t in (party, *solos):
            seats.update(client.seats(t))
        assert len({s.match_id for s in seats.values()}) == 1
        match_id = seats["pam"].match_id
        rooms = [await seats[p].join() for p in ("pam", "sol1", "sol2")]  # pat stays away
        try:
            report = (await _reported(client, match_id))["seats"]
            assert report["status"] == "incomplete" and report["no_shows"] == ["pat"]
            assert set(report["joined"]) == {"pam", "sol1", "sol2"}
            # pam came, so the party's ticket stays matched and names who did not.
            now = await client.ticket(party["id"], token=_token("pam"))
            assert now["status"] == "matched" and now["no_shows"] == ["pat"]
            for t in solos:
                assert (await client.ticket(t["id"], token=_token(t["players"][0])))[
                    "status"] == "matched"
            assert await _counter(mm, "stadium_matchmaker_seats_released", "2v2") == 1
            assert await _counter(mm, "stadium_matchmaker_matches_incomplete", "2v2") == 1
        finally:
            for room in rooms:
                await room.close()


async def test_without_a_secret_seats_are_not_tracked(
        redis_url: str, stack: tuple[ServiceProcess, ServiceProcess],
        tmp_path: Path) -> None:
    """No token, so no player the relay could name: the match says `untracked` and is never
    reported, rather than reporting every player as a no-show."""
    queues = tmp_path / "queues.toml"
    queues.write_text(OPEN_QUEUE)
    mm = start_service("matchmaker", "--redis-url", redis_url, "--queues", str(queues),
                       "--seat-ttl", "0.1", "--seat-grace", "0", "--match-interval", "0.05",
                       "--lease-ttl", "1")
    try:
        async with MatchmakerClient(mm.url) as client:
            a, b = await asyncio.gather(*(_matched(client, "open", p) for p in ("al", "bo")))
            seat = client.seats(a)["al"]
            assert seat.token is None
            assert (await client.match(seat.match_id))["seats"] == {"status": "untracked"}
            redis = aioredis.from_url(redis_url)
            try:
                assert await redis.zcard("mm:{open}:seating") == 0
            finally:
                await redis.aclose()
            assert (await client.ticket(b["id"]))["status"] == "matched"
            assert await _counter(mm, "stadium_matchmaker_seats_released", "open") == 0
    finally:
        mm.stop()


async def test_a_relay_that_cannot_record_joins_still_admits_and_counts() -> None:
    """Redis away: the join is accepted all the same, each failed write is counted, and the
    failure is logged once, not once per join."""
    with EmbeddedRedis() as gone:
        url = gone.url
    relay = start_service("relay", "--redis-url", url, "--secret", SECRET)
    try:
        rooms = []
        for player in ("p1", "p2"):
            token = tokens.sign(SECRET, room_type="broadcast", room_id="m", ttl=60,
                                player=player, match="1v1.0123456789abcdef")
            rooms.append(await Room.connect(f"{relay.url}/rooms/broadcast/m", token))
        await rooms[0].send("in anyway")
        assert await asyncio.wait_for(rooms[1].recv(), 5) == "in anyway"

        async def both_counted() -> bool:
            return await _counter(relay, "stadium_relay_seat_join_errors") == 2
        await _until(both_counted)
        assert relay.log().count("seat joins: cannot write") == 1
        for room in rooms:
            await room.close()
    finally:
        relay.stop(signal.SIGKILL)
