"""Hibernated rooms' snapshots in Redis (with --redis-url), so a sleeping room costs the
relay no memory for its state."""

from __future__ import annotations

from typing import Any

from stadium.redis_client import connect


class RedisSnapshots:
    """The `SnapshotStore` of relay.core.host on one Redis or Redis Cluster."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._redis: Any = None

    async def _client(self) -> Any:
        if self._redis is None:
            self._redis = await connect(self.url)
        return self._redis

    async def put(self, key: str, data: bytes) -> None:
        await (await self._client()).set(key, data)

    async def take(self, key: str) -> bytes | None:
        data: bytes | None = await (await self._client()).getdel(key)
        return data

    async def delete(self, key: str) -> None:
        await (await self._client()).delete(key)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
