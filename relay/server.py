"""The relay process: puts the room host, admission and the WebSocket transport together,
listens, answers the operations routes and the operator console (relay/console.py), sweeps
deadlines once a second, and drains.

Games and pages (the `arena` demo, the demo page) are given to it by whoever starts it
(the `stadium` CLI); the relay itself knows only the built-in `broadcast` room.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import ssl
from collections.abc import Mapping
from typing import Any, Protocol

from relay.config import RelayConfig
from relay.console import Console
from relay.core.admission import Admission
from relay.core.host import NODE_BITS, RoomHost, check_room_types
from relay.core.room import Response, Room
from relay.core.stats import Stats
from relay.directory import RelayDirectory
from relay.http import HttpError, Request, error_response, http_response
from relay.metrics import make_registry, render
from relay.snapshots import RedisSnapshots
from relay.transports.websocket import Connection, WebSocketTransport
from relay.ws.frames import encode_message
from stadium import __version__
from stadium.keys import reload_verification_keys, verification_keys, warn_if_short
from stadium.redis_client import connect

log = logging.getLogger("stadium.relay")

SWEEP_INTERVAL = 1.0
NODE_KEY = "stadium:relay:nodes"  # INCR gives each relay process its node number


class Site(Protocol):
    """Pages the relay serves beside its rooms (the demo page)."""

    def serves(self, path: str) -> bool: ...

    def response(self, req: Request) -> bytes: ...


class Relay:
    """One relay process: `await start()`, then `await drain()` to stop."""

    def __init__(self, config: RelayConfig, room_types: Mapping[str, type[Room]] | None = None,
                 site: Site | None = None, dev: bool = False) -> None:
        """`dev`: run by `stadium dev`, whose console is open without an operator key."""
        self.config = config
        self.room_types = check_room_types(room_types or {})
        self.site = site
        self.stats = Stats()
        self.draining = False
        self._registry = make_registry(self.stats, self._gauges)
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._snapshots = RedisSnapshots(config.redis_url) if config.redis_url else None
        self._directory: RelayDirectory | None = None
        # read now, so that a missing or bad key file stops the process before it listens
        self.admission = Admission(config, verification_keys(config.secret, config.token_keys))
        self.console = Console(self, dev=dev)

    loop: asyncio.AbstractEventLoop  # set by start()
    host: RoomHost
    ws: WebSocketTransport

    # --- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.config
        self.loop = asyncio.get_running_loop()
        self.host = RoomHost(cfg, self.loop, encode_message, self.room_types,
                             node=await self._node_id(), stats=self.stats,
                             snapshots=self._snapshots)
        self.ws = WebSocketTransport(cfg, self.host, self.admission, self._http)
        ctx = None
        if cfg.cert and cfg.key:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cfg.cert, cfg.key)
        self._server = await self.loop.create_server(
            self.ws.protocol, cfg.host, cfg.port, ssl=ctx, backlog=4096, reuse_address=True)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        if self.admission.keys is None:
            log.warning("no --secret or --token-key: the relay admits every client without a "
                        "join token")
        elif cfg.secret is not None:
            warn_if_short(cfg.secret, log)
        if cfg.redis_url:  # rooms live in memory; Redis holds this relay's directory entry
            self._directory = RelayDirectory(cfg.redis_url, cfg.public_url or self.url,
                                             lambda: self.ws.open_count, stats=self.stats)
            self.ws.on_join = self._directory.record_join  # the matchmaker reports no-shows
            self._directory.start()
        if self.console.access == "open":
            log.warning("console: open without an operator key at %s/console (stadium dev; "
                        "give --admin-key to require one)", self._http_url)
        elif self.console.access == "key":
            log.info("console at %s/console (operator key required)", self._http_url)

    @property
    def directory(self) -> RelayDirectory | None:
        """This relay's entry in the relay directory (None without Redis)."""
        return self._directory

    async def _node_id(self) -> int:
        """A number no other relay process on this Redis has (member ids carry it); random
        without Redis, or when Redis does not answer at start."""
        if self.config.redis_url:
            try:
                redis = await connect(self.config.redis_url)
                try:
                    n: int = await asyncio.wait_for(redis.incr(NODE_KEY), 5.0)
                finally:
                    await redis.aclose()
                return n % (1 << NODE_BITS)
            except Exception as e:
                log.warning("no node number from Redis (%s): taking a random one", e)
        return secrets.randbits(NODE_BITS)

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.cert else "ws"
        return f"{scheme}://{self.config.host}:{self.port}"

    @property
    def _http_url(self) -> str:
        scheme = "https" if self.config.cert else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    def reload_keys(self) -> None:
        """Read the token keys again from --token-key's files (SIGHUP): the new set checks
        every join from now on; a bad file leaves the old set."""
        self.admission.keys = reload_verification_keys(
            self.config.secret, self.config.token_keys, self.admission.keys, log)

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
        self.ws.close_all()
        while self.ws.conns and loop.time() < deadline - 0.05:
            await asyncio.sleep(0.02)
        self.ws.abort_all("drain deadline")
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._snapshots is not None:
            await self._snapshots.close()
        await self.console.close()
        await asyncio.sleep(0)

    def _sweep(self) -> None:
        now = self.loop.time()
        self.ws.sweep(now)
        self.host.hibernate_idle(now)
        self.ws.admission.sweep(now)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _gauges(self) -> dict[str, int]:
        return {"connections": self.ws.open_count, **self.host.gauges()}

    # --- HTTP routes -------------------------------------------------------------------
    def _http(self, conn: Connection, req: Request) -> None:
        path = req.path
        if self.site is not None and self.site.serves(path):
            conn.respond(self.site.response(req))
            return
        if path in ("/healthz", "/metrics", "/"):
            conn.respond(self._operations(req))
            return
        if self.console.serves(path):
            self.console.handle(conn, req)
            return
        host = self.host
        type_name, room_id = host.route(path)
        self.ws.admission.admit(conn.ip, req, type_name, room_id, self.loop.time())
        rt = host.room(type_name, room_id)

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
            if conn.transport is not None:
                conn.respond(raw)

        host.request(rt, req, done)

    def _operations(self, req: Request) -> bytes:
        path = req.path
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
        return http_response(status, b"" if req.method == "HEAD" else body, ctype)
