"""A connection to one room on a Stadium relay, over WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class RoomClosed(Exception):
    """The relay closed the room connection; `code` and `reason` say why."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"room closed ({code}): {reason}" if reason else f"room closed ({code})")
        self.code = code
        self.reason = reason


def _with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=query + urlencode({"token": token})))


class Room:
    """Messages are `str` (text frames) or `bytes` (binary frames), exactly as sent."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    @classmethod
    async def connect(cls, url: str, token: str | None = None, *,
                      open_timeout: float = 10.0, max_size: int = 16 * 1024 * 1024) -> Room:
        """Join the room at `ws://host:port/rooms/{type}/{id}`, with a join token if the relay
        asks for one. Raises `websockets.InvalidStatus` when the relay refuses the upgrade."""
        ws = await connect(_with_token(url, token), open_timeout=open_timeout,
                           max_size=max_size, compression=None, ping_interval=None)
        return cls(ws)

    async def send(self, message: bytes | str | Any) -> None:
        """`bytes` go as binary, `str` as text, anything else msgpack-encoded as binary."""
        if not isinstance(message, bytes | str):
            message = msgpack.packb(message)
        try:
            await self._ws.send(message)
        except ConnectionClosed as e:
            raise self._closed(e) from None

    async def recv(self) -> bytes | str:
        try:
            return await self._ws.recv()
        except ConnectionClosed as e:
            raise self._closed(e) from None

    async def __aiter__(self) -> AsyncIterator[bytes | str]:
        try:
            async for message in self._ws:
                yield message
        except ConnectionClosed:
            return

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._ws.close(code, reason)

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._ws.close_reason

    async def __aenter__(self) -> Room:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _closed(self, e: ConnectionClosed) -> RoomClosed:
        frame = e.rcvd
        return RoomClosed(frame.code if frame else None, frame.reason if frame else "")
