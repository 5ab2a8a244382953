"""Fan-out: everything bound for a member during one batch goes out in one write.

A room's broadcasts of a batch go to its shared list, joined once and written as the
same bytes to every member without a queue of its own (as uWebSockets' topics do). A
member that also gets a direct message, or is excluded from a broadcast, gets its own
queue caught up with the room's broadcasts so far (its cursor), so each member sees
what the room sent in the order it sent it. Slow readers skip droppable updates and
are dropped when they stay slow; they never slow the room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgpack

from relay.config import RelayConfig
from relay.core.member import Member
from relay.core.stats import Stats
from relay.ws.frames import CLOSE_POLICY

if TYPE_CHECKING:
    from relay.core.runtime import RoomRuntime
    from relay.state import State


log = logging.getLogger("stadium.relay")


class Outbox:
    """The batches of one process: members with their own queue, rooms with broadcasts."""

    __slots__ = ("loop", "config", "stats", "encode", "dirty", "rooms", "slow", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop, config: RelayConfig, stats: Stats,
                 encode: Callable[[str | bytes], bytes]) -> None:
        self.loop = loop
        self.config = config
        self.stats = stats
        # How a broadcast is framed once for every member of a room. One transport kind so
        # far (WebSocket); a second kind adds its own shared list per room.
        self.encode = encode
        self.dirty: list[Member] = []  # members with their own queue (member.out)
        self.rooms: list[RoomRuntime] = []  # rooms with broadcasts to flush (room.shared)
        self.slow: set[Member] = set()  # members over --slow-reader-bytes
        self.pending = False

    def own(self, m: Member) -> list[bytes]:
        """`m`'s own queue for the next flush, caught up with its room's broadcasts so far,
        so that what is queued next goes out after them."""
        out = m.out
        if out is None:
            out = m.out = []
            self.dirty.append(m)
            self.schedule()
        rt = m.room
        if rt is not None:
            shared = rt.shared
            if shared is not None and len(shared) > m.cursor:
                out += shared[m.cursor:]
                m.cursor = len(shared)
        return out

    def schedule(self) -> None:
        if not self.pending:
            self.pending = True
            delay = self.config.flush_interval
            if delay:
                self.loop.call_later(delay, self.flush)
            else:
                self.loop.call_soon(self.flush)

    def broadcast(self, rt: RoomRuntime, message: Any, exclude: Iterable[Member | Any],
                  droppable: bool) -> int:
        """Queue `message` to every member of `rt` but `exclude`, framed once."""
        frame = self.encode(message if isinstance(message, str | bytes)
                            else msgpack.packb(message))
        members = rt.members
        # Those who must not get this frame take their own queue, caught up to here.
        skipped: list[Member] = []
        for x in exclude:
            c = members.get(x.id if isinstance(x, Member) else x)
            if c is not None:
                skipped.append(c)
        if droppable and self.slow:
            slow = [c for c in self.slow if c.room is rt]
            self.stats.updates_skipped += len(slow)
            skipped += slow
        own = self.own
        for c in skipped:
            own(c)
        # Everyone else gets it from the room's shared list: one join per flush for all.
        shared = rt.shared
        if shared is None:
            shared = rt.shared = []
            self.rooms.append(rt)
            self.schedule()
        shared.append(frame)
        for c in skipped:
            c.cursor = len(shared)
        n = len(members) - len(set(skipped))
        stats = self.stats
        stats.messages_out += n
        stats.bytes_out += n * len(frame)
        return n

    def joined(self, m: Member, rt: RoomRuntime) -> None:
        """`m` joins `rt` during a batch: broadcasts made before it joined are not for it."""
        if rt.shared:
            self.own(m)
            m.cursor = len(rt.shared)

    def send_state(self, rt: RoomRuntime, state: State) -> None:
        """Commit the tick and queue each member its message, framed once per distinct
        message: the diff for everyone, a snapshot for joiners; with an interest grid, one
        per distinct view."""
        tick = state.commit()
        prev = tick - 1
        grid = state.grid is not None
        frames: dict[Any, bytes] = {}
        encode = self.encode
        dirty = self.dirty
        shared = rt.shared  # broadcasts during the tick go out before its state
        stats = self.stats
        n = nbytes = 0
        for c in rt.members.values():
            if c.slow_since:  # it catches up from its last tick once it drains
                stats.updates_skipped += 1
                continue
            base = c.synced
            if grid:
                msg = state.view_message(c.id, base)
                key: Any = id(msg)
                frame = frames.get(key)
                if frame is None:
                    frame = frames[key] = encode(msg)
            else:
                frame = frames.get(base)
                if frame is None:
                    msg = (state.diff_message(prev) if base == prev and prev
                           else state.message_for(base or None))
                    frame = frames[base] = encode(msg)
            c.synced = tick
            if c.out is None and shared is None:
                c.out = [frame]
                dirty.append(c)
            else:
                self.own(c).append(frame)
            n += 1
            nbytes += len(frame)
        if n:
            self.schedule()
            stats.messages_out += n
            stats.bytes_out += nbytes

    def flush(self) -> None:
        """One write per member for everything queued to it in this batch: a room's
        broadcasts are joined once into bytes written as they are to every member without
        a queue of its own; a member with its own queue gets it joined with its share."""
        self.pending = False
        rooms = self.rooms
        self.rooms = []
        dirty = self.dirty
        self.dirty = []
        for rt in rooms:
            shared = rt.shared
            rt.shared = None
            if not shared:
                continue
            blob = shared[0] if len(shared) == 1 else b"".join(shared)
            for c in rt.members.values():
                out = c.out
                t = c.link
                if t is None:  # not reached: a member leaves its room before it is gone
                    continue
                if out is None:
                    t.write(blob)
                else:
                    c.out = None
                    if c.cursor < len(shared):
                        out += shared[c.cursor:]
                    c.cursor = 0
                    if out:
                        t.write(b"".join(out))
        for c in dirty:
            out = c.out
            if out is None:
                continue
            c.out = None
            c.cursor = 0
            t = c.link
            if t is not None and out:
                try:
                    t.write(out[0] if len(out) == 1 else b"".join(out))
                except RuntimeError:  # a link that can write no more must not stop the rest
                    log.exception("member %s: its link refused a write", c.id)
                    c.link = None
        if self.slow:
            limit = self.config.max_outbound_buffer
            for c in list(self.slow):
                t = c.link
                if t is not None and t.get_write_buffer_size() > limit:
                    c.abort(CLOSE_POLICY, "slow reader: outbound buffer over its limit")

    def write_now(self, m: Member, frame: bytes) -> None:
        """Write what is queued for `m`, then `frame`, in one write (a close, say)."""
        t = m.link
        if t is None:
            return
        out = self.own(m)
        m.out = None
        m.cursor = 0
        out.append(frame)
        t.write(b"".join(out))

    def forget(self, m: Member) -> None:
        """`m` is gone: nothing more is written to it."""
        m.out = None
        m.cursor = 0
        self.slow.discard(m)

    def slow_started(self, m: Member) -> None:
        m.slow_since = self.loop.time()
        self.slow.add(m)

    def slow_ended(self, m: Member) -> None:
        m.slow_since = 0.0
        self.slow.discard(m)

