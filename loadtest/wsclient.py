"""A minimal asyncio WebSocket client on the relay's own codec, for tests and benchmarks.

It can send well-formed frames or any raw bytes, and records what the relay sends
back, including the close code, which is what malformed-input tests need.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from typing import cast

from relay.ws.frames import (
    OP_CLOSE,
    OP_PONG,
    Close,
    FrameReader,
    Message,
    Ping,
    ProtocolError,
    close_payload,
    encode_client_frame,
)
from relay.ws.handshake import accept_key


class HandshakeRefused(Exception):
    def __init__(self, status: int, response: bytes) -> None:
        super().__init__(f"HTTP {status}: {response[:200]!r}")
        self.status = status
        self.response = response


class WSClient(asyncio.Protocol):
    """Connect with `await WSClient.connect(host, port, path)`."""

    def __init__(self, on_message: Callable[[str | bytes], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader(masked=False, max_message_size=1 << 30)
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.on_message = on_message
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.get_running_loop().create_future()
        self.opened = asyncio.get_running_loop().create_future()
        self.pings = 0
        self._head = b""
        self._key = base64.b64encode(os.urandom(16)).decode()

    @classmethod
    async def connect(cls, host: str, port: int, path: str, headers: dict[str, str] | None = None,
                      local_addr: tuple[str, int] | None = None,
                      on_message: Callable[[str | bytes], None] | None = None,
                      timeout: float = 10.0) -> WSClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: cls(on_message), host, port,
                                                local_addr=local_addr)
        proto.request(host, port, path, headers or {})
        await asyncio.wait_for(asyncio.shield(proto.opened), timeout)
        return proto

    def request(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {self._key}",
                 "Sec-WebSocket-Version: 13"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        assert self.transport is not None
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(HandshakeRefused(0, self._head))
        if not self.closed.done():
            self.closed.set_result(self.close_code)

    def data_received(self, data: bytes) -> None:
        if not self.opened.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self._head[:end], self._head[end + 4:]
            status = int(head.split(b" ", 2)[1])
            accept = f"Sec-WebSocket-Accept: {accept_key(self._key)}".encode()
            if status != 101 or accept not in head:
                self.opened.set_exception(HandshakeRefused(status, self._head))
                return
            self.opened.set_result(None)
            data = rest
            if not data:
                return
        try:
            events = self.reader.feed(data)
        except ProtocolError:
            assert self.transport is not None
            self.transport.abort()
            return
        for ev in events:
            if type(ev) is Message:
                if self.on_message is not None:
                    self.on_message(ev.data)
                else:
                    self.messages.put_nowait(ev.data)
            elif type(ev) is Ping:
                self.pings += 1
                self.send_frame(OP_PONG, ev.payload)
            elif type(ev) is Close and self.close_code is None:
                self.close_code = ev.code
                self.close_reason = ev.reason
                self.send_frame(OP_CLOSE, close_payload(ev.code))

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_client_frame(opcode, payload, fin))

    def send(self, message: str | bytes) -> None:
        self.send_frame(1 if isinstance(message, str) else 2,
                        message.encode() if isinstance(message, str) else message)

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def close(self, code: int = 1000, timeout: float = 5.0) -> int | None:
        self.send_frame(OP_CLOSE, close_payload(code))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        finally:
            if self.transport is not None:
                self.transport.close()
        return self.close_code

    async def recv(self, timeout: float = 5.0) -> str | bytes:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        return self.close_code
