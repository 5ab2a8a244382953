"""Room hibernation: an idle room is reduced to its `snapshot()` bytes and a stub that
keeps its sockets; the next message, request, close or alarm for it wakes a new instance
from the snapshot before that event is handled.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import msgpack

from relay.room import Done, Room

if TYPE_CHECKING:
    from relay.conntable import Connection
    from relay.server import Relay

log = logging.getLogger("stadium.relay.hibernation")


def can_hibernate(room: Room) -> bool:
    """Plain rooms that keep their state in `snapshot()` and have nothing in flight."""
    cls = type(room)
    return (cls.snapshot is not Room.snapshot and not cls.tick_rate
            and room._inbox is None and not room._running)


def hibernate(relay: Relay, room: Room) -> bool:
    """Replace `room` by a stub holding its snapshot; False (logged) if snapshot() fails."""
    try:
        data: bytes = msgpack.packb(room.snapshot())
    except Exception:
        log.exception("room %s/%s: snapshot() failed; it stays awake", room.type, room.id)
        return False
    stub = SleepingRoom(relay, room, data)
    room.cancel_alarm()
    relay.rooms[(room.type, room.id)] = stub
    relay.stats.hibernations += 1
    relay._sleeping += 1
    return True


class SleepingRoom(Room):
    """Stands in for a hibernated room: answers auto-responses, wakes on anything else."""

    def __init__(self, relay: Relay, room: Room, data: bytes) -> None:
        self._relay = relay
        self.type = room.type
        self.id = room.id
        self.storage = room.storage
        self.data = data
        self._cls = type(room)
        self._conns = room._conns
        self._auto = room._auto
        self._ticker = None
        self._alarm = None
        self._alarm_at = room._alarm_at
        self._awake: Room | None = None
        for c in self._conns.values():
            c.room = self
        if self._alarm_at is not None:
            loop = relay.loop
            delay = max(0.0, self._alarm_at - time.time())
            self._alarm = loop.call_at(loop.time() + delay, self._wake)

    @property
    def _busy(self) -> bool:
        return self._alarm is not None

    def _deliver(self, conn: Connection, message: str | bytes) -> None:
        if self._auto is not None and self._auto_reply(conn, message):
            return
        self._wake()._deliver(conn, message)

    def _call(self, name: str, args: tuple[Any, ...], conn: Connection | None = None,
              done: Done | None = None) -> None:
        self._wake()._call(name, args, conn, done)

    def _wake(self) -> Room:
        if self._awake is not None:
            return self._awake
        relay = self._relay
        room = self._cls()
        room._bind(relay, self.type, self.id, self.storage)
        room.restored = msgpack.unpackb(self.data, strict_map_key=False)
        room._conns = self._conns
        room._auto = self._auto
        for c in self._conns.values():
            c.room = room
        relay.rooms[(self.type, self.id)] = room
        relay.stats.wakes += 1
        relay._sleeping -= 1
        self._awake = room
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        room._call("on_start", ())
        if self._alarm_at is not None:
            room.set_alarm(self._alarm_at)
        return room
