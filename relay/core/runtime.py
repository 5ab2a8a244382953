"""The runtime of one room: its members, the order its handlers run in, alarms, ticks,
and hibernation. A game's `Room` reaches it through one handle (`room._runtime`).

Handlers may be plain functions or coroutines. A plain handler runs inline when the
room has nothing pending; a coroutine handler, and anything that arrives while one is
pending, goes through one worker task per room, so a room sees its events in order.
A room with a `tick_rate` gets its messages as inputs to `on_tick` at a fixed timestep.
An idle room that can be snapshotted hibernates: its `Room` object is dropped, its
members stay, and the next event wakes a new object from the snapshot first.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from relay.core.member import Member
from relay.core.room import HANDLERS, Room, RoomStorage
from relay.ws.frames import CLOSE_INTERNAL_ERROR

if TYPE_CHECKING:
    from relay.core.host import RoomHost

log = logging.getLogger("stadium.relay.room")

Done = Callable[[Any, bool], None]
Item = tuple[str, tuple[Any, ...], "Member | None", "Done | None"]
TICK = "on_tick"  # the item name of a tick: run_tick, which calls on_tick
RECENT_CLOSES = 16  # closes a room remembers for the operator console: (member, player, code, at)
_async_handlers: dict[type[Room], frozenset[str]] = {}


def async_handlers(cls: type[Room]) -> frozenset[str]:
    names = _async_handlers.get(cls)
    if names is None:
        names = _async_handlers[cls] = frozenset(
            n for n in HANDLERS if inspect.iscoroutinefunction(getattr(cls, n)))
    return names


class RoomRuntime:
    """One room (awake or hibernated) as the host runs it."""

    __slots__ = ("host", "cls", "type", "id", "storage", "room", "members", "inbox",
                 "running", "async_names", "async_message", "alarm", "alarm_at", "inputs",
                 "ticker", "tick", "tick_due", "tick_queued", "auto", "shared", "events",
                 "seen_events", "idle_since", "snapshot", "sleeps", "loading", "held", "seated",
                 "joining", "tick_seconds", "overruns", "closes", "store_ops")

    def __init__(self, host: RoomHost, cls: type[Room], type_name: str, room_id: str,
                 storage: RoomStorage) -> None:
        self.host = host
        self.cls = cls
        self.type = type_name
        self.id = room_id
        self.storage = storage
        self.room: Room | None = None  # None while it hibernates
        self.members: dict[Any, Member] = {}
        self.inbox: deque[Item] | None = None
        self.running = False
        self.async_names = async_handlers(cls)
        self.async_message = "on_message" in self.async_names
        self.alarm: asyncio.TimerHandle | None = None
        self.alarm_at: float | None = None
        self.inputs: list[tuple[Member, str | bytes]] | None = [] if cls.tick_rate else None
        self.ticker: asyncio.TimerHandle | None = None
        self.tick = 0
        self.tick_due = 0.0
        self.tick_queued = False
        self.auto: dict[str | bytes, bytes] | None = None
        self.shared: list[bytes] | None = None  # frames broadcast since the last flush
        self.events = 0  # handler calls and messages: the host hibernates a room when idle
        self.seen_events = -1
        self.idle_since = 0.0
        self.snapshot: bytes | None = None  # while hibernated, unless moved to the store
        self.sleeps = 0  # hibernations so far: a store write knows whether it is current
        self.loading = False
        self.held: list[Item] = []
        self.seated: dict[str, Member] = {}  # player -> their live member (see Room.seats)
        self.joining = False  # a member is between its predecessor's leaving and its join
        # The last snapshot-store operation: each waits for the one before, so this room's
        # writes, deletes and reads reach the store in the order they were made.
        self.store_ops: asyncio.Task[None] | None = None
        self.tick_seconds = 0.0  # the last tick's duration (the console shows it)
        self.overruns = 0  # ticks skipped because the room fell behind its rate
        # The last RECENT_CLOSES closes (member id, player, code, unix time); made on the first.
        self.closes: deque[tuple[int, str | None, int, float]] | None = None

    def closed(self, member: Member) -> None:
        """Remember a member's close among the room's last RECENT_CLOSES."""
        closes = self.closes
        if closes is None:
            closes = self.closes = deque(maxlen=RECENT_CLOSES)
        closes.append((member.id, member.player, member.close_code, time.time()))

    def __repr__(self) -> str:
        return f"<RoomRuntime {self.type}/{self.id} {'awake' if self.room else 'asleep'}>"

    @property
    def key(self) -> tuple[str, str]:
        return (self.type, self.id)

    @property
    def busy(self) -> bool:
        return (self.inbox is not None or self.alarm is not None or self.running
                or self.loading or self.joining)

    # --- start ---------------------------------------------------------------------------
    def start(self, restored: Any = None) -> Room:
        """A new `Room` object for this runtime; `on_start` is queued."""
        room = self.cls()
        room._runtime = self  # the one handle a room has on the relay
        room.type = self.type
        room.id = self.id
        room.storage = self.storage
        room.restored = restored
        self.room = room
        self.call("on_start", ())
        return room

    # --- handlers in order ---------------------------------------------------------------
    def call(self, name: str, args: tuple[Any, ...], member: Member | None = None,
             done: Done | None = None) -> None:
        """Run handler `name` now, or after what is pending, in arrival order."""
        if self.room is None and not self._wake_for((name, args, member, done)):
            return
        self.events += 1
        if self.inbox is not None or self.running or name in self.async_names:
            self.enqueue((name, args, member, done))
            return
        self.running = True
        try:
            self._run_plain(name, args, member, done)
        finally:
            self._after_inline()

    def deliver(self, member: Member, message: str | bytes) -> None:
        """`on_message`, the hot path: inline when nothing is pending."""
        auto = self.auto
        if auto is not None:
            frame = auto.get(message)
            if frame is not None:  # answered from the table, also while it hibernates
                member.queue(frame)
                return
        room = self.room
        if room is None:
            self.call("on_message", (member, message), member)
            return
        self.events += 1
        inputs = self.inputs
        if inputs is not None:
            inputs.append((member, message))
            return
        if self.inbox is not None or self.running or self.async_message:
            self.enqueue(("on_message", (member, message), member, None))
            return
        self.running = True
        try:
            room.on_message(member, message)
        except Exception:
            self._failed("on_message", member)
        finally:
            self._after_inline()

    def _handler(self, name: str) -> Callable[..., Any]:
        if name == TICK:
            return self._run_tick
        fn: Callable[..., Any] = getattr(self.room, name)
        return fn

    def _run_plain(self, name: str, args: tuple[Any, ...], member: Member | None,
                   done: Done | None) -> None:
        try:
            result = self._handler(name)(*args)
        except Exception:
            self._failed(name, member)
            _finish(done, None, False)
            return
        _finish(done, result, True)

    def _after_inline(self) -> None:
        """What an inline handler caused (a close, say) runs after it, not inside it."""
        self.running = False
        if self.inbox is not None:
            self.host.loop.create_task(self._work())

    def enqueue(self, item: Item) -> None:
        if self.inbox is not None:
            self.inbox.append(item)
            return
        self.inbox = deque((item,))
        if not self.running:
            self.host.loop.create_task(self._work())

    async def _work(self) -> None:
        inbox = self.inbox
        assert inbox is not None
        while inbox:
            name, args, member, done = inbox[0]
            try:
                result = self._handler(name)(*args)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                self._failed(name, member)
                _finish(done, None, False)
            else:
                _finish(done, result, True)
            finally:
                inbox.popleft()
        self.inbox = None
        self.host.settle(self)

    def _failed(self, name: str, member: Member | None) -> None:
        log.exception("room %s/%s: %s raised", self.type, self.id, name)
        self.host.stats.handler_errors += 1
        if member is not None:
            member.close(CLOSE_INTERNAL_ERROR, "internal error")

    # --- alarms --------------------------------------------------------------------------
    def set_alarm(self, when: float) -> None:
        self.cancel_alarm()
        loop = self.host.loop
        self.alarm_at = when
        self.alarm = loop.call_at(loop.time() + max(0.0, when - time.time()), self._fire_alarm)

    def cancel_alarm(self) -> None:
        if self.alarm is not None:
            self.alarm.cancel()
        self.alarm = None
        self.alarm_at = None

    def _fire_alarm(self) -> None:
        self.alarm = None
        self.alarm_at = None
        self.call("on_alarm", ())
        self.host.settle(self)

    # --- ticks ---------------------------------------------------------------------------
    def start_ticking(self) -> None:
        rate = self.cls.tick_rate
        if not rate or self.host.manual_ticks:
            return
        loop = self.host.loop
        self.tick_due = loop.time() + 1.0 / rate
        self.ticker = loop.call_at(self.tick_due, self._on_timer)

    def stop_ticking(self) -> None:
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None

    def tick_now(self) -> bool:
        """Run one tick now, off the timer (a test's manual clock); False while the previous
        tick still runs (an async `on_tick` that has not finished)."""
        if not self.cls.tick_rate or self.tick_queued:
            return False
        self.tick_queued = True
        self.call(TICK, ())
        return True

    def _on_timer(self) -> None:
        """Deadlines are kept on a fixed grid from the first tick, so timer jitter does not
        accumulate; a tick that cannot run in its slot is skipped and counted."""
        rate = self.cls.tick_rate
        assert rate
        period = 1.0 / rate
        loop = self.host.loop
        late = loop.time() - self.tick_due
        missed = int(late // period) if late >= period else 0
        self.tick_due += (missed + 1) * period
        self.ticker = loop.call_at(self.tick_due, self._on_timer)
        if self.tick_queued:  # the previous tick still waits behind an async handler
            missed += 1
        else:
            self.tick_queued = True
            self.call(TICK, ())
        if missed:
            self.overruns += missed
            self.host.stats.tick_overruns[self.type] += missed

    def _run_tick(self) -> Any:
        inputs = self.inputs
        self.inputs = []
        self.tick += 1
        started = time.perf_counter()
        rate = self.cls.tick_rate
        assert inputs is not None and rate and self.room is not None
        try:
            result = self.room.on_tick(1.0 / rate, inputs)
        except BaseException:
            self.tick_queued = False
            raise
        if inspect.isawaitable(result):
            return self._await_tick(result, started)
        self._ticked(started)
        return None

    async def _await_tick(self, result: Any, started: float) -> None:
        try:
            await result
        finally:
            self.tick_queued = False
        self._ticked(started)

    def _ticked(self, started: float) -> None:
        self.tick_queued = False
        host = self.host
        state = self.room.state if self.room is not None else None
        if state is not None:
            host.outbox.send_state(self, state)
            host.outbox.flush()  # the writes now, so the tick's duration includes them
        self.tick_seconds = seconds = time.perf_counter() - started
        host.stats.observe_tick(self.type, seconds)

    # --- hibernation ---------------------------------------------------------------------
    def can_hibernate(self) -> bool:
        """Plain rooms that keep their state in `snapshot()` and have nothing in flight."""
        cls = self.cls
        return (self.room is not None and cls.snapshot is not Room.snapshot
                and not cls.tick_rate and self.inbox is None and not self.running
                and self.shared is None)

    def hibernate(self) -> bool:
        """Keep only the room's snapshot; False (logged) if `snapshot()` fails."""
        assert self.room is not None
        try:
            data: bytes = msgpack.packb(self.room.snapshot())
        except Exception:
            log.exception("room %s/%s: snapshot() failed; it stays awake", self.type, self.id)
            return False
        alarm_at = self.alarm_at
        self.cancel_alarm()
        self.alarm_at = alarm_at
        if alarm_at is not None:  # the alarm wakes it
            loop = self.host.loop
            self.alarm = loop.call_at(loop.time() + max(0.0, alarm_at - time.time()),
                                      self._wake_for_alarm)
        self.room = None
        self.snapshot = data
        self.sleeps += 1
        host = self.host
        host.stats.hibernations += 1
        host.sleeping += 1
        if host.snapshots is not None:
            self.store_ops = host.loop.create_task(self._store(self.sleeps, data,
                                                               self.store_ops))
        return True

    @property
    def snapshot_key(self) -> str:
        return f"stadium:room:{self.type}:{self.id}:snapshot"

    def _wake_for(self, item: Item) -> bool:
        """An event for a hibernated room: wake it now (True), or hold the event until its
        snapshot is back from the store (False)."""
        if self.snapshot is not None:
            self._wake(self.snapshot)
            return True
        self.held.append(item)
        self._load_soon()
        return False

    def _wake_for_alarm(self) -> None:
        self.alarm = None
        if self.room is None and self.snapshot is not None:
            self._wake(self.snapshot)
        elif self.room is None:
            self._load_soon()

    def _load_soon(self) -> None:
        if not self.loading:
            self.loading = True
            self.host.loop.create_task(self._load())

    def _wake(self, data: bytes) -> None:
        host = self.host
        host.stats.wakes += 1
        host.sleeping -= 1
        self.snapshot = None
        if self.alarm is not None:
            self.alarm.cancel()
            self.alarm = None
        alarm_at = self.alarm_at
        self.alarm_at = None
        self.start(msgpack.unpackb(data, strict_map_key=False))
        if alarm_at is not None:
            self.set_alarm(alarm_at)

    async def _store(self, sleep: int, data: bytes, before: asyncio.Task[None] | None) -> None:
        """Move the snapshot of hibernation `sleep` to the store; on failure it stays in
        memory."""
        if before is not None:
            await asyncio.gather(before, return_exceptions=True)
        store = self.host.snapshots
        assert store is not None
        try:
            await store.put(self.snapshot_key, data)
        except Exception as e:
            log.warning("room %s/%s: snapshot kept in memory, the store failed: %s",
                        self.type, self.id, e)
            return
        if sleep != self.sleeps:
            return  # it woke and slept again: that later sleep's write owns the key
        if self.room is None:
            self.snapshot = None
        else:  # woke while the write was in flight: that copy is stale
            try:
                await store.delete(self.snapshot_key)
            except Exception as e:
                log.warning("room %s/%s: could not delete its snapshot: %s", self.type,
                            self.id, e)

    async def _load(self) -> None:
        store = self.host.snapshots
        assert store is not None
        if self.store_ops is not None:  # the write of this sleep, and any delete, go first
            await asyncio.gather(self.store_ops, return_exceptions=True)
        data: bytes | None = None
        try:
            data = await store.take(self.snapshot_key)  # gone before the room answers
        except Exception as e:
            log.error("room %s/%s: cannot read its snapshot from the store: %s", self.type,
                      self.id, e)
        if data is None:
            log.error("room %s/%s: snapshot missing; it starts without it", self.type, self.id)
        self.loading = False
        self._wake(msgpack.packb(None) if data is None else data)
        held, self.held = self.held, []
        for name, args, member, done in held:
            self.call(name, args, member, done)
        self.host.settle(self)


def _finish(done: Done | None, result: Any, ok: bool) -> None:
    """Hand a handler's result on; a failing callback must not stall the room."""
    if done is None:
        return
    try:
        done(result, ok)
    except Exception:
        log.exception("answering a room handler's result failed")
