"""`RoomHost`: the rooms of one process and the members in them.

Transports hand their members to the host (`join`, `leave`) and their messages to the
member's room (`member.room.deliver`); the host creates rooms on first use, drops them
when they settle, hibernates the idle ones and gives every member an id unique across
processes and machines.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from relay.config import RelayConfig
from relay.core.member import CLOSE_REPLACED, Member
from relay.core.outbox import Outbox
from relay.core.room import (
    MAX_TICK_RATE,
    SEAT_POLICIES,
    BroadcastRoom,
    ConnectContext,
    Room,
    RoomStorage,
)
from relay.core.runtime import RoomRuntime
from relay.core.stats import Stats
from relay.http import HttpError

log = logging.getLogger("stadium.relay")

BUILTIN_ROOMS: Mapping[str, type[Room]] = {"broadcast": BroadcastRoom}
ROOM_PATH = re.compile(r"/rooms/([^/]*)/([^/]*)")
TYPE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
ROOM_ID = re.compile(r"[A-Za-z0-9_.:~-]{1,128}")
NODE_BITS = 21  # member ids are node << COUNTER_BITS | counter: below 2**53, exact in JS
COUNTER_BITS = 32


class SnapshotStore(Protocol):
    """Where hibernated rooms' snapshots go (Redis in production); None keeps them in memory."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def take(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...


def check_room_types(room_types: Mapping[str, type[Room]]) -> dict[str, type[Room]]:
    """The built-in types plus `room_types`, each checked: name, class and tick rate."""
    checked: dict[str, type[Room]] = dict(BUILTIN_ROOMS)
    for name, cls in room_types.items():
        if not TYPE_NAME.fullmatch(name):
            raise ValueError(f"room type {name!r}: use 1-64 of A-Z a-z 0-9 _ -")
        if not (isinstance(cls, type) and issubclass(cls, Room)):
            raise TypeError(f"room type {name!r}: {cls!r} is not a relay.Room subclass")
        rate = cls.tick_rate
        if rate is not None and not 1 <= rate <= MAX_TICK_RATE:
            raise ValueError(f"room type {name!r}: tick_rate is {rate!r}; use 1-"
                             f"{MAX_TICK_RATE:g} Hz or None")
        if cls.seats not in SEAT_POLICIES:
            raise ValueError(f"room type {name!r}: seats must be one of {', '.join(SEAT_POLICIES)}")
        checked[name] = cls
    return checked


