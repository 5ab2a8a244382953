"""Connecting the services to Redis: one URL, a single server or a cluster."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster


async def connect(url: str, timeout: float | None = None) -> Any:
    """A client for `url`: a cluster client when the server runs in cluster mode. With a
    `timeout`, a command Redis has not answered within it raises TimeoutError (the command
    may still run)."""
    options = {} if timeout is None else {"socket_timeout": timeout}
    probe = aioredis.from_url(url, **options)
    try:
        info = await probe.info("cluster")
    finally:
        await probe.aclose()
    if info.get("cluster_enabled"):
        return RedisCluster.from_url(url, **options)
    return aioredis.from_url(url, **options)
