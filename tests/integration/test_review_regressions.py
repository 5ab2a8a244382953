"""Abuse and re-entrancy cases: each once let a client or a handler get around the design."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from loadtest.wsclient import HandshakeRefused, WSClient
from relay import Connection, Room
from relay.ws.frames import OP_BINARY, OP_PING, OP_TEXT, encode_client_frame, encode_frame
from stadium import tokens
from stadium.testing import LocalRelay
from tests.conftest import RelayProcess


async def _http_get(relay: RelayProcess, path: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as s, s.get(f"{relay.http}{path}") as r:
        return r.status, await r.json()


async def test_byte_rate_counts_messages_split_over_many_reads(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--byte-rate", "100", "--byte-burst", "3000")
    path = "/rooms/broadcast/split"
    a = await WSClient.connect(relay.host, relay.port, path)
    sender = await WSClient.connect(relay.host, relay.port, path)
    for _ in range(5):
        frame = encode_client_frame(OP_BINARY, b"s" * 1500)
        sender.send_raw(frame[:-1])
        await asyncio.sleep(0.02)
        sender.send_raw(frame[-1:])  # the read that completes the message is one byte
        await asyncio.sleep(0.02)
    got = 0
    with pytest.raises(TimeoutError):
        while True:
            await a.recv(timeout=0.5)
            got += 1
    assert got <= 2  # 3000 bytes of burst (plus a little refill) pay for two 1500-byte messages


async def test_close_inside_a_handler_runs_on_close_after_it(relay: RelayProcess) -> None:
    path = "/rooms/order/reentry"
    stays = await WSClient.connect(relay.host, relay.port, path)
    kicked = await WSClient.connect(relay.host, relay.port, path)
    _, before = await _http_get(relay, path)
    kicked.send("kick")
    assert await kicked.wait_closed() == 4000
    await asyncio.sleep(0.1)
    _, after = await _http_get(relay, path)
    assert after["events"] == ["message 'kick' start", "message 'kick' end", "close"]
    assert after["instance"] == before["instance"]  # the room was not dropped while in use
    stays.transport.close()  # type: ignore[union-attr]


async def test_a_response_that_cannot_be_sent_is_a_500_and_the_room_goes_on(
        relay: RelayProcess) -> None:
    path = "/rooms/order/bad-answer"
    c = await WSClient.connect(relay.host, relay.port, path)
    status, body = await _http_get(relay, path + "?bad=header")
    assert status == 500 and body["error"]["code"] == "internal_error"
    c.send("still alive")
    await asyncio.sleep(0.1)
    _, after = await _http_get(relay, path)
    assert "message 'still alive' end" in after["events"]


async def test_body_in_small_pieces(relay: RelayProcess) -> None:
    c = await WSClient.connect(relay.host, relay.port, "/rooms/echo/chunks")
    await c.recv()  # hello
    body = bytes(range(256)) * 64
    reader, writer = await asyncio.open_connection(relay.host, relay.port)
    writer.write(f"POST /rooms/echo/chunks HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
                 "\r\n\r\n".encode())
    for i in range(0, len(body), 256):
        writer.write(body[i:i + 256])
        await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)
    assert response.startswith(b"HTTP/1.1 200 ") and b'"delivered_to": 1' in response
    assert await c.recv() == body
    writer.close()


async def test_unfinished_requests_per_address_are_capped(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--ip-max-pending", "3")
    parked = [await asyncio.open_connection(relay.host, relay.port) for _ in range(3)]
    for _, w in parked:
        w.write(b"POST /rooms/broadcast/x HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial")
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection(relay.host, relay.port)
    response = await asyncio.wait_for(reader.read(), 5)
    assert response.startswith(b"HTTP/1.1 429 ") and b"too_many_pending" in response
    for _, w in parked:
        w.close()
    writer.close()
    await asyncio.sleep(0.1)
    ok = await WSClient.connect(relay.host, relay.port, "/rooms/broadcast/x")  # freed again
    ok.transport.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("length,status", [("9" * 5000, 413), ("²", 400), ("-1", 400)])
async def test_bad_content_length(relay: RelayProcess, length: str, status: int) -> None:
    reader, writer = await asyncio.open_connection(relay.host, relay.port)
    writer.write(b"POST /rooms/echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 + length.encode("latin-1", "replace") + b"\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 5)
    assert response.startswith(f"HTTP/1.1 {status} ".encode()), response[:100]
    writer.close()


async def test_room_id_with_a_trailing_newline_is_refused(relay: RelayProcess) -> None:
    with pytest.raises(HandshakeRefused) as e:
        await WSClient.connect(relay.host, relay.port, "/rooms/broadcast/lobby%0A")
    assert e.value.status == 400


async def test_http_to_a_room_needs_a_token_when_the_relay_has_a_secret(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--secret", "k", "--room", "echo=tests.rooms:EchoRoom")
    status, body = await _http_get(relay, "/rooms/echo/private")
    assert status == 401 and body["error"]["code"] == "missing_token"
    token = tokens.sign("k", room_type="echo", room_id="private", player="server")
    status, body = await _http_get(relay, f"/rooms/echo/private?token={token}")
    assert status == 200 and body["room"] == "private"


async def test_a_room_that_cannot_be_created_is_a_500(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--room", "broken=tests.rooms:BrokenRoom")
    status, body = await _http_get(relay, "/rooms/broken/x")
    assert status == 500 and body["error"]["code"] == "room_failed"
    with pytest.raises(HandshakeRefused) as e:
        await WSClient.connect(relay.host, relay.port, "/rooms/broken/x")
    assert e.value.status == 500
    ok = await WSClient.connect(relay.host, relay.port, "/rooms/broadcast/fine")
    ok.transport.close()  # type: ignore[union-attr]


class _Kick(Room):
    def on_message(self, conn: Connection, message: str | bytes) -> None:
        if message == "kick":
            conn.close(4000, "bye")
        else:
            conn.send(f"echo:{message!s}")


async def test_a_closing_client_that_fails_cannot_stall_other_members_writes() -> None:
    """A client the relay is closing sends a ping and a bad frame in one write: its pong must
    not be written after our end of TCP (that raised in the flush and stranded the direct
    sends of every member after it in the batch)."""
    loop = asyncio.get_running_loop()
    errors: list[object] = []
    loop.set_exception_handler(lambda _, ctx: errors.append(ctx.get("exception") or ctx))
    async with LocalRelay({"kick": _Kick}, secret=None, flush_interval=0.05) as relay:
        ra, wa = await _upgrade(relay.relay.port, "/rooms/kick/a")
        rb, wb = await _upgrade(relay.relay.port, "/rooms/kick/b")
        wa.write(encode_client_frame(OP_TEXT, b"kick"))
        await asyncio.sleep(0.2)  # the relay sent its close frame: a is closing, still read
        wa.write(encode_client_frame(OP_PING, b"p") + encode_frame(OP_TEXT, b"unmasked"))
        await asyncio.sleep(0.005)
        wb.write(encode_client_frame(OP_TEXT, b"one"))  # b's answer after a's pong
        await asyncio.sleep(0.3)
        wb.write(encode_client_frame(OP_TEXT, b"two"))
        got = b""
        with contextlib.suppress(TimeoutError):
            while b"echo:two" not in got:
                got += await asyncio.wait_for(rb.read(1000), 2.0)
        assert b"echo:one" in got and b"echo:two" in got
        assert errors == []
        for w in (wa, wb):
            w.close()


async def _upgrade(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
             ).encode())
    assert b" 101 " in await r.readuntil(b"\r\n\r\n")
    return r, w
