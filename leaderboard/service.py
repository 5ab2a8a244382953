"""Run the leaderboard API on uvicorn in the current event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import uvicorn

from leaderboard.api import create_app
from leaderboard.config import LeaderboardConfig
from leaderboard.store import Store
from stadium.http import OneWriteHttpToolsProtocol
from stadium.redis_client import connect

log = logging.getLogger("stadium.leaderboard")


class LeaderboardService:
    """`await start()` listens (port 0 picks a free one); `await stop()` shuts down."""

    def __init__(self, cfg: LeaderboardConfig, redis_url: str) -> None:
        self.cfg = cfg
        self.redis_url = redis_url
        self.redis: Any = None
        self.store: Store | None = None
        self.port = cfg.port
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.redis = await connect(self.redis_url, timeout=self.cfg.redis_timeout)
        self.store = Store(self.redis, redis_timeout=self.cfg.redis_timeout,
                           redis_chunk=self.cfg.redis_chunk, coalesce=self.cfg.coalesce_submits,
                           idempotency_ttl=self.cfg.idempotency_ttl)
        app = create_app(self.store, self.cfg.api_key, self.cfg.cors_origins)
        # No proxy-headers middleware (nothing here reads the client address) and no
        # `server` header: both are per-request work on every answer.
        self._server = server = uvicorn.Server(uvicorn.Config(
            app, host=self.cfg.host, port=self.cfg.port, log_level="warning", access_log=False,
            lifespan="off", http=OneWriteHttpToolsProtocol, loop="none", proxy_headers=False,
            server_header=False))
        self._task = asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                await self._task
                raise RuntimeError(f"the leaderboard could not listen on port {self.cfg.port}")
            await asyncio.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        # Everything built so far lives as long as the process: taken out of the collector's
        # view, a full collection no longer walks it (tens of ms, paid by whichever request
        # triggers it).
        gc.collect()
        gc.freeze()
        log.info("leaderboard listening on http://%s:%d", self.cfg.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
        if self.store is not None:
            await self.store.aclose()
        if self.redis is not None:
            await self.redis.aclose()
