"""A connection to one room on a Stadium relay, over WebSocket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from stadium_client.state import StateError, StateMirror, state_payload

log = logging.getLogger("stadium_client")
_END = object()  # queued after the last message of a closed room


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
    """Messages are `str` (text frames) or `bytes` (binary frames), exactly as sent.

    State messages from a ticking room are not returned by `recv`: they update
    `room.state` (a `StateMirror`) and call the `on("state", cb)` callbacks.
    """

    def __init__(self, ws: ClientConnection, max_queued: int = 4096) -> None:
        self._ws = ws
        self.state = StateMirror()
        self._callbacks: dict[str, list[Callable[..., Any]]] = {"message": [], "state": []}
        self._inbox: asyncio.Queue[bytes | str | object] = asyncio.Queue(max_queued)
        self._state_changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, url: str, token: str | None = None, *,
                      open_timeout: float = 10.0, max_size: int = 16 * 1024 * 1024) -> Room:
        """Join the room at `ws://host:port/rooms/{type}/{id}`, with a join token if the relay
        asks for one. Raises `websockets.InvalidStatus` when the relay refuses the upgrade."""
        ws = await connect(_with_token(url, token), open_timeout=open_timeout,
                           max_size=max_size, compression=None, ping_interval=None)
        return cls(ws)

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """`"state"`: `callback(mirror)` after each applied tick. `"message"`:
        `callback(message)` for every other message, which then does not reach `recv`."""
        if event not in self._callbacks:
            raise ValueError(f"unknown event {event!r}; use one of {', '.join(self._callbacks)}")
        self._callbacks[event].append(callback)

    async def send(self, message: bytes | str | Any) -> None:
        """`bytes` go as binary, `str` as text, anything else msgpack-encoded as binary."""
        if not isinstance(message, bytes | str):
            message = msgpack.packb(message)
        try:
            await self._ws.send(message)
        except ConnectionClosed as e:
            raise self._closed(e) from None

    async def recv(self) -> bytes | str:
        """The next message that is not state; raises RoomClosed once the room has closed and
        every message received before that has been returned."""
        item = await self._inbox.get()
        if item is _END:
            self._inbox.put_nowait(_END)
            raise self._closed(None)
        assert isinstance(item, bytes | str)
        return item

    async def wait_state(self, tick: int | None = None, timeout: float = 10.0) -> StateMirror:
        """Wait until the mirror reaches `tick` (default: the next tick after the current)."""
        target = self.state.tick + 1 if tick is None else tick
        async with asyncio.timeout(timeout):
            while self.state.tick < target:
                if self._reader.done():
                    raise self._closed(None)
                await self._state_changed.wait()
        return self.state

    async def __aiter__(self) -> AsyncIterator[bytes | str]:
        while True:
            try:
                yield await self.recv()
            except RoomClosed:
                return

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                body = state_payload(message)
                if body is None:
                    if self._callbacks["message"]:
                        for cb in self._callbacks["message"]:
                            cb(message)
                    else:
                        await self._inbox.put(message)
                    continue
                try:
                    applied = self.state.apply(body)
                except StateError:
                    log.exception("state message could not be applied")
                    continue
                if applied:
                    for cb in self._callbacks["state"]:
                        cb(self.state)
                    event, self._state_changed = self._state_changed, asyncio.Event()
                    event.set()
        except ConnectionClosed:
            pass
        finally:
            self._state_changed.set()
            await self._inbox.put(_END)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._ws.close(code, reason)
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), 1.0)
        except (TimeoutError, asyncio.CancelledError):
            self._reader.cancel()

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

    def _closed(self, e: ConnectionClosed | None) -> RoomClosed:
        frame = e.rcvd if e is not None else self._ws.protocol.close_rcvd
        return RoomClosed(frame.code if frame else None, frame.reason if frame else "")
