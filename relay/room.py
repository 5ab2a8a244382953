"""The Room API that game code subclasses, and how the relay runs a room's handlers in order.

Handlers may be plain functions or coroutines. A plain handler runs inline when the
room has nothing pending; a coroutine handler, and anything that arrives while one is
pending, goes through one worker task per room, so a room sees its events in order.
A room with a `tick_rate` gets its messages as inputs to `on_tick` at a fixed timestep.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import msgpack

from relay.state import State
from relay.ws.frames import CLOSE_INTERNAL_ERROR, encode_message
from relay.ws.handshake import Request, error_body

if TYPE_CHECKING:
    from relay.conntable import Connection
    from relay.server import Relay

log = logging.getLogger("stadium.relay.room")

HANDLERS = ("on_start", "on_connect", "on_message", "on_close", "on_request", "on_alarm",
            "on_tick")
MAX_TICK_RATE = 120.0
_async_handlers: dict[type[Room], frozenset[str]] = {}

Done = Callable[[Any, bool], None]
_Item = tuple[str, tuple[Any, ...], "Connection | None", "Done | None"]
Inputs = list[tuple["Connection", "str | bytes"]]


class Response:
    """An HTTP response from `on_request`. Handlers may also return str, bytes, dict or list."""

    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, body: bytes | str = b"", status: int = 200,
                 content_type: str = "application/octet-stream",
                 headers: Iterable[tuple[str, str]] = ()) -> None:
        if isinstance(body, str):
            body = body.encode()
            if content_type == "application/octet-stream":
                content_type = "text/plain; charset=utf-8"
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = tuple(headers)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(json.dumps(value).encode(), status, "application/json")

    @classmethod
    def error(cls, status: int, code: str, message: str) -> Response:
        return cls(error_body(code, message), status, "application/json")

    @classmethod
    def of(cls, value: Any) -> Response:
        """What a handler returned, as a response."""
        if isinstance(value, Response):
            return value
        if value is None:
            return cls(b"", 204)
        if isinstance(value, str | bytes):
            return cls(value)
        return cls.json(value)


class ConnectContext:
    """What `on_connect` knows about a new connection: its upgrade request and its token."""

    __slots__ = ("request", "ip", "player", "claims")

    def __init__(self, request: Request, ip: str, player: str | None, claims: Any) -> None:
        self.request = request
        self.ip = ip
        self.player = player
        self.claims = claims


class RoomStorage:
    """Durable key-value storage of one room. Values are anything msgpack can encode.

    This version keeps it in the relay's memory for the life of the process (it
    survives the room being dropped when empty); Redis-backed storage comes with
    room hibernation.
    """

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        raw = self._data.get(key)
        return default if raw is None else msgpack.unpackb(raw)

    async def put(self, key: str, value: Any) -> None:
        self._data[key] = msgpack.packb(value)

    async def delete(self, key: str) -> bool:
        return self._data.pop(key, None) is not None

    async def keys(self) -> list[str]:
        return list(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)


class Room:
    """A room: subclass it, override the handlers, register it under a type name.

    Handlers: `on_start()`, `on_connect(conn, ctx)`, `on_message(conn, message)`
    (`str` for text, `bytes` for binary), `on_close(conn)`, `on_request(request)`,
    `on_alarm()`. An exception in a handler is logged; the connection it was
    handling is closed with 1011 and every other connection is unaffected.

    With `tick_rate` (1-120 Hz) the room runs `on_tick(dt, inputs)` at that fixed rate;
    messages are not given to `on_message` but queued and handed to the next tick as
    `(conn, message)` inputs in arrival order. When `self.state` is a `relay.State`,
    each tick commits it and sends every connection a diff (a snapshot to joiners).
    """

    tick_rate: ClassVar[float | None] = None
    state: State | None = None

    type: str
    id: str
    storage: RoomStorage
    _relay: Relay
    _conns: dict[int, Connection]
    _inbox: deque[_Item] | None
    _running: bool
    _async: frozenset[str]
    _async_message: bool
    _alarm: asyncio.TimerHandle | None
    _alarm_at: float | None
    _inputs: Inputs | None
    _ticker: asyncio.TimerHandle | None
    _tick: int
    _tick_due: float
    _tick_queued: bool
    _auto: dict[str | bytes, bytes] | None
    _shared: list[bytes] | None  # frames broadcast to every connection since the last flush
    _events: int
    _seen_events: int
    _idle_since: float
    restored: Any

    # --- handlers (override) -------------------------------------------------------
    def on_start(self) -> Any:
        return None

    def on_connect(self, conn: Connection, ctx: ConnectContext) -> Any:
        return None

    def on_message(self, conn: Connection, message: str | bytes) -> Any:
        return None

    def on_close(self, conn: Connection) -> Any:
        return None

    def on_request(self, request: Request) -> Any:
        return Response.error(404, "not_found", "this room does not answer HTTP requests")

    def on_alarm(self) -> Any:
        return None

    def on_tick(self, dt: float, inputs: Inputs) -> Any:
        return None

    def snapshot(self) -> Any:
        """What to keep while the room hibernates (msgpack-encodable); `on_start` finds it in
        `self.restored` when the room wakes. Rooms that do not override this never hibernate."""
        raise NotImplementedError

    # --- API for handlers --------------------------------------------------------------
    def broadcast(self, message: Any, exclude: Iterable[Connection | int] = (),
                  droppable: bool = False) -> int:
        """Send to every connection in the room but `exclude`; framed once. Returns recipients.
        A `droppable` message (a position update that the next one replaces) is not sent to
        slow readers (over --slow-reader-bytes unsent)."""
        frame = encode_message(message if isinstance(message, str | bytes)
                               else msgpack.packb(message))
        relay = self._relay
        conns = self._conns
        # Those who must not get this frame take their own queue, caught up to here.
        skipped: list[Connection] = []
        for x in exclude:
            c = conns.get(x if isinstance(x, int) else x.id)
            if c is not None:
                skipped.append(c)
        if droppable and relay._slow:
            slow = [c for c in relay._slow if c.room is self]
            relay.stats.updates_skipped += len(slow)
            skipped += slow
        for c in skipped:
            c._own()
        # Everyone else gets it from the room's shared list: one join per flush for all.
        shared = self._shared
        if shared is None:
            shared = self._shared = []
            relay._dirty_rooms.append(self)
            relay._schedule_flush()
        shared.append(frame)
        for c in skipped:
            c.cursor = len(shared)
        n = len(conns) - len(set(skipped))
        stats = relay.stats
        stats.messages_out += n
        stats.bytes_out += n * len(frame)
        return n

    def connections(self, tag: str | None = None) -> list[Connection]:
        if tag is None:
            return list(self._conns.values())
        return [c for c in self._conns.values() if c._tags is not None and tag in c._tags]

    def connection(self, conn_id: int) -> Connection | None:
        return self._conns.get(conn_id)

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    def set_alarm(self, when: float) -> None:
        """Run `on_alarm` at unix time `when` (replaces any alarm already set)."""
        self.cancel_alarm()
        loop = self._relay.loop
        delay = max(0.0, when - time.time())
        self._alarm_at = when
        self._alarm = loop.call_at(loop.time() + delay, self._fire_alarm)

    def cancel_alarm(self) -> None:
        if self._alarm is not None:
            self._alarm.cancel()
        self._alarm = None
        self._alarm_at = None

    @property
    def alarm(self) -> float | None:
        return self._alarm_at

    @property
    def tick(self) -> int:
        """Ticks run so far."""
        return self._tick

    def set_auto_response(self, request: str | bytes, response: Any) -> None:
        """Answer the exact message `request` with `response` from the connection table,
        without running room code (also while the room hibernates)."""
        frame = encode_message(response if isinstance(response, str | bytes)
                               else msgpack.packb(response))
        if self._auto is None:
            self._auto = {}
        self._auto[request] = frame

    def clear_auto_responses(self) -> None:
        self._auto = None

    # --- runtime (the relay's side) ----------------------------------------------------
    def _bind(self, relay: Relay, type_name: str, room_id: str, storage: RoomStorage) -> None:
        cls = type(self)
        names = _async_handlers.get(cls)
        if names is None:
            names = frozenset(n for n in HANDLERS if inspect.iscoroutinefunction(getattr(cls, n)))
            if "on_tick" in names:
                names |= {"_run_tick"}
            _async_handlers[cls] = names
        self._async = names
        self._async_message = "on_message" in names
        self._running = False
        self._relay = relay
        self.type = type_name
        self.id = room_id
        self.storage = storage
        self._conns = {}
        self._inbox = None
        self._alarm = None
        self._alarm_at = None
        self._inputs = [] if cls.tick_rate else None
        self._ticker = None
        self._tick = 0
        self._tick_due = 0.0
        self._tick_queued = False
        self._auto = None
        self._shared = None
        self._events = 0  # handler calls and messages: the relay hibernates a room when idle
        self._seen_events = -1
        self._idle_since = 0.0
        self.restored = None

    @property
    def _busy(self) -> bool:
        return self._inbox is not None or self._alarm is not None or self._running

    def _call(self, name: str, args: tuple[Any, ...], conn: Connection | None = None,
              done: Done | None = None) -> None:
        """Run handler `name` now, or after what is pending, in arrival order."""
        self._events += 1
        if self._inbox is not None or self._running or name in self._async:
            self._enqueue((name, args, conn, done))
            return
        self._running = True
        try:
            self._run_plain(name, args, conn, done)
        finally:
            self._after_inline()

    def _deliver(self, conn: Connection, message: str | bytes) -> None:
        """`on_message`, the hot path: inline when nothing is pending."""
        if self._auto is not None and self._auto_reply(conn, message):
            return
        self._events += 1
        inputs = self._inputs
        if inputs is not None:
            inputs.append((conn, message))
            return
        if self._inbox is not None or self._running or self._async_message:
            self._enqueue(("on_message", (conn, message), conn, None))
            return
        self._running = True
        try:
            self.on_message(conn, message)
        except Exception:
            self._failed("on_message", conn)
        finally:
            self._after_inline()

    def _auto_reply(self, conn: Connection, message: str | bytes) -> bool:
        """Answer an auto-response request from the table; False when it is not one."""
        assert self._auto is not None
        frame = self._auto.get(message)
        if frame is None:
            return False
        conn.queue(frame)
        return True

    def _run_plain(self, name: str, args: tuple[Any, ...], conn: Connection | None,
                   done: Done | None) -> None:
        try:
            result = getattr(self, name)(*args)
        except Exception:
            self._failed(name, conn)
            _finish(done, None, False)
            return
        _finish(done, result, True)

    def _after_inline(self) -> None:
        """What an inline handler caused (a close, say) runs after it, not inside it."""
        self._running = False
        if self._inbox is not None:
            self._relay.loop.create_task(self._work())

    def _enqueue(self, item: _Item) -> None:
        if self._inbox is not None:
            self._inbox.append(item)
            return
        self._inbox = deque((item,))
        if not self._running:
            self._relay.loop.create_task(self._work())

    async def _work(self) -> None:
        inbox = self._inbox
        assert inbox is not None
        while inbox:
            name, args, conn, done = inbox[0]
            try:
                result = getattr(self, name)(*args)
                if inspect.isawaitable(result):
                    result = await result
            except Exception:
                self._failed(name, conn)
                _finish(done, None, False)
            else:
                _finish(done, result, True)
            finally:
                inbox.popleft()
        self._inbox = None
        self._relay._room_settled(self)

    def _failed(self, name: str, conn: Connection | None) -> None:
        log.exception("room %s/%s: %s raised", self.type, self.id, name)
        self._relay.stats.handler_errors += 1
        if conn is not None:
            conn.close(CLOSE_INTERNAL_ERROR, "internal error")

    # --- ticks -------------------------------------------------------------------------
    def _start_ticking(self) -> None:
        rate = type(self).tick_rate
        if not rate:
            return
        loop = self._relay.loop
        self._tick_due = loop.time() + 1.0 / rate
        self._ticker = loop.call_at(self._tick_due, self._on_timer)

    def _stop_ticking(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _on_timer(self) -> None:
        """Deadlines are kept on a fixed grid from the first tick, so timer jitter does not
        accumulate; a tick that cannot run in its slot is skipped and counted."""
        rate = type(self).tick_rate
        assert rate
        period = 1.0 / rate
        loop = self._relay.loop
        late = loop.time() - self._tick_due
        missed = int(late // period) if late >= period else 0
        self._tick_due += (missed + 1) * period
        self._ticker = loop.call_at(self._tick_due, self._on_timer)
        if self._tick_queued:  # the previous tick still waits behind an async handler
            missed += 1
        else:
            self._tick_queued = True
            self._call("_run_tick", ())
        if missed:
            self._relay.stats.tick_overruns[self.type] += missed

    def _run_tick(self) -> Any:
        inputs = self._inputs
        self._inputs = []
        self._tick += 1
        started = time.perf_counter()
        rate = type(self).tick_rate
        assert inputs is not None and rate
        try:
            result = self.on_tick(1.0 / rate, inputs)
        except BaseException:
            self._tick_queued = False
            raise
        if inspect.isawaitable(result):
            return self._await_tick(result, started)
        self._ticked(started)
        return None

    async def _await_tick(self, result: Any, started: float) -> None:
        try:
            await result
        finally:
            self._tick_queued = False
        self._ticked(started)

    def _ticked(self, started: float) -> None:
        self._tick_queued = False
        relay = self._relay
        if self.state is not None:
            self._send_state(self.state)
            relay._flush()  # the writes now, so the tick's duration includes them
        relay.stats.observe_tick(self.type, time.perf_counter() - started)

    def _send_state(self, state: State) -> None:
        """Commit the tick and queue each connection its message, framed once per distinct
        message: the diff for everyone, a snapshot for joiners; with an interest grid, one
        per distinct view."""
        tick = state.commit()
        prev = tick - 1
        grid = state.grid is not None
        frames: dict[Any, bytes] = {}
        relay = self._relay
        dirty = relay._dirty
        shared = self._shared  # broadcasts during the tick go out before its state
        n = nbytes = 0
        for c in self._conns.values():
            if c.slow_since:  # it catches up from its last tick once it drains
                relay.stats.updates_skipped += 1
                continue
            base = c.synced
            if grid:
                msg = state.view_message(c.id, base)
                key: Any = id(msg)
                frame = frames.get(key)
                if frame is None:
                    frame = frames[key] = encode_message(msg)
            else:
                frame = frames.get(base)
                if frame is None:
                    msg = (state.diff_message(prev) if base == prev and prev
                           else state.message_for(base or None))
                    frame = frames[base] = encode_message(msg)
            c.synced = tick
            out = c.out
            if out is None and shared is None:
                c.out = [frame]
                dirty.append(c)
            else:
                c._own().append(frame)
            n += 1
            nbytes += len(frame)
        if n:
            relay._schedule_flush()
            stats = relay.stats
            stats.messages_out += n
            stats.bytes_out += nbytes

    def _fire_alarm(self) -> None:
        self._alarm = None
        self._alarm_at = None
        self._call("on_alarm", ())
        self._relay._room_settled(self)


def _finish(done: Done | None, result: Any, ok: bool) -> None:
    """Hand a handler's result on; a failing callback must not stall the room."""
    if done is None:
        return
    try:
        done(result, ok)
    except Exception:
        log.exception("answering a room handler's result failed")


class BroadcastRoom(Room):
    """Built-in `broadcast`: every message goes unchanged to every other connection."""

    def snapshot(self) -> None:
        return None  # nothing to keep: it hibernates for free

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        self.broadcast(message, exclude=(conn,))
