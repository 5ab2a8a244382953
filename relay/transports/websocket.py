"""The WebSocket transport: an asyncio protocol per socket that is also its room `Member`.

A socket starts as an HTTP/1.1 request: an upgrade to `/rooms/{type}/{id}` joins the
room through admission and the host; any other request goes to the server's routes.
Everything runs in loop callbacks, no task per socket, and an idle socket keeps no
read buffer of its own.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any, cast

from relay.config import RelayConfig
from relay.core.admission import Admission
from relay.core.host import RoomHost
from relay.core.member import Member
from relay.core.room import ConnectContext
from relay.http import HttpError, Request, error_response, find_head_end, parse_request_head
from relay.ws.frames import (
    CLOSE_GOING_AWAY,
    CLOSE_NO_STATUS,
    CLOSE_POLICY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    Close,
    FrameReader,
    Message,
    Ping,
    ProtocolError,
    close_payload,
    encode_frame,
    encode_message,
)
from relay.ws.handshake import accept_response, is_upgrade, validate_upgrade
from stadium.tokens import Claims

log = logging.getLogger("stadium.relay")

HANDSHAKE, OPEN, CLOSING, CLOSED = range(4)
SHARED = FrameReader(masked=True, max_message_size=0)  # never fed: see Connection._reader
_UPGRADED = bytearray()  # every upgraded socket's _head: none reads a request again
_PING = encode_frame(OP_PING, b"")

# (connection, request): answer with connection.respond(raw bytes) or raise HttpError
HttpRoutes = Callable[["Connection", Request], None]


class Connection(Member, asyncio.Protocol):
    """One WebSocket (or a plain HTTP request before it is one)."""

    __slots__ = ("phase", "last_seen", "ping_sent", "deadline", "msg_tokens", "byte_tokens",
                 "bucket_at", "strikes", "strike_at", "transport", "_ws", "_reader", "_head",
                 "_request", "_need")

    kind = "websocket"
    encode = staticmethod(encode_message)

    def __init__(self, ws: WebSocketTransport) -> None:
        super().__init__(ws.host)
        self._ws = ws
        self.phase = HANDSHAKE
        self.last_seen = 0.0
        self.ping_sent = False
        self.deadline = 0.0
        self.msg_tokens = 0.0
        self.byte_tokens = 0.0
        self.bucket_at = 0.0
        self.strikes = 0.0
        self.strike_at = 0.0
        self.transport: asyncio.Transport | None = None
        # SHARED between frames: it reads with the transport's one reader, which holds
        # nothing then; a socket keeps a reader of its own only while a frame or a
        # fragmented message is incomplete. None: it does not read frames (handshake,
        # failed, closed).
        self._reader: FrameReader | None = None
        self._head = bytearray()  # the request head, then its body, until answered or upgraded
        self._request: Request | None = None  # parsed head while its body is arriving
        self._need = 0

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.ip} phase={self.phase}>"

    # --- Member's transport half ---------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.phase == OPEN

    def end(self, code: int, reason: str) -> None:
        self._start_close(code, reason)

    def abort(self, code: int, reason: str) -> None:
        """Drop the socket without a close handshake (slow reader, deadline passed)."""
        if self.phase in (OPEN, HANDSHAKE) and code != CLOSE_NO_STATUS:
            self.close_code = code
        log.info("conn %d ip %s: aborted (%d: %s)", self.id, self.ip, code, reason)
        self._ws.end_handshake(self)
        self._ws.left(self)
        self.phase = CLOSING
        t = self.transport
        if t is not None:
            t.abort()

    def respond(self, raw: bytes) -> None:
        """Answer the HTTP request (a whole response), then close."""
        self._ws.end_handshake(self)
        self._request = None
        del self._head[:]
        t = self.transport
        if t is not None:
            t.write(raw)
        self._closing_now()

    # --- asyncio protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self.link = t = cast(asyncio.Transport, transport)
        self._ws.accepted(self, t)

    def pause_writing(self) -> None:
        """The kernel and transport hold more than --slow-reader-bytes for this socket: it
        skips droppable updates until it drains, and is dropped if it stays slow."""
        self.host.outbox.slow_started(self)

    def resume_writing(self) -> None:
        self.host.outbox.slow_ended(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._ws.end_handshake(self)
        self.phase = CLOSED
        self.transport = self.link = None
        self._reader = None
        self.host.outbox.forget(self)
        self._ws.lost(self)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        self.last_seen = now = ws.loop.time()
        reader = self._reader
        if reader is None:
            if self.phase == HANDSHAKE:
                ws.head_data(self, data)
            return
        nbytes = len(data)
        ws.stats.bytes_in += nbytes
        # Token buckets refill on every read and the byte bucket pays for every read, so
        # a message split over many reads costs what it weighs.
        cfg = ws.config
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
            reader = ws.idle_reader
        try:
            events = reader.feed(data)
        except ProtocolError as e:
            if shared:  # it may hold part of the bad frame: start afresh
                ws.idle_reader = ws.new_reader()
            self._handle(e.events, now)
            self._fail(e.code, e.reason)
            return
        if reader.idle:
            if not shared:
                self._reader = SHARED  # its own is no longer needed
        elif shared:  # a partial frame: this socket keeps the reader, the transport another
            self._reader = reader
            ws.idle_reader = ws.new_reader()
        if events:
            self._handle(events, now)

    def _handle(self, events: list[Any], now: float) -> None:
        stats = self._ws.stats
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
                rt = self.room
                if rt is not None:
                    rt.deliver(self, ev.data)
            elif kind is Ping:
                if self.phase == OPEN:  # after our close frame we send nothing more
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
        if self.strikes > self._ws.config.rate_close_after and self.phase == OPEN:
            log.warning("conn %d ip %s: %s rate limit exceeded, closing 1008",
                        self.id, self.ip, which)
            self._start_close(CLOSE_POLICY, "rate limit exceeded")

    def _peer_closed(self, ev: Close) -> None:
        if self.phase == OPEN:
            # Echo the peer's code, as RFC 6455 5.5.1 suggests.
            self.close_code = ev.code
            self.host.outbox.write_now(self, encode_frame(OP_CLOSE, close_payload(ev.code, "")))
            self.phase = CLOSING  # nothing the room sends in on_close goes after the close
            self._ws.left(self)
        self._closing_now()

    def _closing_now(self) -> None:
        """Close TCP once written; abort it if the peer has not read it by the deadline."""
        self.phase = CLOSING
        self.deadline = self._ws.loop.time() + self._ws.config.close_timeout
        t = self.transport
        if t is not None:
            t.close()

    def _start_close(self, code: int, reason: str) -> None:
        self.close_code = code
        self.host.outbox.write_now(self, encode_frame(OP_CLOSE, close_payload(code, reason)))
        self.phase = CLOSING
        self.deadline = self._ws.loop.time() + self._ws.config.close_timeout
        self._ws.left(self)

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): close frame, then end our side of TCP.

        What the client still sends is read and dropped until it closes or the close
        deadline passes: closing a socket with unread input would reset it, and the client
        might then never see the close frame and its code (1009, say)."""
        if self.phase == OPEN:
            log.info("conn %d ip %s: protocol error, closing %d: %s",
                     self.id, self.ip, code, reason)
            self.close_code = code
            self.host.outbox.write_now(self, encode_frame(OP_CLOSE, close_payload(code, reason)))
            self.phase = CLOSING  # nothing the room sends in on_close goes after the close
            self._ws.left(self)
        self._reader = None
        t = self.transport
        if t is not None and t.can_write_eof():
            self.phase = CLOSING
            self.deadline = self._ws.loop.time() + self._ws.config.close_timeout
            t.write_eof()
            self.host.outbox.forget(self)  # nothing is written after the end of our side
            self.link = None
        else:
            self._closing_now()


