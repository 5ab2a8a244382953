"""Connecting the services to Redis: one URL, a single server or a cluster."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster


async def connect(url: str) -> Any:
    """A client for `url`: a cluster client when the server runs in cluster mode."""
    probe = aioredis.from_url(url)
    try:
        info = await probe.info("cluster")
    finally:
        await probe.aclose()
    if info.get("cluster_enabled"):
        return RedisCluster.from_url(url)
    return aioredis.from_url(url)
