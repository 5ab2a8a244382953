"""A lean keep-alive HTTP/1.1 client for the leaderboard benchmark: one request in flight
per connection, requests pre-encoded, responses framed by Content-Length. It costs the
load side a fraction of aiohttp's CPU, which matters when it shares a core with Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast


class HTTPConnection(asyncio.Protocol):
    """Open with `await HTTPConnection.open(host, port)`; `await request(raw)` -> (status, body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._need = -1  # bytes of the whole response once its head is in, else -1
        self._head = 0
        self._status = 0

    @classmethod
    async def open(cls, host: str, port: int) -> HTTPConnection:
        _, conn = await asyncio.get_running_loop().create_connection(cls, host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if self._need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                self._finish(ConnectionError(f"response without Content-Length: {head[:200]!r}"))
                return
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:stop if stop > 0 else len(head)])
            self._status = int(head[9:12])
            self._head = end + 4
            self._need = self._head + length
        if len(buf) >= self._need:
            body = bytes(buf[self._head:self._need])
            del buf[:self._need]
            self._need = -1
            self._finish((self._status, body))

    def _finish(self, result: tuple[int, bytes] | Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(result, Exception):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(ConnectionError(f"connection closed: {exc}"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None and self._waiter is None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self._waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def get(path: str, host: str = "bench") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def post(path: str, body: Any, headers: dict[str, str], host: str = "bench") -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(data)}\r\n\r\n").encode() + data
