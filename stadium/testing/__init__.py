"""Test a game's rooms the way its players use them: a real relay in the test's own process,
on a free port, with the game's room types; SDK clients connect over real sockets, and the
test runs the rooms' ticks itself (a manual clock), so every tick is deterministic.

    async def test_ships_move(stadium_relay):
        relay = await stadium_relay({"arena": Arena})
        client = await relay.connect("arena", "a", player="ada")
        await relay.send(client, {"thrust": 1})   # arrives before the next tick
        await relay.tick("arena", "a", 3)
        assert relay.room("arena", "a").state["ships"].ids.size == 1
        assert (await client.wait_state(3))["ships"]

`stadium_relay` is a pytest fixture (the `stadium.testing.plugin` pytest plugin, which
Stadium registers); `LocalRelay` is the same without pytest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from relay import Room
from relay.config import RelayConfig
from relay.server import Relay
from stadium import tokens

__all__ = ["SECRET", "LocalRelay"]

SECRET = "stadium.testing: not a production secret"  # HS256 wants 32 bytes or more


class LocalRelay:
    """A relay on 127.0.0.1 and a free port, serving `rooms`. With `manual_ticks` (the
    default) rooms tick only when the test calls `tick`; with `secret`, clients get join
    tokens for the player they name, as a matchmaker would give them."""

    def __init__(self, rooms: Mapping[str, type[Room]], *, manual_ticks: bool = True,
                 secret: str | None = SECRET, **settings: Any) -> None:
        settings.setdefault("flush_interval", 0.0)  # written at the end of each loop pass
        self.config = RelayConfig(host="127.0.0.1", port=0, secret=secret, **settings)
        self.relay = Relay(self.config, rooms)
        self.manual_ticks = manual_ticks
        self._clients: list[Any] = []

    async def start(self) -> LocalRelay:
        await self.relay.start()
        self.relay.host.manual_ticks = self.manual_ticks
        return self

    @property
    def url(self) -> str:
        return self.relay.url

    def token(self, room_type: str, room_id: str, player: str, **claims: Any) -> str:
        """A join token for `player` (None without a secret: the relay is open)."""
        assert self.config.secret is not None, "this relay has no secret: it needs no token"
        return tokens.sign(self.config.secret, room_type=room_type, room_id=room_id,
                           player=player, **claims)

    async def connect(self, room_type: str, room_id: str, player: str | None = None,
                      query: str = "") -> Any:
        """A `stadium_client.Room` joined to `room_type/room_id` (as `player`, whose join
        token is made here when the relay has a secret; without `player`, a new one)."""
        from stadium_client import Room as ClientRoom  # the Python SDK, a distribution of its own

        token = None
        if self.config.secret is not None:  # each anonymous client a player of its own
            token = self.token(room_type, room_id,
                               player or f"player-{len(self._clients) + 1}")
        url = f"{self.url}/rooms/{room_type}/{room_id}" + (f"?{query}" if query else "")
        client = await ClientRoom.connect(url, token)
        self._clients.append(client)
        await self.joined(room_type, room_id)
        return client

    async def send(self, client: Any, message: Any, timeout: float = 5.0) -> None:
        """`client.send(message)`, returning once the relay has taken it (handed it to the
        room, or dropped it for a rate limit): a `tick` after this has it as input."""
        stats = self.relay.stats
        before = stats.messages_in + stats.rate_limit_drops
        await client.send(message)
        async with asyncio.timeout(timeout):
            while stats.messages_in + stats.rate_limit_drops == before:
                await asyncio.sleep(0)

    async def joined(self, room_type: str, room_id: str, timeout: float = 5.0) -> None:
        """Wait until the room has run `on_connect` for everyone who has joined."""
        async with asyncio.timeout(timeout):
            while True:
                rt = self.relay.host.rooms.get((room_type, room_id))
                if rt is not None and rt.inbox is None and not rt.running:
                    return
                await asyncio.sleep(0.001)

    def room(self, room_type: str, room_id: str) -> Any:
        """The live `Room` object (your class) of `room_type/room_id`, to assert on."""
        rt = self.relay.host.rooms.get((room_type, room_id))
        if rt is None or rt.room is None:
            raise LookupError(f"no room {room_type}/{room_id} is awake on this relay")
        return rt.room

    async def tick(self, room_type: str, room_id: str, n: int = 1) -> int:
        """Run `n` ticks of the room now, one after the other; messages given to `send`
        before are the first one's inputs. Returns the room's tick count. Needs
        `manual_ticks`."""
        assert self.manual_ticks, "tick() runs rooms started with manual_ticks=True"
        rt = self.relay.host.rooms.get((room_type, room_id))
        if rt is None:
            raise LookupError(f"no room {room_type}/{room_id} on this relay")
        for _ in range(n):
            await self.joined(room_type, room_id)  # messages and joins so far come first
            if not rt.tick_now():
                raise RuntimeError(f"{room_type} does not tick (no tick_rate)")
            while rt.tick_queued:
                await asyncio.sleep(0)
        return rt.tick

    async def stop(self) -> None:
        for client in self._clients:
            await client.close()
        await self.relay.drain(timeout=1.0)

    async def __aenter__(self) -> LocalRelay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
