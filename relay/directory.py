"""The relay's entry in the relay directory in Redis: its URL and load, rewritten every few
seconds with an expiry, so matchmakers seat players on live relays only."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from stadium.redis_client import connect

log = logging.getLogger("stadium.relay")

DIRECTORY = "stadium:relays"  # hash: relay URL -> {"url", "load", "expires"} (JSON)
INTERVAL = 2.0  # seconds between two writes
TTL = 6.0  # an entry not rewritten for this long is dead: three writes missed


class RelayDirectory:
    """`start()` registers the relay and keeps its entry fresh; `await stop()` removes it."""

    def __init__(self, redis_url: str, url: str, load: Callable[[], int],
                 interval: float = INTERVAL, ttl: float = TTL) -> None:
        self.redis_url = redis_url
        self.url = url
        self.load = load
        self.interval = interval
        self.ttl = ttl
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                if self._redis is None:
                    self._redis = await connect(self.redis_url)
                entry = {"url": self.url, "load": self.load(),
                         "expires": time.time() + self.ttl}
                await self._redis.hset(DIRECTORY, self.url, json.dumps(entry))
                if failing:
                    log.info("relay directory: registered again at %s", self.redis_url)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis away: keep trying; matchmakers see us expire
                if not failing:
                    log.warning("relay directory: cannot write to %s: %s", self.redis_url, e)
                failing = True
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Leave the directory at once, so no new seats come to a draining relay."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._redis is not None:
            try:
                await self._redis.hdel(DIRECTORY, self.url)
            except Exception as e:
                log.warning("relay directory: could not remove %s: %s", self.url, e)
            await self._redis.aclose()
            self._redis = None
