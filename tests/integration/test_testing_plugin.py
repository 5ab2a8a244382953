"""stadium.testing as a game developer uses it: the `stadium_relay` fixture, SDK clients,
ticks run by the test, assertions on the room's state and on what clients received."""

from __future__ import annotations

import asyncio

import msgpack
import pytest

from relay.games.arena import arena_room
from stadium.testing import LocalRelay
from stadium_client import RoomClosed
from tests.rooms import TickRoom


async def test_ticks_run_only_when_the_test_says_and_take_what_was_sent_before(
        stadium_relay) -> None:  # type: ignore[no-untyped-def]
    relay = await stadium_relay({"dots": TickRoom})
    ada = await relay.connect("dots", "d", player="ada")
    bob = await relay.connect("dots", "d", player="bob")
    you = msgpack.unpackb(await ada.recv())["you"]
    await asyncio.sleep(0.2)  # four periods at 20 Hz: still no tick without the test
    room = relay.room("dots", "d")
    assert room.tick == 0
    await relay.send(ada, "1.5,0")
    await relay.send(bob, "hello")
    assert await relay.tick("dots", "d") == 1
    assert room.state.doc["inputs"] == ["1.5,0", "hello"]
    assert room.state["dots"]["x"][you] == pytest.approx(1.5)
    assert await relay.tick("dots", "d", 2) == 3
    assert room.state.doc["inputs"] == []  # nothing was sent before the later ticks
    mirror = await bob.wait_state(3)
    assert mirror.doc["tick"] == 3 and mirror["dots"].get(you)["x"] == pytest.approx(1.5)


async def test_join_tokens_name_the_player_and_a_seat_holds_one_client(stadium_relay) -> None:  # type: ignore[no-untyped-def]
    relay = await stadium_relay({"dots": TickRoom})
    first = await relay.connect("dots", "s", player="ada")
    await relay.connect("dots", "s", player="ada")
    assert [c.player for c in relay.room("dots", "s").connections()] == ["ada"]
    assert "you" in msgpack.unpackb(await first.recv())
    with pytest.raises(RoomClosed) as closed:
        await asyncio.wait_for(first.recv(), 5)
    assert closed.value.code == 4409


async def test_a_local_relay_also_runs_on_its_own_clock_and_without_pytest() -> None:
    async with LocalRelay({"dots": TickRoom}, manual_ticks=False, secret=None) as relay:
        client = await relay.connect("dots", "free")
        mirror = await client.wait_state(2)  # the room's own 20 Hz timer
        assert mirror.tick >= 2 and relay.room("dots", "free").connections()[0].player is None
        with pytest.raises(AssertionError):
            await relay.tick("dots", "free")


async def test_the_example_in_the_room_api_docs(stadium_relay) -> None:  # type: ignore[no-untyped-def]
    """docs/room-api.md's "Testing your rooms" example, on the arena room."""
    relay = await stadium_relay({"arena": arena_room(None)})
    ada = await relay.connect("arena", "a", player="ada")
    ship = msgpack.unpackb(await ada.recv())["ship"]
    ships = relay.room("arena", "a").state["ships"]
    x, y = float(ships["x"][ship]), float(ships["y"][ship])
    await relay.send(ada, {"thrust": 1})
    assert await relay.tick("arena", "a", 2) == 2
    assert (float(ships["x"][ship]), float(ships["y"][ship])) != (x, y)
    mirror = await ada.wait_state(2)
    assert mirror["ships"].get(ship)["x"] == pytest.approx(float(ships["x"][ship]), abs=0.01)


async def test_anonymous_clients_are_players_of_their_own(stadium_relay) -> None:  # type: ignore[no-untyped-def]
    relay = await stadium_relay({"dots": TickRoom})
    for _ in range(3):
        await relay.connect("dots", "anon")
    players = sorted(c.player for c in relay.room("dots", "anon").connections())
    assert players == ["player-1", "player-2", "player-3"]
