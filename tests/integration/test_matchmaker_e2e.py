"""End to end: real relay, matchmaker and Redis. Twenty players, two parties of three among
them, queue for 5v5 with the Python SDK, are seated in two matches, join their rooms with
their tokens, and the result of a match moves their ratings."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import pytest
from websockets.exceptions import InvalidStatus

from loadtest.processes import ServiceProcess, start_service
from stadium import tokens
from stadium.redis_server import EmbeddedRedis
from stadium_client import MatchmakerClient, MatchmakerError, Room, Seat

SECRET = "shared-secret"
KEY = "server-key"


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    with EmbeddedRedis() as redis:
        relay = start_service("relay", "--redis-url", redis.url, "--secret", SECRET)
        mm = start_service("matchmaker", "--redis-url", redis.url, "--secret", SECRET,
                           "--api-key", KEY)
        try:
            yield relay, mm
        finally:
            mm.stop()
            relay.stop(signal.SIGKILL)


def _token(player: str) -> str:
    """The player's own token, as the game's backend gave it to them."""
    return tokens.sign_player(SECRET, player=player)


async def _party(client: MatchmakerClient, leader: str, members: list[str]) -> dict[str, Seat]:
    agreed = tokens.sign_party(SECRET, leader=leader, members=members)
    ticket = await client.create_ticket("5v5", leader, party=members, party_token=agreed,
                                        token=_token(leader))
    while ticket["status"] == "waiting":
        ticket = await client.wait(ticket["id"], 10, token=_token(leader))
    assert ticket["status"] == "matched", ticket
    return client.seats(ticket)


async def test_twenty_players_two_parties_two_matches(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    relay, mm = stack
    solos = [f"solo{i}" for i in range(14)]
    parties = {"red1": ["red2", "red3"], "blue1": ["blue2", "blue3"]}
    async with MatchmakerClient(mm.url) as client, \
            MatchmakerClient(mm.url, api_key=KEY) as server:
        found = await asyncio.wait_for(asyncio.gather(
            *(client.matchmake("5v5", p, token=_token(p)) for p in solos),
            *(_party(client, leader, members) for leader, members in parties.items())), 60)
        seats: dict[str, Seat] = {}
        for f in found:
            seats.update({f.player: f} if isinstance(f, Seat) else f)
        assert len(seats) == 20

        matches = {s.match_id for s in seats.values()}
        assert len(matches) == 2
        for match_id in matches:
            in_match = [s for s in seats.values() if s.match_id == match_id]
            assert len(in_match) == 10
            assert sorted(sum(s.team == t for s in in_match) for t in (0, 1)) == [5, 5]
            assert {s.url for s in in_match} == {f"{relay.url}/rooms/broadcast/{match_id}"}
        for leader, members in parties.items():
            party = {(seats[p].match_id, seats[p].team) for p in [leader, *members]}
            assert len(party) == 1, f"party of {leader} was split: {party}"

        # Every player joins their room with their own token; a message reaches exactly the
        # nine others in the same match.
        rooms: dict[str, Room] = {p: await s.join() for p, s in seats.items()}
        try:
            sender = "solo0"
            await rooms[sender].send(f"hello from {sender}")
            mates = [p for p in seats if p != sender
                     and seats[p].match_id == seats[sender].match_id]
            others = [p for p in seats if seats[p].match_id != seats[sender].match_id]
            for p in mates:
                assert await asyncio.wait_for(rooms[p].recv(), 5) == f"hello from {sender}"
            for p in others:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(rooms[p].recv(), 0.05)
        finally:
            for room in rooms.values():
                await room.close()

        # A token for one match does not open the other match's room.
        mine = seats["solo0"]
        other = next(s for s in seats.values() if s.match_id != mine.match_id)
        with pytest.raises(InvalidStatus) as refused:
            await Room.connect(other.url, mine.token)
        assert refused.value.response.status_code == 401
        assert b"wrong_room" in refused.value.response.body

        # The result moves everyone's rating: winners up, losers down.
        match = await client.match(mine.match_id)
        result = await server.report(mine.match_id, [1, 2])
        assert set(result["ratings"]) == set(match["teams"][0] + match["teams"][1])
        for team, up in ((match["teams"][0], True), (match["teams"][1], False)):
            for p in team:
                rating = await client.player(p)
                assert rating["games"] == 1
                assert (rating["mu"] > 25) is up, (p, rating)
        untouched = next(p for p in seats if seats[p].match_id != mine.match_id)
        assert (await client.player(untouched))["games"] == 0
        with pytest.raises(MatchmakerError) as twice:
            await server.report(mine.match_id, [2, 1])
        assert twice.value.code == "result_reported"


async def test_matchmake_gives_up_after_its_timeout(
        stack: tuple[ServiceProcess, ServiceProcess]) -> None:
    _, mm = stack
    async with MatchmakerClient(mm.url, token=_token("alone")) as client:
        with pytest.raises(TimeoutError):
            await client.matchmake("1v1", "alone", regions={"eu": 20}, timeout=0.5)
        # The ticket was cancelled: the player may queue again at once.
        ticket = await client.create_ticket("1v1", "alone")
        assert (await client.cancel(ticket["id"]))["status"] == "cancelled"
