"""The relay server: accepts sockets, answers HTTP, upgrades to WebSocket, routes to rooms.

Everything runs in loop callbacks: no task per connection. Frames bound for a socket
during one loop pass are joined and written once by `_flush`; one timer per process
(`_sweep`) enforces handshake, idle and close deadlines for all sockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import sys
from collections.abc import Mapping
from typing import Any

from relay.arena import ArenaRoom
from relay.config import RelayConfig
from relay.conntable import CLOSING, HANDSHAKE, OPEN, SHARED, Connection
from relay.demo import DemoSite
from relay.directory import RelayDirectory
from relay.hibernation import SleepingRoom, can_hibernate, hibernate
from relay.metrics import Stats, make_registry, render
from relay.room import MAX_TICK_RATE, BroadcastRoom, ConnectContext, Response, Room, RoomStorage
from relay.scores import ScorePoster
from relay.ws.frames import CLOSE_GOING_AWAY, CLOSE_POLICY, OP_PING, FrameReader, encode_frame
from relay.ws.handshake import (
    HttpError,
    Request,
    accept_response,
    error_response,
    find_head_end,
    http_response,
    is_upgrade,
    parse_request_head,
    validate_upgrade,
)
from stadium import __version__
from stadium.redis_client import connect
from stadium.tokens import Claims, TokenError, verify

log = logging.getLogger("stadium.relay")

BUILTIN_ROOMS: Mapping[str, type[Room]] = {"broadcast": BroadcastRoom, "arena": ArenaRoom}
ROOM_PATH = re.compile(r"/rooms/([^/]*)/([^/]*)")
TYPE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
ROOM_ID = re.compile(r"[A-Za-z0-9_.:~-]{1,128}")
_PING = encode_frame(OP_PING, b"")
_UPGRADED = bytearray()  # every upgraded socket's conn._head: none reads a request again
SWEEP_INTERVAL = 1.0


class Relay:
    """One relay process: `await start()`, then `await drain()` to stop."""

    def __init__(self, config: RelayConfig,
                 room_types: Mapping[str, type[Room]] | None = None) -> None:
        self.config = config
        self.room_types: dict[str, type[Room]] = dict(BUILTIN_ROOMS)
        for name, cls in (room_types or {}).items():
            if not TYPE_NAME.fullmatch(name):
                raise ValueError(f"room type {name!r}: use 1-64 of A-Z a-z 0-9 _ -")
            if not (isinstance(cls, type) and issubclass(cls, Room)):
                raise TypeError(f"room type {name!r}: {cls!r} is not a relay.Room subclass")
            rate = cls.tick_rate
            if rate is not None and not 1 <= rate <= MAX_TICK_RATE:
                raise ValueError(f"room type {name!r}: tick_rate must be 1-{MAX_TICK_RATE:g} Hz")
            self.room_types[name] = cls
        self.stats = Stats()
        self.conns: set[Connection] = set()
        self.rooms: dict[tuple[str, str], Room] = {}
        self.draining = False
        self._storage: dict[tuple[str, str], RoomStorage] = {}
        self._dirty: list[Connection] = []  # sockets with their own queue (conn.out)
        self._dirty_rooms: list[Room] = []  # rooms with broadcasts to flush (room._shared)
        self._slow: set[Connection] = set()  # sockets over --slow-reader-bytes
        self.idle_reader = self._new_reader()  # shared by every socket between frames
        self._flush_pending = False
        self._ip_conns: dict[str, int] = {}
        self._ip_pending: dict[str, int] = {}
        self._ip_buckets: dict[str, list[float]] = {}
        self._next_id = 1
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._registry = make_registry(self.stats, self._gauges)
        self._scores: dict[str, ScorePoster] = {}
        self._sleeping = 0
        self._redis_url = config.redis_url
        self._redis: Any = None
        self.demo = DemoSite(config) if config.demo else None

    loop: asyncio.AbstractEventLoop  # set by start()
    _directory: RelayDirectory | None = None  # set by start() with --redis-url

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        self.loop = asyncio.get_running_loop()
        ctx = None
        if cfg.cert and cfg.key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cfg.cert, cfg.key)
        self._server = await self.loop.create_server(
            lambda: Connection(self), cfg.host, cfg.port, ssl=ctx, backlog=4096,
            reuse_address=True)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        if cfg.secret is None:
            log.warning("no --secret: the relay admits every client without a join token")
        if cfg.redis_url:  # rooms live in memory; Redis holds this relay's directory entry
            self._directory = RelayDirectory(cfg.redis_url, cfg.public_url or self.url,
                                             lambda: self._gauges()["connections"],
                                             stats=self.stats)
            self._directory.start()

    async def _redis_client(self) -> Any:
        """The relay's Redis client (for hibernated rooms' snapshots), connected on first use."""
        if self._redis is None:
            assert self._redis_url
            self._redis = await connect(self._redis_url)
        return self._redis

    def scores(self, board: str) -> ScorePoster | None:
        """Where rooms post scores for `board`, or None without --leaderboard-url."""
        url = self.config.leaderboard_url
        if not url:
            return None
        poster = self._scores.get(board)
        if poster is None:
            poster = self._scores[board] = ScorePoster(url, board,
                                                       self.config.leaderboard_api_key)
        return poster

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.cert else "ws"
        return f"{scheme}://{self.config.host}:{self.port}"

    async def drain(self, timeout: float | None = None) -> None:
        """Stop accepting, close every socket with 1001, wait for them up to `timeout` seconds."""
        loop = self.loop
        timeout = self.config.drain_timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        self.draining = True
        if self._directory is not None:
            await self._directory.stop()
        if self._server is not None:
            self._server.close()
        for c in list(self.conns):
            if c.phase == OPEN:
                c._start_close(CLOSE_GOING_AWAY, "server shutting down, reconnect")
            elif c.phase == HANDSHAKE:
                c.abort(CLOSE_GOING_AWAY, "server shutting down")
        while self.conns and loop.time() < deadline - 0.05:
            await asyncio.sleep(0.02)
        for c in list(self.conns):
            c.abort(CLOSE_GOING_AWAY, "drain deadline")
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for poster in self._scores.values():
            await poster.close()
        if self._redis is not None:
            await self._redis.aclose()
        await asyncio.sleep(0)

    # --- sockets -----------------------------------------------------------------------
    def _new_reader(self) -> FrameReader:
        return FrameReader(masked=True, max_message_size=self.config.max_message_size)

    def _accepted(self, conn: Connection, transport: asyncio.Transport) -> None:
        conn.id = self._next_id
        self._next_id += 1
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
            pending = self._ip_pending.get(conn.ip, 0)
            if pending >= self.config.ip_max_pending:
                conn.phase = CLOSING
                self._reject(conn, HttpError(429, "too_many_pending",
                                             f"{pending} unfinished requests from {conn.ip}"))
                return
            self._ip_pending[conn.ip] = pending + 1

    def _end_handshake(self, conn: Connection) -> None:
        """The socket leaves the handshake phase: it no longer counts as pending."""
        if conn.phase != HANDSHAKE or self.config.trust_proxy:
            return
        n = self._ip_pending.get(conn.ip, 1) - 1
        if n > 0:
            self._ip_pending[conn.ip] = n
        else:
            self._ip_pending.pop(conn.ip, None)

    def _lost(self, conn: Connection) -> None:
        self.conns.discard(conn)
        self._left(conn)

    def _left(self, conn: Connection) -> None:
        """The connection is no longer in its room (closing or gone): tell the room once."""
        room = conn.room
        if room is None:
            return
        conn.room = None
        room._conns.pop(conn.id, None)
        if room.state is not None:
            room.state.forget(conn.id)
        self.stats.closes[conn.close_code] += 1
        n = self._ip_conns.get(conn.ip, 1) - 1
        if n > 0:
            self._ip_conns[conn.ip] = n
        else:
            self._ip_conns.pop(conn.ip, None)
        room._call("on_close", (conn,))
        # A hibernated room woke up for this close: settle the awake one.
        self._room_settled(self.rooms.get((room.type, room.id), room))

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            delay = self.config.flush_interval
            if delay:
                self.loop.call_later(delay, self._flush)
            else:
                self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """One write per socket for everything queued to it during this loop pass: a room's
        broadcasts are joined once into bytes written as they are to every member without
        a queue of its own; a socket with its own queue gets it joined with its share."""
        self._flush_pending = False
        rooms = self._dirty_rooms
        self._dirty_rooms = []
        dirty = self._dirty
        self._dirty = []
        for room in rooms:
            shared = room._shared
            room._shared = None
            if not shared:
                continue
            blob = shared[0] if len(shared) == 1 else b"".join(shared)
            for c in room._conns.values():
                out = c.out
                t = c._transport
                if t is None:  # not reached: a socket leaves its room before it is lost
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
            t = c._transport
            if t is not None and out:
                t.write(out[0] if len(out) == 1 else b"".join(out))
        if self._slow:
            limit = self.config.max_outbound_buffer
            for c in list(self._slow):
                t = c._transport
                if t is not None and t.get_write_buffer_size() > limit:
                    c.abort(CLOSE_POLICY, "slow reader: outbound buffer over its limit")

    def _sweep(self) -> None:
        cfg = self.config
        now = self.loop.time()
        for c in list(self.conns):
            phase = c.phase
            if phase == OPEN:
                if c.slow_since and now - c.slow_since > cfg.slow_reader_timeout:
                    c.abort(CLOSE_POLICY, "slow reader: it did not read for too long")
                    continue
                silent = now - c.last_seen
                if silent > cfg.idle_timeout:
                    log.info("conn %d ip %s: idle for %.0fs, closing", c.id, c.ip, silent)
                    c._start_close(CLOSE_GOING_AWAY, "idle timeout")
                elif silent > cfg.ping_interval and not c.ping_sent:
                    c.ping_sent = True
                    c.queue(_PING)
            elif now > c.deadline:
                if phase == HANDSHAKE:
                    self.stats.http_rejects[408] += 1
                c.abort(CLOSE_GOING_AWAY, "handshake timeout" if phase == HANDSHAKE
                        else "close timeout")
        self._hibernate_idle(now)
        rate, burst = cfg.ip_handshake_rate, cfg.ip_handshake_burst
        for ip, (tokens, at) in list(self._ip_buckets.items()):
            if tokens + (now - at) * rate >= burst:
                del self._ip_buckets[ip]
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    # --- HTTP --------------------------------------------------------------------------
    def _head_data(self, conn: Connection, data: bytes) -> None:
        try:
            if conn._request is not None:
                self._body_data(conn, data)
                return
            cfg = self.config
            head = conn._head
            searched = max(0, len(head) - 3)
            head += data
            end = find_head_end(head, searched)
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
            self._reject(conn, e)

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
        self._end_handshake(conn)
        conn.phase = CLOSING
        self._http(conn, req)

    def _reject(self, conn: Connection, err: HttpError) -> None:
        self.stats.http_rejects[err.status] += 1
        log.info("conn %d ip %s: HTTP %d %s: %s", conn.id, conn.ip, err.status, err.code,
                 err.message)
        self._respond(conn, error_response(err))

    def _respond(self, conn: Connection, raw: bytes) -> None:
        self._end_handshake(conn)
        conn._request = None
        del conn._head[:]
        t = conn._transport
        if t is not None:
            t.write(raw)
        conn._closing_now()

    def _http(self, conn: Connection, req: Request) -> None:
        path = req.path
        if self.demo is not None and self.demo.serves(path):
            self._respond(conn, self.demo.response(req))
            return
        if path in ("/healthz", "/metrics", "/"):
            if req.method not in ("GET", "HEAD"):
                raise HttpError(405, "method_not_allowed", f"{path} answers GET only")
            if path == "/metrics":
                body, ctype = render(self._registry), "text/plain; version=0.0.4; charset=utf-8"
                status = 200
            elif path == "/healthz":
                status = 503 if self.draining else 200
                body = json.dumps({"status": "draining" if self.draining else "ok"}).encode()
                ctype = "application/json"
            else:
                status, ctype = 200, "application/json"
                body = json.dumps({"service": "stadium-relay", "version": __version__,
                                   "room_types": sorted(self.room_types),
                                   "websocket": "/rooms/{type}/{room_id}"}).encode()
            self._respond(conn, http_response(status, b"" if req.method == "HEAD" else body,
                                              ctype))
            return
        type_name, room_id = self._route(path)
        self._admit(conn.ip, req, type_name, room_id)
        room = self._room(type_name, room_id)

        def done(result: Any, ok: bool) -> None:
            raw = None
            if ok:
                try:
                    resp = Response.of(result)
                    raw = http_response(resp.status, resp.body, resp.content_type, resp.headers)
                except Exception:
                    log.exception("room %s/%s: on_request gave an answer that is not a "
                                  "response: %r", type_name, room_id, type(result))
            if raw is None:
                raw = error_response(HttpError(500, "internal_error", "the room failed to answer"))
            if conn._transport is not None:
                self._respond(conn, raw)

        conn.deadline = self.loop.time() + self.config.handshake_timeout
        room._call("on_request", (req,), None, done)
        self._room_settled(room)

    def _route(self, path: str) -> tuple[str, str]:
        m = ROOM_PATH.fullmatch(path)
        if m is None:
            raise HttpError(404, "not_found", f"no route for {path}; rooms are at "
                            "/rooms/{type}/{room_id}")
        type_name, room_id = m.groups()
        if type_name not in self.room_types:
            raise HttpError(404, "unknown_room_type", f"no room type {type_name!r}; known: "
                            f"{', '.join(sorted(self.room_types))}")
        if not ROOM_ID.fullmatch(room_id):
            raise HttpError(400, "bad_room_id", "room id must be 1-128 of A-Z a-z 0-9 _ . : ~ -")
        return type_name, room_id

    def _admit(self, ip: str, req: Request, type_name: str, room_id: str) -> Claims | None:
        """The per-address request rate and, with a secret, the join token for this room:
        checked for WebSocket upgrades and for HTTP requests to rooms alike."""
        cfg = self.config
        now = self.loop.time()
        bucket = self._ip_buckets.get(ip)
        if bucket is None:
            bucket = self._ip_buckets[ip] = [cfg.ip_handshake_burst, now]
        tokens = min(cfg.ip_handshake_burst, bucket[0] + (now - bucket[1]) * cfg.ip_handshake_rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            raise HttpError(429, "too_many_handshakes",
                            f"over {cfg.ip_handshake_rate:g} handshakes/s from {ip}",
                            (("Retry-After", "1"),))
        bucket[0] = tokens - 1.0
        if cfg.secret is None:
            return None
        token = req.query.get("token", "")
        auth = req.headers.get("authorization", "")
        if not token and auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        if not token:
            raise HttpError(401, "missing_token", "this relay needs a join token (?token=)")
        try:
            return verify(cfg.secret, token, room_type=type_name, room_id=room_id)
        except TokenError as e:
            raise HttpError(401, e.reason, e.message) from None

    # --- WebSocket upgrade -------------------------------------------------------------
    def _upgrade(self, conn: Connection, req: Request, rest: bytes) -> None:
        cfg = self.config
        if self.draining:
            raise HttpError(503, "draining", "the relay is shutting down; try another")
        type_name, room_id = self._route(req.path)
        ip = conn.ip
        if self._ip_conns.get(ip, 0) >= cfg.ip_max_connections:
            raise HttpError(429, "too_many_connections",
                            f"{cfg.ip_max_connections} connections already open from {ip}")
        accept = validate_upgrade(req)
        origin = req.headers.get("origin")
        if cfg.allowed_origins and origin is not None and origin not in cfg.allowed_origins:
            raise HttpError(403, "origin_not_allowed", f"origin {origin!r} is not allowed")
        claims = self._admit(ip, req, type_name, room_id)
        room = self._room(type_name, room_id)
        t = conn._transport
        assert t is not None
        t.set_write_buffer_limits(high=cfg.slow_reader_bytes)
        t.write(accept_response(accept))
        self._end_handshake(conn)
        conn.phase = OPEN
        conn._reader = SHARED
        conn._head = _UPGRADED
        conn.deadline = 0.0
        conn.player = claims.player if claims is not None else None
        if claims is not None and self._directory is not None:
            self._directory.record_join(claims)  # the matchmaker reports seats not taken
        conn.msg_tokens = cfg.msg_burst
        conn.byte_tokens = cfg.byte_burst
        conn.bucket_at = conn.last_seen  # this read's time (one float, not two)
        self._ip_conns[ip] = self._ip_conns.get(ip, 0) + 1
        self.stats.handshakes += 1
        if room._shared:  # broadcast before it joined, in this same batch: not for it
            conn._own()
            conn.cursor = len(room._shared)
        conn.room = room
        room._conns[conn.id] = conn
        room._call("on_connect", (conn, ConnectContext(req, ip, conn.player, claims)), conn)
        if rest:
            conn.data_received(rest)

    # --- rooms -------------------------------------------------------------------------
    def _room(self, type_name: str, room_id: str) -> Room:
        key = (type_name, room_id)
        room = self.rooms.get(key)
        if room is None:
            try:
                room = self.room_types[type_name]()
            except Exception:
                log.exception("room %s/%s: could not be created", type_name, room_id)
                raise HttpError(500, "room_failed", "the room could not be created") from None
            storage = self._storage.get(key)
            if storage is None:
                storage = self._storage[key] = RoomStorage()
            room._bind(self, type_name, room_id, storage)
            self.rooms[key] = room
            room._call("on_start", ())
            room._start_ticking()
        return room

    def _room_settled(self, room: Room) -> None:
        """Drop a room from memory once it has no connections, no pending work and no alarm."""
        if room._conns or room._busy:
            return
        key = (room.type, room.id)
        if self.rooms.get(key) is room:
            del self.rooms[key]
            room._stop_ticking()
            if not room.storage:
                self._storage.pop(key, None)

    def _gauges(self) -> dict[str, int]:
        return {"connections": sum(1 for c in self.conns if c.phase == OPEN),
                "rooms": len(self.rooms) - self._sleeping, "rooms_hibernated": self._sleeping}

    def _hibernate_idle(self, now: float) -> None:
        """Called by the sweep: a room whose event count has not moved for hibernate_after
        seconds goes to sleep."""
        after = self.config.hibernate_after
        if after <= 0:
            return
        for room in list(self.rooms.values()):
            if isinstance(room, SleepingRoom) or not can_hibernate(room):
                continue
            if room._events != room._seen_events:
                room._seen_events = room._events
                room._idle_since = now
            elif now - room._idle_since >= after and not hibernate(self, room):
                room._idle_since = now  # snapshot() failed: try again a period later