class WebSocketTransport:
    """The sockets of one listener: HTTP heads, upgrades, deadlines, pings and drain."""

    def __init__(self, config: RelayConfig, host: RoomHost, admission: Admission,
                 routes: HttpRoutes) -> None:
        self.config = config
        self.host = host
        self.loop = host.loop
        self.stats = host.stats
        self.admission = admission
        self.routes = routes
        self.conns: set[Connection] = set()
        self.idle_reader = self.new_reader()  # shared by every socket between frames
        self.draining = False
        # Called with the claims of each join token admitted (the relay directory's seats).
        self.on_join: Callable[[Claims], None] | None = None

    def protocol(self) -> Connection:
        return Connection(self)

    def new_reader(self) -> FrameReader:
        return FrameReader(masked=True, max_message_size=self.config.max_message_size)

    @property
    def open_count(self) -> int:
        return sum(1 for c in self.conns if c.phase == OPEN)

    # --- a socket's life -------------------------------------------------------------------
    def accepted(self, conn: Connection, transport: asyncio.Transport) -> None:
        conn.id = self.host.member_id()
        peer = transport.get_extra_info("peername")
        # One string per address, not per socket (thousands share an address in tests)
        conn.ip = sys.intern(peer[0]) if isinstance(peer, tuple) else "unix"
        conn.deadline = self.loop.time() + self.config.handshake_timeout
        if self.draining:
            conn.phase = CLOSING
            transport.abort()
            return
        self.conns.add(conn)
        if not self.config.trust_proxy:  # behind a proxy every socket has the proxy's address
            try:
                self.admission.pending_started(conn.ip)
            except HttpError as e:
                conn.phase = CLOSING
                self.reject(conn, e)

    def end_handshake(self, conn: Connection) -> None:
        """The socket leaves the handshake phase: it no longer counts as pending."""
        if conn.phase == HANDSHAKE and not self.config.trust_proxy:
            self.admission.pending_ended(conn.ip)

    def left(self, conn: Connection) -> None:
        """The socket is no longer in its room (closing or gone)."""
        if conn.room is not None:
            self.admission.closed(conn.ip)
            self.host.leave(conn)

    def lost(self, conn: Connection) -> None:
        self.conns.discard(conn)
        self.left(conn)

    def sweep(self, now: float) -> None:
        """Handshake, idle and close deadlines of every socket; pings to quiet ones."""
        cfg = self.config
        for c in list(self.conns):
            phase = c.phase
            if phase == OPEN:
                if c.slow_since and now - c.slow_since > cfg.slow_reader_timeout:
                    c.abort(CLOSE_POLICY, "slow reader: it did not read for too long")
                    continue
                silent = now - c.last_seen
                if silent > cfg.idle_timeout:
                    log.info("conn %d ip %s: idle for %.0fs, closing", c.id, c.ip, silent)
                    c.end(CLOSE_GOING_AWAY, "idle timeout")
                elif silent > cfg.ping_interval and not c.ping_sent:
                    c.ping_sent = True
                    c.queue(_PING)
            elif now > c.deadline:
                if phase == HANDSHAKE:
                    self.stats.http_rejects[408] += 1
                c.abort(CLOSE_GOING_AWAY, "handshake timeout" if phase == HANDSHAKE
                        else "close timeout")

    def close_all(self) -> None:
        """Drain: open sockets get 1001 (reconnect elsewhere), unfinished requests are dropped."""
        self.draining = True
        for c in list(self.conns):
            if c.phase == OPEN:
                c.end(CLOSE_GOING_AWAY, "server shutting down, reconnect")
            elif c.phase == HANDSHAKE:
                c.abort(CLOSE_GOING_AWAY, "server shutting down")

    def abort_all(self, reason: str) -> None:
        for c in list(self.conns):
            c.abort(CLOSE_GOING_AWAY, reason)

    # --- HTTP ------------------------------------------------------------------------------
    def head_data(self, conn: Connection, data: bytes) -> None:
        try:
            if conn._request is not None:
                self._body_data(conn, data)
                return
            cfg = self.config
            head = conn._head
            searched = max(0, len(head) - 3)
            head += data
            end = find_head_end(head, searched)
            if end < 0 and head.find(b"\n\n", searched) >= 0:
                raise HttpError(400, "bad_request", "request lines must end with CRLF")
            if end < 0 or end > cfg.max_head_size:
                if end > cfg.max_head_size or len(head) > cfg.max_head_size:
                    raise HttpError(431, "head_too_large",
                                    f"request head over {cfg.max_head_size} bytes")
                return
            req = parse_request_head(bytes(head[:end - 4]))
            rest = bytes(head[end:])
            del head[:]
            if cfg.trust_proxy:
                forwarded = req.headers.get("x-forwarded-for", "").split(",")[-1].strip()
                if forwarded:
                    conn.ip = forwarded
            if is_upgrade(req):
                self._upgrade(conn, req, rest)
                return
            if "transfer-encoding" in req.headers:
                raise HttpError(411, "length_required",
                                "chunked bodies are not supported: send Content-Length")
            length = req.headers.get("content-length", "0").strip()
            if not (length.isascii() and length.isdigit()):
                raise HttpError(400, "bad_request", "Content-Length must be a number")
            # More than 15 digits is over any body limit, and too long for int() to be cheap.
            need = int(length) if len(length) <= 15 else cfg.max_body_size + 1
            if need > cfg.max_body_size:
                raise HttpError(413, "body_too_large", f"body over {cfg.max_body_size} bytes")
            conn._request = req
            conn._need = need
            self._body_data(conn, rest)
        except HttpError as e:
            self.reject(conn, e)

    def _body_data(self, conn: Connection, data: bytes) -> None:
        """Collect a request body; answer once all `Content-Length` bytes are in."""
        body = conn._head
        body += data
        req = conn._request
        if len(body) < conn._need or req is None:
            return
        req.body = bytes(body[:conn._need])
        del body[:]
        conn._request = None
        self.end_handshake(conn)
        conn.phase = CLOSING
        conn.deadline = self.loop.time() + self.config.handshake_timeout  # for a room's answer
        self.routes(conn, req)

    def reject(self, conn: Connection, err: HttpError) -> None:
        self.stats.http_rejects[err.status] += 1
        log.info("conn %d ip %s: HTTP %d %s: %s", conn.id, conn.ip, err.status, err.code,
                 err.message)
        conn.respond(error_response(err))

    # --- WebSocket upgrade -----------------------------------------------------------------
    def _upgrade(self, conn: Connection, req: Request, rest: bytes) -> None:
        cfg = self.config
        if self.draining:
            raise HttpError(503, "draining", "the relay is shutting down; try another")
        host = self.host
        type_name, room_id = host.route(req.path)
        ip = conn.ip
        self.admission.check_room_for(ip)
        accept = validate_upgrade(req)
        origin = req.headers.get("origin")
        if cfg.allowed_origins and origin is not None and origin not in cfg.allowed_origins:
            raise HttpError(403, "origin_not_allowed", f"origin {origin!r} is not allowed")
        claims = self.admission.admit(ip, req, type_name, room_id, self.loop.time())
        rt = host.room(type_name, room_id)
        host.check_seat(rt, claims.player if claims is not None else None)
        t = conn.transport
        assert t is not None
        t.set_write_buffer_limits(high=cfg.slow_reader_bytes)
        t.write(accept_response(accept))
        self.end_handshake(conn)
        conn.phase = OPEN
        conn._reader = SHARED
        conn._head = _UPGRADED
        conn.deadline = 0.0
        conn.player = claims.player if claims is not None else None
        if claims is not None and self.on_join is not None:
            self.on_join(claims)
        conn.msg_tokens = cfg.msg_burst
        conn.byte_tokens = cfg.byte_burst
        conn.bucket_at = conn.last_seen  # this read's time (one float, not two)
        self.admission.opened(ip)
        self.stats.handshakes += 1
        host.join(conn, rt, ConnectContext(req, ip, conn.player, claims))
        if rest:
            conn.data_received(rest)