class RoomHost:
    """The room registry of one process: join / deliver / leave, hibernation, storage."""

    def __init__(self, config: RelayConfig, loop: asyncio.AbstractEventLoop,
                 encode: Callable[[str | bytes], bytes],
                 room_types: Mapping[str, type[Room]] | None = None, node: int = 0,
                 stats: Stats | None = None, snapshots: SnapshotStore | None = None) -> None:
        if not 0 <= node < 1 << NODE_BITS:
            raise ValueError(f"node id {node} is not in 0..{(1 << NODE_BITS) - 1}")
        self.config = config
        self.loop = loop
        self.stats = stats if stats is not None else Stats()
        self.outbox = Outbox(loop, config, self.stats, encode)
        self.room_types = check_room_types(room_types or {})
        self.rooms: dict[tuple[str, str], RoomRuntime] = {}
        self.snapshots = snapshots
        self.sleeping = 0  # rooms hibernated
        self.manual_ticks = False  # ticks run only by RoomRuntime.tick_now (tests' clock)
        self._storage: dict[tuple[str, str], RoomStorage] = {}
        self.node = node  # this process's number among the relays on one Redis
        self._node = node << COUNTER_BITS
        self._counter = 0

    def member_id(self) -> int:
        """An id no other member of any process or node has (with unique node ids)."""
        self._counter = n = (self._counter + 1) & ((1 << COUNTER_BITS) - 1)
        return self._node | n

    # --- rooms -----------------------------------------------------------------------------
    def route(self, path: str) -> tuple[str, str]:
        """`/rooms/{type}/{room_id}` to (type, room_id), or the HTTP error to answer."""
        m = ROOM_PATH.fullmatch(path)
        if m is None:
            raise HttpError(404, "not_found", f"no route for {path}; rooms are at "
                            "/rooms/{type}/{room_id}")
        type_name, room_id = m.groups()
        if type_name not in self.room_types:
            raise HttpError(404, "unknown_room_type", f"no room type {type_name!r}; known: "
                            f"{', '.join(sorted(self.room_types))}")
        if not ROOM_ID.fullmatch(room_id):
            raise HttpError(400, "bad_room_id", "room id must be 1-128 of A-Z a-z 0-9 _ . : ~ -")
        return type_name, room_id

    def room(self, type_name: str, room_id: str) -> RoomRuntime:
        """The room, started on first use (HttpError 500 if its class cannot be built)."""
        key = (type_name, room_id)
        rt = self.rooms.get(key)
        if rt is None:
            storage = self._storage.get(key)
            if storage is None:
                storage = self._storage[key] = RoomStorage()
            rt = self.rooms[key] = RoomRuntime(self, self.room_types[type_name], type_name,
                                               room_id, storage)
            try:
                rt.start()
            except Exception:
                del self.rooms[key]
                if not storage:  # none kept for room ids whose room never started
                    self._storage.pop(key, None)
                log.exception("room %s/%s: could not be created", type_name, room_id)
                raise HttpError(500, "room_failed", "the room could not be created") from None
            rt.start_ticking()
        return rt

    def settle(self, rt: RoomRuntime) -> None:
        """Drop a room from memory once it has no members, no pending work and no alarm."""
        if rt.members or rt.busy:
            return
        key = rt.key
        if self.rooms.get(key) is rt:
            del self.rooms[key]
            rt.stop_ticking()
            if rt.room is None:
                self.sleeping -= 1
            if not rt.storage:
                self._storage.pop(key, None)

    def request(self, rt: RoomRuntime, request: Any,
                done: Callable[[Any, bool], None]) -> None:
        """Hand an HTTP request to the room's `on_request`; `done(result, ok)` answers it."""
        rt.call("on_request", (request,), None, done)
        self.settle(rt)

    # --- members ---------------------------------------------------------------------------
    @staticmethod
    def check_seat(rt: RoomRuntime, player: str | None) -> None:
        """Before a connection is accepted: HttpError 409 when `player` already has a live
        connection in a room whose seats are "refuse"."""
        if player is not None and player in rt.seated and rt.cls.seats == "refuse":
            raise HttpError(409, "seat_taken", "this player already has a live connection "
                            "to this room")

    def join(self, member: Member, rt: RoomRuntime, ctx: ConnectContext) -> None:
        """`member` (open, with its id) enters `rt`; `on_connect` is queued. A player's
        earlier connection to a room whose seats are "replace" leaves first (4409)."""
        player = member.player
        if player is not None and rt.cls.seats != "shared":
            old = rt.seated.get(player)
            if old is not None:
                rt.joining = True  # the room must not be dropped while it has no member
                try:
                    old.close(CLOSE_REPLACED, "replaced by a newer connection")
                    if rt.seated.get(player) is old:  # not open any more, yet still seated
                        self.leave(old)
                finally:
                    rt.joining = False
            rt.seated[player] = member
        self.outbox.joined(member, rt)
        member.room = rt
        rt.members[member.id] = member
        rt.call("on_connect", (member, ctx), member)

    def leave(self, member: Member) -> None:
        """The member is no longer in its room (closing or gone): tell the room once."""
        rt = member.room
        if rt is None:
            return
        member.room = None
        rt.members.pop(member.id, None)
        player = member.player
        if player is not None and rt.seated.get(player) is member:
            del rt.seated[player]
        room = rt.room
        if room is not None and room.state is not None:
            room.state.forget(member.id)
        self.stats.closes[member.close_code] += 1
        rt.closed(member)
        rt.call("on_close", (member,))
        self.settle(rt)

    # --- hibernation -----------------------------------------------------------------------
    def hibernate_idle(self, now: float) -> None:
        """A room whose event count has not moved for hibernate_after seconds sleeps."""
        after = self.config.hibernate_after
        if after <= 0:
            return
        for rt in list(self.rooms.values()):
            if not rt.can_hibernate():
                continue
            if rt.events != rt.seen_events:
                rt.seen_events = rt.events
                rt.idle_since = now
            elif now - rt.idle_since >= after and not rt.hibernate():
                rt.idle_since = now  # snapshot() failed: try again a period later

    def gauges(self) -> dict[str, int]:
        return {"rooms": len(self.rooms) - self.sleeping, "rooms_hibernated": self.sleeping}
