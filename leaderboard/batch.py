"""Script calls made during one pass of the event loop go to Redis in a few writes.

The batcher keeps its own connection for script calls: EVALSHA commands are packed straight
to RESP, written every `chunk` calls and at the end of each loop pass, and replies are
parsed with hiredis and handed to the callers in order. Where that connection cannot be
opened the same way (TLS, credential providers), each batch goes through a redis-py pipeline
instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.client import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("stadium.leaderboard")

_PENDING = object()  # hiredis: no complete reply buffered yet
# Script calls per write within one loop pass. With one write per pass Redis and the service
# take turns; 4, 8 or 16 were alike and best where Redis has a core to spare; measurements in
# docs/benchmarks.md (Leaderboard).
CHUNK = 8


def pack(*parts: Any) -> bytes:
    """One RESP command; parts are bytes, str (sent as UTF-8) or int."""
    return bytes(hiredis.pack_command(parts))


class _Call:
    __slots__ = ("future", "script", "keys", "args", "retried")

    def __init__(self, future: asyncio.Future[Any], script: AsyncScript | None,
                 keys: list[Any], args: list[Any]) -> None:
        self.future = future
        self.script = script
        self.keys = keys
        self.args = args
        self.retried = False


class ScriptBatcher(asyncio.Protocol):
    """`run(script, keys, args)` returns a future for the script's reply.

    `timeout`: seconds Redis may go without answering while calls wait; then the connection
    is dropped, the waiting calls fail, and the next call connects again. `chunk`: calls per
    write on the own connection (0: one write per loop pass); a pass's first calls then reach
    Redis while the service still prepares the rest, so the two work side by side."""

    def __init__(self, redis: Redis, timeout: float = 5.0, direct: bool = True,
                 chunk: int = CHUNK) -> None:
        self.redis = redis
        self.timeout = timeout
        self.chunk = chunk
        self.writes = 0  # writes to the own connection so far
        self._address = _address(redis) if direct else None
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._out: list[bytes] = []  # packed commands for this loop pass's write
        self._waiting: deque[_Call] = deque()  # in the order their replies will come
        self._reader = hiredis.Reader(replyError=ResponseError, notEnoughData=_PENDING)
        self._flush_due = False
        self._progress = 0.0  # when a reply last came, or calls started waiting
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False
        # Fallback: each loop pass's calls as one redis-py pipeline.
        self._pending: list[tuple[AsyncScript, list[Any], list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def direct(self) -> bool:
        """True when calls go over the batcher's own connection."""
        return self._address is not None

    def run(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._address is None:
            if not self._pending:
                loop.call_soon(self._flush_pipeline)
            self._pending.append((script, keys, args, future))
            return future
        if self._closed:
            future.set_exception(RedisConnectionError("the leaderboard's Redis link is closed"))
            return future
        self._send(_Call(future, script, keys, args),
                   pack(b"EVALSHA", script.sha, len(keys), *keys, *args))
        return future

    def _send(self, call: _Call, packed: bytes) -> None:
        if not self._waiting:
            self._progress = time.monotonic()
        self._waiting.append(call)
        out = self._out
        out.append(packed)
        if len(out) == self.chunk and self._transport is not None:
            self._transport.write(b"".join(out))
            self.writes += 1
            out.clear()
        elif not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def flush(self) -> None:
        """Write the calls made so far now rather than at the end of the loop pass."""
        self._flush()

    def _flush(self) -> None:
        self._flush_due = False
        if self._transport is None:
            if self._connecting is None and self._waiting:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return  # sent once connected
        if self._out:
            self._transport.write(b"".join(self._out))
            self.writes += 1
            self._out.clear()

    async def _connect(self) -> None:
        assert self._address is not None
        loop = asyncio.get_running_loop()
        kind, where, login = self._address
        try:
            async with asyncio.timeout(self.timeout):
                if kind == "unix":
                    transport, _ = await loop.create_unix_connection(lambda: self, where[0])
                else:
                    transport, _ = await loop.create_connection(lambda: self, where[0],
                                                                where[1])
        except (OSError, TimeoutError) as e:
            log.warning("cannot reach Redis at %s: %s", where, e)
            self._fail(RedisConnectionError(f"cannot reach Redis at {where}: {e}"))
            return
        finally:
            self._connecting = None
        if transport.is_closing():
            self._fail(RedisConnectionError("Redis closed the connection at once"))
            return
        # AUTH and SELECT go ahead of the calls that waited for the connection.
        for cmd in reversed(login):
            self._waiting.appendleft(_Call(loop.create_future(), None, [], []))
            self._out.insert(0, cmd)
        self._transport = transport
        self._watchdog = loop.call_later(self.timeout / 2, self._watch)
        self._flush()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._reader = hiredis.Reader(replyError=ResponseError, notEnoughData=_PENDING)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            reply = reader.gets()
        except hiredis.ProtocolError as e:
            reply = e
        while reply is not _PENDING:
            if isinstance(reply, hiredis.ProtocolError) or not self._waiting:
                log.warning("Redis sent what no call waits for (%r): dropping the connection",
                            reply)
                self._fail(RedisConnectionError(f"unexpected data from Redis: {reply!r}"))
                if self._transport is not None:
                    self._transport.abort()
                return
            call = self._waiting.popleft()
            if isinstance(reply, ResponseError):
                if call.script is None:  # AUTH or SELECT
                    log.warning("Redis refused the connection setup: %s", reply)
                elif str(reply).startswith("NOSCRIPT") and not call.retried:
                    # The server does not know the script (first use, restart, SCRIPT
                    # FLUSH): it did not run, so send it in full once; EVAL caches it.
                    call.retried = True
                    self._send(call, pack(b"EVAL", call.script.script, len(call.keys),
                                          *call.keys, *call.args))
                elif not call.future.done():
                    call.future.set_exception(NoScriptError(str(reply))
                                              if str(reply).startswith("NOSCRIPT") else reply)
            elif not call.future.done():
                call.future.set_result(reply)
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as e:
                reply = e
        self._progress = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._waiting:
            self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _watch(self) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        if self._waiting and time.monotonic() - self._progress > self.timeout:
            log.warning("Redis did not answer for %.1f s: dropping the connection", self.timeout)
            self._fail(RedisTimeoutError(f"no reply from Redis for {self.timeout} s"))
            self._transport.abort()
            return
        self._watchdog = asyncio.get_running_loop().call_later(self.timeout / 2, self._watch)

    def _fail(self, error: Exception) -> None:
        waiting, self._waiting = self._waiting, deque()
        self._out.clear()
        for call in waiting:
            if not call.future.done():
                call.future.set_exception(error)

    async def aclose(self) -> None:
        """Close the connection; calls still waiting fail."""
        self._closed = True
        if self._connecting is not None:
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
        self._fail(RedisConnectionError("the leaderboard's Redis link is closed"))

    # The redis-py pipeline path.

    def _flush_pipeline(self) -> None:
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
                # Load the scripts the server does not know and run again only what failed,
                # so nothing runs twice.
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


def _address(redis: Redis) -> tuple[str, tuple[Any, ...], list[bytes]] | None:
    """Where and how to open the batcher's own connection, or None to use redis-py's."""
    pool = redis.connection_pool
    kw = pool.connection_kwargs
    if kw.get("credential_provider") is not None or kw.get("protocol", 2) not in (2, "2"):
        return None
    login = []
    if kw.get("password") is not None:
        user = kw.get("username")
        login.append(pack(b"AUTH", user, kw["password"]) if user else
                     pack(b"AUTH", kw["password"]))
    if kw.get("db"):
        login.append(pack(b"SELECT", kw["db"]))
    if pool.connection_class is UnixDomainSocketConnection:
        return "unix", (kw["path"],), login
    if pool.connection_class is Connection:
        return "tcp", (kw.get("host", "localhost"), int(kw.get("port", 6379))), login
    return None
