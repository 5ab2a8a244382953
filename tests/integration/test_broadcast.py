"""Clients of three libraries exchanging messages in `broadcast` rooms on a real relay."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess

import aiohttp
import pytest

from loadtest.wsclient import WSClient
from stadium_client import Room
from tests.conftest import ROOT, RelayProcess

NODE_DIR = ROOT / "tests" / "node"


async def _nothing_more(room: Room) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(room.recv(), 0.2)


async def test_two_sdk_clients_receive_each_others_messages(relay: RelayProcess) -> None:
    url = f"{relay.url}/rooms/broadcast/sdk-pair"
    async with await Room.connect(url) as a, await Room.connect(url) as b:
        await a.send("hello from a")
        await b.send(b"\x00\x01binary from b")
        await a.send({"kind": "move", "x": 1})
        assert await asyncio.wait_for(b.recv(), 5) == "hello from a"
        assert await asyncio.wait_for(a.recv(), 5) == b"\x00\x01binary from b"
        # msgpack object arrives as the binary bytes that encode it
        assert await asyncio.wait_for(b.recv(), 5) == b"\x82\xa4kind\xa4move\xa1x\x01"


async def test_sender_does_not_receive_its_own_message(relay: RelayProcess) -> None:
    url = f"{relay.url}/rooms/broadcast/no-echo"
    async with await Room.connect(url) as a, await Room.connect(url) as b:
        await a.send("one")
        await b.send("two")
        assert await asyncio.wait_for(a.recv(), 5) == "two"
        assert await asyncio.wait_for(b.recv(), 5) == "one"
        await _nothing_more(a)


async def test_rooms_are_isolated(relay: RelayProcess) -> None:
    async with await Room.connect(f"{relay.url}/rooms/broadcast/iso-1") as a, \
            await Room.connect(f"{relay.url}/rooms/broadcast/iso-1") as b, \
            await Room.connect(f"{relay.url}/rooms/broadcast/iso-2") as c:
        await c.send("for room 2 only")
        await a.send("for room 1")
        assert await asyncio.wait_for(b.recv(), 5) == "for room 1"
        await _nothing_more(a)


async def test_aiohttp_client_interop(relay: RelayProcess) -> None:
    url = f"{relay.url}/rooms/broadcast/aiohttp"
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(url, compress=15, autoping=True) as a, \
            session.ws_connect(url) as b:
        assert a.compress == 0  # permessage-deflate offered, and declined
        await a.send_str("ü text")
        await b.send_bytes(b"\xff" * 65536)  # 64-bit length, at the limit
        msg = await b.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.TEXT, "ü text")
        msg = await a.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.BINARY, b"\xff" * 65536)
        await a.ping(b"are you there")
        await a.close(code=4321)
        assert a.close_code == 4321  # the relay echoes the client's close code


async def test_node_ws_client_interop(relay: RelayProcess) -> None:
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "interop.mjs"), f"{relay.url}/rooms/broadcast/node",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=NODE_DIR)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["textToB"] == "héllo from node"
    assert report["binaryToA"] == list(range(10))
    assert report["fragmentedToB"] == "x" * 60000
    assert report["pong"] is True
    assert report["closeCode"] == 4000


async def test_thousand_clients_one_room_nothing_lost(relay: RelayProcess) -> None:
    """Every one of 1,000 clients sends one message; each receives the other 999."""
    n = 1000
    received = [0] * n
    seen: list[set[int]] = [set() for _ in range(n)]
    done = asyncio.Event()
    expected_total = n * (n - 1)
    total = 0

    def on_message(i: int):  # type: ignore[no-untyped-def]
        def handle(data: str | bytes) -> None:
            nonlocal total
            assert isinstance(data, bytes)
            sender = struct.unpack("!I", data[:4])[0]
            seen[i].add(sender)
            received[i] += 1
            total += 1
            if total == expected_total:
                done.set()
        return handle

    clients: list[WSClient] = []
    for batch in range(0, n, 100):
        clients += await asyncio.gather(*(
            WSClient.connect(relay.host, relay.port, "/rooms/broadcast/thousand",
                             on_message=on_message(i)) for i in range(batch, batch + 100)))
    for i, c in enumerate(clients):
        c.send(struct.pack("!I", i) + os.urandom(60))
    try:
        await asyncio.wait_for(done.wait(), 90)
    finally:
        for c in clients:
            c.transport.close()  # type: ignore[union-attr]
    assert total == expected_total
    for i in range(n):
        assert received[i] == n - 1
        assert seen[i] == set(range(n)) - {i}


async def test_index_health_and_metrics(relay: RelayProcess) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{relay.http}/healthz") as r:
            assert r.status == 200 and await r.json() == {"status": "ok"}
        async with s.get(f"{relay.http}/") as r:
            assert "broadcast" in (await r.json())["room_types"]
        async with s.get(f"{relay.http}/metrics") as r:
            text = await r.text()
            assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
        async with s.post(f"{relay.http}/healthz") as r:
            assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"
        async with s.get(f"{relay.http}/nope") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    for name in ("stadium_relay_connections", "stadium_relay_rooms",
                 "stadium_relay_messages_in_total", "stadium_relay_bytes_out_total",
                 "stadium_relay_rate_limit_drops_total"):
        assert name in text
