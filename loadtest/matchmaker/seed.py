"""Waiting tickets and relays written straight into Redis, as the create script and the
relays write them: for benchmarks and tests that need thousands of tickets at once. No
change is logged for these tickets: a matcher finds them when it next reads the whole
waiting set (its first pass, or when the count of waiting tickets tells it to)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from matchmaker import keys
from matchmaker.store import Ticket

BATCH = 3000  # commands per pipeline round trip


async def write_waiting(redis: Any, tickets: Iterable[Ticket]) -> None:
    """Each ticket waiting in its queue, its players held by it."""
    pipe = redis.pipeline(transaction=False)
    for t in tickets:
        pipe.hset(keys.ticket(t.queue, t.id), mapping={"data": t.encode(), "status": "waiting"})
        for p in t.players:
            pipe.set(keys.player(p), t.id)
        pipe.zadd(keys.waiting(t.queue), {t.id: int(t.created * 1000)})
        if len(pipe) >= BATCH:
            await pipe.execute()
    await pipe.execute()


async def write_relay(redis: Any, url: str, ttl: float = 3600.0) -> None:
    """A relay in the directory, idle, for `ttl` seconds."""
    await redis.hset(keys.RELAYS, url, json.dumps({"url": url, "load": 0,
                                                   "expires": time.time() + ttl}))
