"""Long-polls wake on a notice, not a timer: the scripts that take a ticket out of waiting
(match, fail, cancel) publish its id on `keys.TICKET_EVENTS`, and every matchmaker process
listens there for the long-polls it holds."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis

from matchmaker import keys

log = logging.getLogger("stadium.matchmaker")

RECHECK = 5.0  # seconds between status reads of a long-poll while notices arrive
RECHECK_DEAF = 0.25  # ... and while the subscription is down (then it polls)


class TicketWaiters:
    """`expect(ticket_id)` gives a future that a notice for the ticket completes."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.listening = False
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def recheck(self) -> float:
        """How long a long-poll may wait before it reads the ticket's status again."""
        return RECHECK if self.listening else RECHECK_DEAF

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def expect(self, ticket_id: str) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(ticket_id, set()).add(fut)
        return fut

    def drop(self, ticket_id: str, fut: asyncio.Future[None]) -> None:
        futs = self._waiting.get(ticket_id)
        if futs is not None:
            futs.discard(fut)
            if not futs:
                del self._waiting[ticket_id]

    def _wake(self, ticket_ids: Any) -> None:
        for tid in ticket_ids:
            for fut in self._waiting.get(tid, ()):
                if not fut.done():
                    fut.set_result(None)

    async def _listen(self) -> None:
        # A plain connection even to a cluster: a PUBLISH reaches the subscribers of every
        # node, so one subscription on the seed node hears all of them.
        failing = False
        while True:
            client: Any = aioredis.from_url(self.redis_url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.TICKET_EVENTS)
                self.listening = True
                if failing:
                    log.info("ticket notices: listening again")
                    failing = False
                self._wake(list(self._waiting))  # notices may have been missed: re-read
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._wake(message["data"].decode().split())
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not failing:
                    log.warning("ticket notices: %s; long-polls read the status every %gs "
                                "until they are back", e, RECHECK_DEAF)
                    failing = True
            finally:
                self.listening = False
                await asyncio.shield(self._close(pubsub, client))
            await asyncio.sleep(1.0)

    @staticmethod
    async def _close(pubsub: Any, client: Any) -> None:
        try:
            await pubsub.aclose()
            await client.aclose()
        except Exception:  # already broken: nothing to release
            pass
