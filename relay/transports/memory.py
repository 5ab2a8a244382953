"""An in-memory transport: members with no socket, for tests of rooms and of the host.

It implements the `Transport` half of `Member` for real: the outbox writes its batches
to the member's link, which keeps the bytes; `received()` parses them back into
messages. Its framing is its own (a kind byte and a length before each message).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from relay.core.host import RoomHost
from relay.core.member import Member
from relay.core.room import ConnectContext
from relay.http import Request

_HEAD = struct.Struct("!cI")
TEXT, BINARY = b"t", b"b"


def encode(data: str | bytes) -> bytes:
    if isinstance(data, str):
        raw = data.encode()
        return _HEAD.pack(TEXT, len(raw)) + raw
    return _HEAD.pack(BINARY, len(data)) + data


def decode(blob: bytes) -> list[str | bytes]:
    """Every message in `blob` (whole messages only: the outbox writes no partial one)."""
    messages: list[str | bytes] = []
    at = 0
    while at < len(blob):
        kind, n = _HEAD.unpack_from(blob, at)
        at += _HEAD.size
        raw = blob[at:at + n]
        at += n
        messages.append(raw.decode() if kind == TEXT else raw)
    return messages


class MemoryLink:
    """Keeps what the outbox writes; `unread` stands in for a socket's unsent bytes."""

    __slots__ = ("writes", "unread")

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.unread = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.unread


class MemoryMember(Member):
    """A member whose bytes stay in memory."""

    __slots__ = ("phase", "closed_with", "mem")

    kind = "memory"
    encode = staticmethod(encode)

    def __init__(self, host: RoomHost) -> None:
        super().__init__(host)
        self.mem = MemoryLink()
        self.link = self.mem
        self.phase = "open"
        self.closed_with: tuple[int, str] | None = None

    @property
    def is_open(self) -> bool:
        return self.phase == "open"

    def end(self, code: int, reason: str) -> None:
        self._gone("closed", (code, reason))

    def abort(self, code: int, reason: str) -> None:
        self._gone("aborted", (code, reason))

    def _gone(self, phase: str, close: tuple[int, str] | None) -> None:
        """Out of its room, nothing more written to it; with `close`, what was queued before
        the close still arrives."""
        if self.phase != "open":
            return
        if close is not None:
            self.host.outbox.write_now(self, b"")
            self.close_code = close[0]
            self.closed_with = close
        self.phase = phase
        self.host.leave(self)
        self.host.outbox.forget(self)
        self.link = None

    # --- the client's side -----------------------------------------------------------------
    def say(self, message: Any) -> None:
        """What a client sends: handed to its room as the transport would."""
        if not isinstance(message, str | bytes):
            message = msgpack.packb(message)
        rt = self.room
        if rt is not None:
            rt.deliver(self, message)

    def received(self) -> list[str | bytes]:
        """The messages written to this member since the last call, in order."""
        writes, self.mem.writes = self.mem.writes, []
        return decode(b"".join(writes))

    def writes(self) -> int:
        """How many writes the outbox has made to this member so far (not yet read)."""
        return len(self.mem.writes)

    def leave(self) -> None:
        """The client goes away without a close (a dropped connection)."""
        self._gone("gone", None)


class MemoryTransport:
    """Joins in-memory members to a host's rooms, as a socket transport would."""

    def __init__(self, host: RoomHost) -> None:
        self.host = host

    def join(self, room_type: str, room_id: str, player: str | None = None,
             ip: str = "127.0.0.1", query: str = "") -> MemoryMember:
        host = self.host
        rt = host.room(room_type, room_id)
        host.check_seat(rt, player)
        m = MemoryMember(host)
        m.id = host.member_id()
        m.ip = ip
        m.player = player
        target = f"/rooms/{room_type}/{room_id}" + (f"?{query}" if query else "")
        host.join(m, rt, ConnectContext(Request("GET", target, {}), ip, player, None))
        return m
