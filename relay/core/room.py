"""The Room API that game code subclasses: handlers to override and what they may call.

Everything the relay keeps for a room lives in its runtime (relay.core.runtime), which
the room reaches through one attribute, `_runtime`, the only name the base class takes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import msgpack

from relay.core.member import Member
from relay.http import Request, error_body
from relay.state import State

if TYPE_CHECKING:
    from relay.core.runtime import RoomRuntime

HANDLERS = ("on_start", "on_connect", "on_message", "on_close", "on_request", "on_alarm",
            "on_tick")
MAX_TICK_RATE = 120.0
SEAT_POLICIES = ("replace", "refuse", "shared")

Connection = Member  # the name rooms have always used for their members
Inputs = list[tuple[Member, "str | bytes"]]


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
    # What a second connection of a player already in the room does (players come from
    # join tokens; an open relay has none): "replace" closes the first with 4409, "refuse"
    # answers the second with HTTP 409, "shared" lets a player hold several connections.
    seats: ClassVar[str] = "replace"
    state: State | None = None

    type: str
    id: str
    storage: RoomStorage
    restored: Any
    _runtime: RoomRuntime

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
    def broadcast(self, message: Any, exclude: Iterable[Connection | Any] = (),
                  droppable: bool = False) -> int:
        """Send to every connection in the room but `exclude` (connections or their ids);
        framed once. Returns recipients. A `droppable` message (a position update that the
        next one replaces) is not sent to slow readers (over --slow-reader-bytes unsent)."""
        rt = self._runtime
        return rt.host.outbox.broadcast(rt, message, exclude, droppable)

    def connections(self, tag: str | None = None) -> list[Connection]:
        members = self._runtime.members.values()
        if tag is None:
            return list(members)
        return [c for c in members if c.has_tag(tag)]

    def connection(self, conn_id: Any) -> Connection | None:
        return self._runtime.members.get(conn_id)

    @property
    def connection_count(self) -> int:
        return len(self._runtime.members)

    def set_alarm(self, when: float) -> None:
        """Run `on_alarm` at unix time `when` (replaces any alarm already set)."""
        self._runtime.set_alarm(when)

    def cancel_alarm(self) -> None:
        self._runtime.cancel_alarm()

    @property
    def alarm(self) -> float | None:
        return self._runtime.alarm_at

    @property
    def tick(self) -> int:
        """Ticks run so far."""
        return self._runtime.tick

    def set_auto_response(self, request: str | bytes, response: Any) -> None:
        """Answer the exact message `request` with `response` from the connection table,
        without running room code (also while the room hibernates)."""
        rt = self._runtime
        frame = rt.host.outbox.encode(response if isinstance(response, str | bytes)
                                      else msgpack.packb(response))
        if rt.auto is None:
            rt.auto = {}
        rt.auto[request] = frame

    def clear_auto_responses(self) -> None:
        self._runtime.auto = None


class BroadcastRoom(Room):
    """Built-in `broadcast`: every message goes unchanged to every other connection."""

    def snapshot(self) -> None:
        return None  # nothing to keep: it hibernates for free

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        self.broadcast(message, exclude=(conn,))
