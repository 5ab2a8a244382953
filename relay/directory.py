"""The relay's entry in the relay directory in Redis: its URL and load, rewritten every few
seconds with an expiry, so matchmakers seat players on live relays only; and the seats taken
(who joined which match), so matchmakers can report the seats that were not."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from relay.metrics import Stats
from stadium.redis_client import connect
from stadium.tokens import Claims

log = logging.getLogger("stadium.relay")

DIRECTORY = "stadium:relays"  # hash: relay URL -> {"url", "load", "expires"} (JSON)
INTERVAL = 2.0  # seconds between two writes
TTL = 6.0  # an entry not rewritten for this long is dead: three writes missed
JOINED_TTL = 86400  # seconds a match's joined hash is kept: past any seat's reservation
MAX_MATCH_ID = 128
MAX_PENDING_JOINS = 10000  # writes in flight; past this Redis is not keeping up: count, drop


def joined_key(match_id: str) -> str:
    """hash: player -> unix ms of their first join (matchmaker/keys.py reads it)."""
    return f"stadium:match:{{{match_id}}}:joined"


class RelayDirectory:
    """`start()` registers the relay and keeps its entry fresh; `await stop()` removes it."""

    def __init__(self, redis_url: str, url: str, load: Callable[[], int],
                 interval: float = INTERVAL, ttl: float = TTL,
                 stats: Stats | None = None) -> None:
        self.redis_url = redis_url
        self.url = url
        self.load = load
        self.interval = interval
        self.ttl = ttl
        self.stats = stats
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._connecting = asyncio.Lock()
        self._joins: set[asyncio.Task[None]] = set()
        self._joins_failing = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _client(self) -> Any:
        async with self._connecting:  # one client, however many writes wait for it
            if self._redis is None:
                self._redis = await connect(self.redis_url)
        return self._redis

    def record_join(self, claims: Claims) -> None:
        """Note in Redis that the token's player took their seat in the token's match (a
        token from a matchmaker names it in `match`), without delaying the handshake."""
        match_id = claims.extra.get("match")
        if not isinstance(match_id, str) or not 0 < len(match_id) <= MAX_MATCH_ID:
            return
        if len(self._joins) >= MAX_PENDING_JOINS:
            if self.stats is not None:
                self.stats.seat_join_errors += 1
            return
        task = asyncio.get_running_loop().create_task(
            self._write_join(match_id, claims.player, int(time.time() * 1000)))
        self._joins.add(task)
        task.add_done_callback(self._joins.discard)

    async def _write_join(self, match_id: str, player: str, at_ms: int) -> None:
        try:
            pipe = (await self._client()).pipeline(transaction=False)
            pipe.hsetnx(joined_key(match_id), player, at_ms)  # a rejoin keeps the first time
            pipe.expire(joined_key(match_id), JOINED_TTL)
            await pipe.execute()
            if self._joins_failing:
                log.info("seat joins: writing to %s again", self.redis_url)
            self._joins_failing = False
        except Exception as e:  # Redis away: the matchmaker will report these seats untaken
            if self.stats is not None:
                self.stats.seat_join_errors += 1
            if not self._joins_failing:
                log.warning("seat joins: cannot write to %s: %s", self.redis_url, e)
            self._joins_failing = True

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                redis = await self._client()
                entry = {"url": self.url, "load": self.load(),
                         "expires": time.time() + self.ttl}
                await redis.hset(DIRECTORY, self.url, json.dumps(entry))
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

    async def entries(self) -> list[dict[str, Any]]:
        """Every relay's entry in the directory (expired ones too: `expires` tells)."""
        raw = await (await self._client()).hgetall(DIRECTORY)
        found = []
        for value in raw.values():
            try:
                entry = json.loads(value)
            except ValueError:
                continue
            if isinstance(entry, dict):
                found.append(entry)
        return found

    async def stop(self) -> None:
        """Leave the directory at once, so no new seats come to a draining relay."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._joins:  # joins of the last moments still count: let them land
            _, late = await asyncio.wait(set(self._joins), timeout=self.interval)
            for task in late:
                task.cancel()
        if self._redis is not None:
            try:
                await self._redis.hdel(DIRECTORY, self.url)
            except Exception as e:
                log.warning("relay directory: could not remove %s: %s", self.url, e)
            await self._redis.aclose()
            self._redis = None
