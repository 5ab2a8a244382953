"""`Member`: the handle a room holds for one player's connection, whatever carries it.

Rooms see only the public half (id, player, ip, tags, state, send, close). A transport
subclasses `Member` and implements the other half, the `Transport` protocol below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgpack

from relay.ws.frames import CLOSE_ABNORMAL, valid_close_code

if TYPE_CHECKING:
    from relay.core.host import RoomHost
    from relay.core.runtime import RoomRuntime

# The close codes (and which ones an endpoint may send) are RFC 6455's, which WebTransport
# carries as they are; the core adds the one it sends when a seat changes hands.
CLOSE_REPLACED = 4409  # a newer connection took this member's seat (Room.seats = "replace")


class Link(Protocol):
    """Where a member's bytes go: an asyncio transport, or any object that writes."""

    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class Transport(Protocol):
    """What a transport implements for its members (as a `Member` subclass).

    `link` is where the outbox writes the member's bytes (None once it is gone);
    `encode` frames one message for this transport kind; `is_open` says whether the
    member still takes messages; `end` starts an orderly close with a code, `abort`
    drops the connection at once (slow reader, deadline passed, drain)."""

    kind: ClassVar[str]
    link: Link | None

    @staticmethod
    def encode(data: str | bytes) -> bytes: ...

    @property
    def is_open(self) -> bool: ...

    def end(self, code: int, reason: str) -> None: ...

    def abort(self, code: int, reason: str) -> None: ...


class Member:
    """One player's connection to a room. Public to rooms: `id`, `player`, `ip`, `tags`,
    `state`, `open`, `send`, `close`. `id` is unique across processes and machines."""

    __slots__ = ("id", "ip", "player", "_tags", "room", "host", "link", "out", "cursor",
                 "synced", "slow_since", "close_code", "_state")

    kind: ClassVar[str] = ""

    def __init__(self, host: RoomHost) -> None:
        self.host = host
        self.id = 0
        self.ip = ""
        self.player: str | None = None
        self._tags: set[str] | None = None  # made on first use: most members have none
        self.room: RoomRuntime | None = None  # the room it is in; None before and after
        self.link: Link | None = None
        # The outbox's bookkeeping: this member's own queue for the next flush (None: it
        # takes its room's shared batch as it is), how many of the room's shared frames
        # `out` already holds or skips, the last state tick sent (0: none yet), and when its
        # unsent bytes went over --slow-reader-bytes (0: not).
        self.out: list[bytes] | None = None
        self.cursor = 0
        self.synced = 0
        self.slow_since = 0.0
        self.close_code = CLOSE_ABNORMAL
        self._state: Any = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.ip}>"

    # --- API for rooms -----------------------------------------------------------------
    @property
    def tags(self) -> set[str]:
        """Strings the room labels this member with; `room.connections(tag=...)` selects."""
        tags = self._tags
        if tags is None:
            tags = self._tags = set()
        return tags

    def tag_list(self) -> list[str]:
        """The tags, sorted, without making a set for a member that has none."""
        tags = self._tags
        return sorted(tags) if tags else []

    def has_tag(self, tag: str) -> bool:
        tags = self._tags
        return tags is not None and tag in tags

    @property
    def state(self) -> Any:
        """A small attachment (msgpack-encodable, at most `max_attachment_size` bytes)."""
        return self._state

    @state.setter
    def state(self, value: Any) -> None:
        size = len(msgpack.packb(value))
        limit = self.host.config.max_attachment_size
        if size > limit:
            raise ValueError(f"conn.state is {size} bytes of msgpack, over the {limit}-byte limit")
        self._state = value

    @property
    def open(self) -> bool:
        return self.is_open

    def send(self, message: Any) -> None:
        """`str` goes as a text message, `bytes` as binary, anything else as msgpack binary."""
        if not self.is_open:
            return
        if not isinstance(message, str | bytes):
            message = msgpack.packb(message)
        frame = self.encode(message)
        host = self.host
        stats = host.stats
        stats.messages_out += 1
        stats.bytes_out += len(frame)
        host.outbox.own(self).append(frame)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with `code`; the member leaves its room at once."""
        if not self.is_open:
            return
        if not valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        self.end(code, reason)

    def queue(self, frame: bytes) -> None:
        """Queue bytes already encoded for this transport for the next flush."""
        self.host.outbox.own(self).append(frame)

    # --- the transport's half (see `Transport`) -------------------------------------------
    @staticmethod
    def encode(data: str | bytes) -> bytes:
        raise NotImplementedError

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def end(self, code: int, reason: str) -> None:
        raise NotImplementedError

    def abort(self, code: int, reason: str) -> None:
        raise NotImplementedError
