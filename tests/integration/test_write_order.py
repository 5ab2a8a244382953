"""The relay joins a room's broadcasts once per flush: what each socket receives keeps the
order the room produced it in, and a socket gets only what was sent while it was a member."""

from __future__ import annotations

import asyncio
import base64
import os

from stadium_client import Room
from tests.conftest import RelayProcess


async def _texts(room: Room, n: int) -> list[str]:
    return [str(await asyncio.wait_for(room.recv(), 5)) for _ in range(n)]


async def test_broadcasts_and_direct_sends_keep_their_order(relay: RelayProcess) -> None:
    url = f"{relay.url}/rooms/mix/m1"
    async with await Room.connect(url) as s, await Room.connect(url) as o:
        await _texts(s, 1)
        await _texts(o, 1)
        await s.send("mix")
        assert await _texts(s, 4) == ["A", "P", "C", "Q"]  # B and D excluded it
        assert await _texts(o, 4) == ["A", "B", "C", "D"]
        await s.send("mix")
        await o.send("mix")
        assert await _texts(s, 4 + 4) == ["A", "P", "C", "Q", "A", "B", "C", "D"]
        assert await _texts(o, 4 + 4) == ["A", "B", "C", "D", "A", "P", "C", "Q"]


async def _read_text(reader: asyncio.StreamReader) -> str:
    head = await reader.readexactly(2)
    assert head[0] == 0x81, head  # one unfragmented text frame, unmasked
    n = head[1]
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    return (await reader.readexactly(n)).decode()


async def _upgrade(r: RelayProcess, path: str) -> tuple[asyncio.StreamReader,
                                                       asyncio.StreamWriter, bytes]:
    """A TCP connection the relay has accepted, and the upgrade request to send on it."""
    reader, writer = await asyncio.open_connection(r.host, r.port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {r.host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    return reader, writer, request


async def test_a_socket_joining_during_a_flush_gets_only_later_broadcasts(
        relay: RelayProcess) -> None:
    url = f"{relay.url}/rooms/mix/m2"
    async with await Room.connect(url) as a, await Room.connect(url) as c:
        await _texts(a, 1)
        await _texts(c, 1)
        reader, writer, request = await _upgrade(relay, "/rooms/mix/m2")
        await asyncio.sleep(0.2)  # accepted, not yet upgraded
        # While the relay sleeps in c's handler, a's broadcast request and b's upgrade
        # arrive: the relay reads both in one pass, the broadcast first.
        await c.send("hold")
        await asyncio.sleep(0.1)
        await a.send("roll")
        await asyncio.sleep(0.05)
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        me = (await asyncio.wait_for(_read_text(reader), 5)).split()[1]
        await a.send("roll")
        # b may see the first roll only if it was a member then; it sees the second.
        while True:
            members = (await asyncio.wait_for(_read_text(reader), 5)).split()[1:]
            assert me in members, f"b ({me}) got a broadcast from before it joined"
            if len(members) == 3:
                break
        writer.close()
