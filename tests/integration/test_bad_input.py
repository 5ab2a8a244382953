"""Malformed input gets the RFC's close code or an HTTP error; the room's other players
keep receiving."""

from __future__ import annotations

import asyncio
import struct

import pytest

from loadtest.wsclient import HandshakeRefused, WSClient
from relay.ws.frames import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, encode_frame
from tests.conftest import RelayProcess

PATH = "/rooms/broadcast/bad-input"


async def _pair(relay: RelayProcess) -> tuple[WSClient, WSClient]:
    a = await WSClient.connect(relay.host, relay.port, PATH)
    b = await WSClient.connect(relay.host, relay.port, PATH)
    return a, b


async def _still_relaying(a: WSClient, b: WSClient, tag: str) -> None:
    a.send(f"a->b {tag}")
    b.send(f"b->a {tag}".encode())
    assert await b.recv() == f"a->b {tag}"
    assert await a.recv() == f"b->a {tag}".encode()


def _masked(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    frame = bytearray(encode_frame(opcode, payload, b"\x01\x02\x03\x04", fin))
    frame[0] |= rsv
    return bytes(frame)


BAD_FRAMES = {
    "unmasked frame": (encode_frame(OP_TEXT, b"no mask"), 1002),
    "invalid utf-8 text": (_masked(OP_TEXT, b"\xc3\x28 bad"), 1007),
    "oversized message": (_masked(OP_BINARY, b"\0" * 70000), 1009),
    "huge length field": (b"\x82\xff" + struct.pack("!Q", 1 << 40) + b"\1\2\3\4", 1009),
    "fragmented control frame": (_masked(OP_PING, b"p", fin=False), 1002),
    "control frame over 125 bytes": (_masked(OP_PING, b"p" * 126), 1002),
    "reserved opcode": (_masked(0x3, b"?"), 1002),
    "reserved control opcode": (_masked(0xB, b"?"), 1002),
    "reserved bit": (_masked(OP_TEXT, b"rsv1", rsv=0x40), 1002),
    "continuation without start": (_masked(OP_CONT, b"orphan"), 1002),
    "data frame inside fragmented message":
        (_masked(OP_TEXT, b"a", fin=False) + _masked(OP_TEXT, b"b"), 1002),
    "invalid close code": (_masked(0x8, struct.pack("!H", 1005)), 1002),
    "garbage": (b"\x8f\x80" + b"\xde\xad\xbe\xef" * 8, 1002),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_bad_frame_gets_its_close_code_and_others_keep_going(
        relay: RelayProcess, name: str) -> None:
    raw, code = BAD_FRAMES[name]
    a, b = await _pair(relay)
    bad = await WSClient.connect(relay.host, relay.port, PATH)
    bad.send_raw(raw)
    assert await bad.wait_closed() == code, name
    await _still_relaying(a, b, name)
    a.transport.close()  # type: ignore[union-attr]
    b.transport.close()  # type: ignore[union-attr]


BAD_HANDSHAKES = {
    "no key": ("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n", 400),
    "version 8": ("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
                  426),
    "other protocol": ("GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
                       "\r\n", 426),
    "POST upgrade": ("POST {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", 400),
    "garbage line": ("\x16\x03\x01 garbage \r\n\r\n", 400),
    "unknown room type": ("GET /rooms/nope/x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n", 404),
    "bad room id": ("GET /rooms/broadcast/a%20b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n", 400),
    "huge head": ("GET {path} HTTP/1.1\r\nX-Big: " + "a" * 10000 + "\r\n\r\n", 431),
}


@pytest.mark.parametrize("name", list(BAD_HANDSHAKES))
async def test_bad_handshake_gets_http_error(relay: RelayProcess, name: str) -> None:
    raw, status = BAD_HANDSHAKES[name]
    a, b = await _pair(relay)
    reader, writer = await asyncio.open_connection(relay.host, relay.port)
    writer.write(raw.replace("{path}", PATH).encode("latin-1"))
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), response[:200]
    assert b'"error": {"code": ' in body
    await _still_relaying(a, b, name)
    a.transport.close()  # type: ignore[union-attr]
    b.transport.close()  # type: ignore[union-attr]


async def test_half_handshake_then_silence_is_cut_by_the_handshake_timeout(
        relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--handshake-timeout", "0.5")
    reader, writer = await asyncio.open_connection(relay.host, relay.port)
    writer.write(b"GET /rooms/broadcast/x HTTP/1.1\r\nHost: x\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
    writer.close()


async def test_room_handler_exception_closes_only_that_connection(relay: RelayProcess) -> None:
    path = "/rooms/faulty/f1"
    a = await WSClient.connect(relay.host, relay.port, path)
    b = await WSClient.connect(relay.host, relay.port, path)
    c = await WSClient.connect(relay.host, relay.port, path)
    c.send("boom")
    assert await c.wait_closed() == 1011
    a.send("after")
    assert await b.recv() == "after"
    assert c.close_reason == "internal error"


async def test_handshake_refused_for_unknown_path(relay: RelayProcess) -> None:
    with pytest.raises(HandshakeRefused) as e:
        await WSClient.connect(relay.host, relay.port, "/elsewhere")
    assert e.value.status == 404
