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
            and room._inbox is None and not room._running and room._shared is None)


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
    """Stands in for a hibernated room: answers auto-responses, wakes on anything else.

    With --redis-url the snapshot moves to Redis once written there, and a wake first
    reads it back; events that arrive meanwhile wait, in order, for the room."""

    def __init__(self, relay: Relay, room: Room, data: bytes) -> None:
        self._relay = relay
        self.type = room.type
        self.id = room.id
        self.storage = room.storage
        self.data: bytes | None = data
        self._cls = type(room)
        self._conns = room._conns
        self._auto = room._auto
        self._shared = None
        self._ticker = None
        self._alarm = None
        self._alarm_at = room._alarm_at
        self._awake: Room | None = None
        self._held: list[tuple[str, tuple[Any, ...], Connection | None, Done | None]] = []
        self._loading = False
        for c in self._conns.values():
            c.room = self
        if self._alarm_at is not None:
            loop = relay.loop
            delay = max(0.0, self._alarm_at - time.time())
            self._alarm = loop.call_at(loop.time() + delay, self._wake_for_alarm)
        if relay._redis_url:
            relay.loop.create_task(self._store())

    @property
    def key(self) -> str:
        return f"stadium:room:{self.type}:{self.id}:snapshot"

    @property
    def _busy(self) -> bool:
        return self._alarm is not None or self._loading

    def _deliver(self, conn: Connection, message: str | bytes) -> None:
        if self._auto is not None and self._auto_reply(conn, message):
            return
        self._call("_deliver", (conn, message), conn)

    def _call(self, name: str, args: tuple[Any, ...], conn: Connection | None = None,
              done: Done | None = None) -> None:
        if self._awake is not None:
            self._forward(self._awake, name, args, conn, done)
        elif self.data is not None:
            self._forward(self._wake(self.data), name, args, conn, done)
        else:  # the snapshot is in Redis: hold events until it is back
            self._held.append((name, args, conn, done))
            if not self._loading:
                self._loading = True
                self._relay.loop.create_task(self._load())

    def _wake_for_alarm(self) -> None:
        self._alarm = None
        if self._awake is None and self.data is not None:
            self._wake(self.data)
        elif self._awake is None and not self._loading:
            self._loading = True
            self._relay.loop.create_task(self._load())

    @staticmethod
    def _forward(room: Room, name: str, args: tuple[Any, ...], conn: Connection | None,
                 done: Done | None) -> None:
        if name == "_deliver":
            room._deliver(*args)
        else:
            room._call(name, args, conn, done)

    async def _store(self) -> None:
        """Move the snapshot to Redis; on failure it stays in memory."""
        data = self.data
        assert data is not None
        try:
            redis = await self._relay._redis_client()
            await redis.set(self.key, data)
        except Exception as e:
            log.warning("room %s/%s: snapshot kept in memory, Redis failed: %s",
                        self.type, self.id, e)
            return
        if self._awake is None:
            self.data = None
        else:  # woke while the write was in flight: that copy is stale
            await self._forget()

    async def _load(self) -> None:
        data: bytes | None = None
        try:
            redis = await self._relay._redis_client()
            data = await redis.getdel(self.key)  # gone before the room answers anything
        except Exception as e:
            log.error("room %s/%s: cannot read its snapshot from Redis: %s", self.type,
                      self.id, e)
        if data is None:
            log.error("room %s/%s: snapshot missing; it starts without it", self.type, self.id)
        room = self._wake(msgpack.packb(None) if data is None else data)
        self._loading = False
        held, self._held = self._held, []
        for name, args, conn, done in held:
            self._forward(room, name, args, conn, done)
        self._relay._room_settled(room)

    async def _forget(self) -> None:
        try:
            redis = await self._relay._redis_client()
            await redis.delete(self.key)
        except Exception as e:
            log.warning("room %s/%s: could not delete its snapshot: %s", self.type, self.id, e)

    def _wake(self, data: bytes) -> Room:
        relay = self._relay
        room = self._cls()
        room._bind(relay, self.type, self.id, self.storage)
        room.restored = msgpack.unpackb(data, strict_map_key=False)
        room._conns = self._conns
        room._auto = self._auto
        for c in self._conns.values():
            c.room = room
        relay.rooms[(self.type, self.id)] = room
        relay.stats.wakes += 1
        relay._sleeping -= 1
        self._awake = room
        self.data = None
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        room._call("on_start", ())
        if self._alarm_at is not None:
            room.set_alarm(self._alarm_at)
        return room
