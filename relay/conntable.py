"""The connection table: one compact record per socket, which is also its asyncio protocol.

A `Connection` holds everything the relay knows about a socket (room, player, tags,
attachment, rate buckets, last-seen time, queued frames). Rooms get these records as
handles; the transport inside is private to the relay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

import msgpack

from relay.ws.frames import (
    CLOSE_ABNORMAL,
    CLOSE_NO_STATUS,
    CLOSE_POLICY,
    OP_CLOSE,
    OP_PONG,
    Close,
    FrameReader,
    Message,
    Ping,
    ProtocolError,
    close_payload,
    encode_frame,
    encode_message,
    valid_close_code,
)

if TYPE_CHECKING:
    from relay.room import Room
    from relay.server import Relay
    from relay.ws.handshake import Request

log = logging.getLogger("stadium.relay")

HANDSHAKE, OPEN, CLOSING, CLOSED = range(4)
SHARED = FrameReader(masked=True, max_message_size=0)  # never fed: see Connection._reader


class Connection(asyncio.Protocol):
    """One socket. Public to rooms: `id`, `player`, `ip`, `tags`, `state`, `send`, `close`."""

    __slots__ = (
        "id", "ip", "player", "_tags", "room", "phase", "out", "last_seen", "ping_sent",
        "deadline", "close_code", "msg_tokens", "byte_tokens", "bucket_at", "strikes",
        "strike_at", "synced", "slow_since", "cursor", "_state", "_relay", "_transport", "_reader",
        "_head", "_request", "_need",
    )

    def __init__(self, relay: Relay) -> None:
        self._relay = relay
        self.id = 0
        self.ip = ""
        self.player: str | None = None
        self._tags: set[str] | None = None  # made on first use: most sockets have none
        self.room: Room | None = None
        self.phase = HANDSHAKE
        self.out: list[bytes] | None = None
        self.last_seen = 0.0
        self.ping_sent = False
        self.deadline = 0.0
        self.close_code = CLOSE_ABNORMAL
        self.msg_tokens = 0.0
        self.byte_tokens = 0.0
        self.bucket_at = 0.0
        self.strikes = 0.0
        self.strike_at = 0.0
        self.synced = 0  # the last state tick this connection was sent (0: none yet)
        self.slow_since = 0.0  # when its unsent bytes went over --slow-reader-bytes (0: not)
        # How many of its room's broadcasts of this flush (room._shared) `out` already holds
        # or skips; 0 whenever `out` is None.
        self.cursor = 0
        self._state: Any = None
        self._transport: asyncio.Transport | None = None
        # SHARED between frames: it reads with the relay's one reader, which holds nothing
        # then; a socket keeps a reader of its own only while a frame or a fragmented message
        # is incomplete. None: it does not read frames (handshake, failed, closed).
        self._reader: FrameReader | None = None
        self._head = bytearray()  # the request head, then its body, until answered or upgraded
        self._request: Request | None = None  # parsed head while its body is arriving
        self._need = 0

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.ip} phase={self.phase}>"

    # --- API for rooms -----------------------------------------------------------------
    @property
    def tags(self) -> set[str]:
        """Strings the room labels this socket with; `room.connections(tag=...)` selects."""
        tags = self._tags
        if tags is None:
            tags = self._tags = set()
        return tags

    @property
    def state(self) -> Any:
        """A small attachment (msgpack-encodable, at most `max_attachment_size` bytes)."""
        return self._state

    @state.setter
    def state(self, value: Any) -> None:
        size = len(msgpack.packb(value))
        limit = self._relay.config.max_attachment_size
        if size > limit:
            raise ValueError(f"conn.state is {size} bytes of msgpack, over the {limit}-byte limit")
        self._state = value

    @property
    def open(self) -> bool:
        return self.phase == OPEN

    def send(self, message: Any) -> None:
        """`str` goes as a text frame, `bytes` as binary, anything else as msgpack binary."""
        if self.phase != OPEN:
            return
        if not isinstance(message, str | bytes):
            message = msgpack.packb(message)
        frame = encode_message(message)
        stats = self._relay.stats
        stats.messages_out += 1
        stats.bytes_out += len(frame)
        self.queue(frame)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake; the socket closes when the client answers (or times out)."""
        if self.phase != OPEN:
            return
        if not valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        self._start_close(code, reason)

    # --- relay side ----------------------------------------------------------------------
    def queue(self, frame: bytes) -> None:
        self._own().append(frame)

    def _own(self) -> list[bytes]:
        """This socket's own queue for the next flush, caught up with its room's broadcasts
        so far, so that what is queued next goes out after them."""
        out = self.out
        if out is None:
            out = self.out = []
            relay = self._relay
            relay._dirty.append(self)
            relay._schedule_flush()
        room = self.room
        if room is not None:
            shared = room._shared
            if shared is not None and len(shared) > self.cursor:
                out += shared[self.cursor:]
                self.cursor = len(shared)
        return out

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        self._relay._accepted(self, transport)

    def pause_writing(self) -> None:
        """The kernel and transport hold more than --slow-reader-bytes for this socket: it
        skips droppable updates until it drains, and is dropped if it stays slow."""
        self.slow_since = self._relay.loop.time()
        self._relay._slow.add(self)

    def resume_writing(self) -> None:
        self.slow_since = 0.0
        self._relay._slow.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay._end_handshake(self)
        self.phase = CLOSED
        self._transport = None
        self._reader = None
        self.out = None
        self.cursor = 0
        self._relay._slow.discard(self)
        self._relay._lost(self)

    def data_received(self, data: bytes) -> None:
        relay = self._relay
        self.last_seen = now = relay.loop.time()
        reader = self._reader
        if reader is None:
            if self.phase == HANDSHAKE:
                relay._head_data(self, data)
            return
        nbytes = len(data)
        relay.stats.bytes_in += nbytes
        # Token buckets refill on every read and the byte bucket pays for every read, so
        # a message split over many reads costs what it weighs.
        cfg = relay.config
        elapsed = now - self.bucket_at
        self.bucket_at = now
        bt = self.byte_tokens + elapsed * cfg.byte_rate
        if bt > cfg.byte_burst:
            bt = cfg.byte_burst
        self.byte_tokens = bt - nbytes
        mt = self.msg_tokens + elapsed * cfg.msg_rate
        self.msg_tokens = mt if mt < cfg.msg_burst else cfg.msg_burst
        shared = reader is SHARED
        if shared:
            reader = relay.idle_reader
        try:
            events = reader.feed(data)
        except ProtocolError as e:
            if shared:  # it may hold part of the bad frame: start afresh
                relay.idle_reader = relay._new_reader()
            self._handle(e.events, now)
            self._fail(e.code, e.reason)
            return
        if reader.idle:
            if not shared:
                self._reader = SHARED  # its own is no longer needed
        elif shared:  # a partial frame: this socket keeps the reader, the relay takes another
            self._reader = reader
            relay.idle_reader = relay._new_reader()
        if events:
            self._handle(events, now)

    def _handle(self, events: list[Any], now: float) -> None:
        stats = self._relay.stats
        mt = self.msg_tokens
        in_debt = self.byte_tokens < 0.0
        for ev in events:
            kind = type(ev)
            if kind is Message:
                if self.phase != OPEN:
                    continue  # after our close frame, data is dropped (RFC 6455 5.5.1)
                if mt < 1.0 or in_debt:
                    stats.rate_limit_drops += 1
                    self._strike(now, "bytes" if in_debt else "messages")
                    continue
                mt -= 1.0
                stats.messages_in += 1
                room = self.room
                if room is not None:
                    room._deliver(self, ev.data)
            elif kind is Ping:
                self.queue(encode_frame(OP_PONG, ev.payload))
            elif kind is Close:
                self._peer_closed(ev)
                break
            else:
                self.ping_sent = False
        self.msg_tokens = mt

    def _strike(self, now: float, which: str) -> None:
        s = self.strikes - (now - self.strike_at)
        self.strikes = (s if s > 0.0 else 0.0) + 1.0
        self.strike_at = now
        if self.strikes > self._relay.config.rate_close_after and self.phase == OPEN:
            log.warning("conn %d ip %s: %s rate limit exceeded, closing 1008",
                        self.id, self.ip, which)
            self._start_close(CLOSE_POLICY, "rate limit exceeded")

    def _peer_closed(self, ev: Close) -> None:
        if self.phase == OPEN:
            # Echo the peer's code, as RFC 6455 5.5.1 suggests.
            self.close_code = ev.code
            self._write_now(encode_frame(OP_CLOSE, close_payload(ev.code, "")))
            self._relay._left(self)
        self._closing_now()

    def _closing_now(self) -> None:
        """Close TCP once written; abort it if the peer has not read it by the deadline."""
        self.phase = CLOSING
        self.deadline = self._relay.loop.time() + self._relay.config.close_timeout
        t = self._transport
        if t is not None:
            t.close()

    def _start_close(self, code: int, reason: str) -> None:
        self.close_code = code
        self._write_now(encode_frame(OP_CLOSE, close_payload(code, reason)))
        self.phase = CLOSING
        self.deadline = self._relay.loop.time() + self._relay.config.close_timeout
        self._relay._left(self)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): close frame, then end our side of TCP.

        What the client still sends is read and dropped until it closes or the close
        deadline passes: closing a socket with unread input would reset it, and the client
        might then never see the close frame and its code (1009, say)."""
        if self.phase == OPEN:
            log.info("conn %d ip %s: protocol error, closing %d: %s",
                     self.id, self.ip, code, reason)
            self.close_code = code
            self._write_now(encode_frame(OP_CLOSE, close_payload(code, reason)))
            self._relay._left(self)
        self._reader = None
        t = self._transport
        if t is not None and t.can_write_eof():
            self.phase = CLOSING
            self.deadline = self._relay.loop.time() + self._relay.config.close_timeout
            t.write_eof()
        else:
            self._closing_now()

    def _write_now(self, frame: bytes) -> None:
        """Write what is queued for this socket, then `frame`, in one write."""
        t = self._transport
        if t is None:
            return
        out = self._own()
        self.out = None
        self.cursor = 0
        out.append(frame)
        t.write(b"".join(out))

    def abort(self, code: int, reason: str) -> None:
        """Drop the socket without a close handshake (slow reader, deadline passed)."""
        if self.phase in (OPEN, HANDSHAKE) and code != CLOSE_NO_STATUS:
            self.close_code = code
        log.info("conn %d ip %s: aborted (%d: %s)", self.id, self.ip, code, reason)
        self._relay._end_handshake(self)
        self._relay._left(self)
        self.phase = CLOSING
        t = self._transport
        if t is not None:
            t.abort()
