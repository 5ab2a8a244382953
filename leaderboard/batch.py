"""Script calls made during one pass of the event loop go to Redis as one pipeline.

Under load, many requests reach Redis in the same loop pass; one pipelined round trip
for all of them costs the client far less than one round trip each.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio.client import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


class ScriptBatcher:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: list[tuple[AsyncScript, list[Any], list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((script, keys, args, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[tuple[AsyncScript, list[Any], list[Any],
                                               asyncio.Future[Any]]]) -> None:
        try:
            results = await self._pipeline(batch)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:
                # The server does not know a script yet (first use, restart, SCRIPT FLUSH):
                # load it and run again only what failed, so nothing runs twice.
                for script in {id(batch[i][0]): batch[i][0] for i in missing}.values():
                    script.sha = await self.redis.script_load(script.script)
                retried = await self._pipeline([batch[i] for i in missing])
                for i, r in zip(missing, retried, strict=True):
                    results[i] = r
        except Exception as e:  # the connection failed: every caller gets the error
            results = [e] * len(batch)
        for (_, _, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _pipeline(self, batch: list[tuple[AsyncScript, list[Any], list[Any],
                                                asyncio.Future[Any]]]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))
