"""Run the matchmaker API on uvicorn in the current event loop, and one matcher loop per
queue (each pass only while this process holds the queue's lease in Redis)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from typing import Any

import uvicorn

from matchmaker import queues as queue_file
from matchmaker.api import create_app
from matchmaker.auth import Auth
from matchmaker.config import MatchmakerConfig
from matchmaker.metrics import Metrics
from matchmaker.passes import QueueMatcher
from matchmaker.seats import join_token_signer
from matchmaker.store import Store
from matchmaker.waiters import TicketWaiters
from stadium.http import OneWriteHttpToolsProtocol
from stadium.keys import (
    SigningKey,
    reload_verification_keys,
    verification_keys,
    warn_if_short,
)
from stadium.redis_client import connect

log = logging.getLogger("stadium.matchmaker")


class MatchmakerService:
    """`await start()` listens (port 0 picks a free one) and starts matching; `await stop()`."""

    def __init__(self, cfg: MatchmakerConfig, redis_url: str) -> None:
        self.cfg = cfg
        self.redis_url = redis_url
        self.queues = queue_file.load(cfg.queues)
        self.redis: Any = None
        self.port = cfg.port
        self.owner = f"{socket.gethostname()}:{secrets.token_hex(6)}"
        # read now, so that a missing or bad key file stops the process before it listens
        self.signer = join_token_signer(cfg.secret, cfg.signing_key, cfg.signing_kid)
        self.auth = Auth(cfg.api_key, verification_keys(cfg.secret, cfg.token_keys),
                         cfg.token_leeway)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._waiters: TicketWaiters | None = None

    async def start(self) -> None:
        cfg = self.cfg
        self.redis = await connect(self.redis_url, timeout=cfg.redis_timeout)
        store = Store(self.redis, self.queues, ticket_ttl=cfg.ticket_ttl,
                      match_ttl=cfg.match_ttl, max_waiting=cfg.max_waiting,
                      idempotency_ttl=cfg.idempotency_ttl)
        metrics = Metrics()
        if self.signer is None:
            log.warning("no --secret or --signing-key: seats carry no join token (relays "
                        "must admit anyone)")
        elif cfg.signing_key is None:
            warn_if_short(str(cfg.secret), log)
        if not self.auth.checks_players:
            log.warning("no --secret or --token-key: player tokens are not checked, anyone "
                        "may queue, read and cancel tickets as any player")
        self._waiters = TicketWaiters(self.redis_url)
        self._waiters.start()
        dev_tokens: SigningKey | None | bool = False
        if cfg.dev_auth:
            dev_tokens = None if cfg.secret is None else SigningKey.from_secret(cfg.secret)
        app = create_app(store, metrics, cfg.api_key, self._waiters, cfg.max_long_poll,
                         cfg.cors_origins, auth=self.auth, signer=self.signer,
                         seat_ttl=cfg.seat_ttl, dev_tokens=dev_tokens,
                         fresh_seats_per_minute=cfg.fresh_seats_per_minute)
        self._server = server = uvicorn.Server(uvicorn.Config(
            app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
            lifespan="off", http=OneWriteHttpToolsProtocol, loop="none"))
        self._task = asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                await self._task
                raise RuntimeError(f"the matchmaker could not listen on port {cfg.port}")
            await asyncio.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        for q in self.queues.values():
            matcher = QueueMatcher(store, q, metrics, owner=self.owner, secret=self.signer,
                                   seat_ttl=cfg.seat_ttl, lease_ttl=cfg.lease_ttl,
                                   seat_grace=cfg.seat_grace)
            self._loops.append(asyncio.create_task(self._run(matcher)))
        log.info("matchmaker listening on http://%s:%d (queues: %s)", cfg.host, self.port,
                 ", ".join(self.queues))

    async def _run(self, matcher: QueueMatcher) -> None:
        interval = self.cfg.match_interval
        while True:
            started = time.monotonic()
            try:
                await matcher.step()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away or a bug: log, keep the loop alive
                log.exception("queue %s: matching pass failed", matcher.queue.name)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    def reload_keys(self) -> None:
        """Read the token keys again from --token-key's files (SIGHUP): player and party
        tokens are checked with the new set from now on; a bad file leaves the old set."""
        self.auth.keys = reload_verification_keys(self.cfg.secret, self.cfg.token_keys,
                                                  self.auth.keys, log)

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
        if self._waiters is not None:
            await self._waiters.stop()
        if self.redis is not None:
            await self.redis.aclose()
