"""The Room API seen from clients: handler order, tags, attachments, storage, alarms, HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import msgpack

from loadtest.wsclient import WSClient
from tests.conftest import RelayProcess


async def _join(relay: RelayProcess, room: str, query: str = "") -> tuple[WSClient, dict]:  # type: ignore[type-arg]
    c = await WSClient.connect(relay.host, relay.port, f"/rooms/echo/{room}{query}")
    hello = msgpack.unpackb(await c.recv())
    return c, hello


async def test_async_on_connect_runs_before_later_messages(relay: RelayProcess) -> None:
    c = await WSClient.connect(relay.host, relay.port, "/rooms/echo/order")
    c.send("first")  # sent while on_connect is still awaiting
    assert "hello" in msgpack.unpackb(await c.recv())
    assert await c.recv() == "first"


async def test_attachment_and_its_size_limit(relay: RelayProcess) -> None:
    c, _ = await _join(relay, "attach")
    c.send("state")
    assert await c.recv() == "{'joined': True, 'player': None}"
    c.send("state=" + "z" * 100)
    assert await c.recv() == "ok"
    c.send("state=" + "z" * 3000)
    reply = await c.recv()
    assert isinstance(reply, str) and "over the 2048-byte limit" in reply


async def test_tags_select_connections(relay: RelayProcess) -> None:
    red, _ = await _join(relay, "tags", "?team=red")
    blue, _ = await _join(relay, "tags", "?team=blue")
    red2, _ = await _join(relay, "tags", "?team=red")
    blue.send("team:red:attack")
    assert await red.recv() == "attack"
    assert await red2.recv() == "attack"
    await asyncio.sleep(0.1)
    assert blue.messages.empty()


async def test_alarm_fires_on_alarm(relay: RelayProcess) -> None:
    a, _ = await _join(relay, "alarm")
    b, _ = await _join(relay, "alarm")
    a.send("alarm")
    assert await a.recv() == "alarm fired"
    assert await b.recv() == "alarm fired"


async def test_room_closes_a_connection_with_its_code(relay: RelayProcess) -> None:
    a, _ = await _join(relay, "closer")
    a.send("close")
    assert await a.wait_closed() == 4001
    assert a.close_reason == "asked to close"


async def test_storage_survives_the_room_being_dropped(relay: RelayProcess) -> None:
    a, hello = await _join(relay, "storage")
    assert hello["starts"] == 1
    await a.close()
    await asyncio.sleep(0.1)  # the empty room is dropped; its storage stays
    b, hello = await _join(relay, "storage")
    assert hello["starts"] == 2
    await b.close()


async def test_http_request_reaches_on_request(relay: RelayProcess) -> None:
    a, _ = await _join(relay, "http")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{relay.http}/rooms/echo/http?x=1") as r:
            assert r.status == 200
            assert await r.json() == {"room": "http", "connections": 1, "path": "/rooms/echo/http"}
        async with s.post(f"{relay.http}/rooms/echo/http", data=b"server says hi") as r:
            assert await r.json() == {"delivered_to": 1}
        assert await a.recv() == b"server says hi"
        async with s.get(f"{relay.http}/rooms/broadcast/http") as r:
            assert r.status == 404  # the broadcast room does not answer HTTP
            assert (await r.json())["error"]["code"] == "not_found"
        async with s.post(f"{relay.http}/rooms/echo/http", data=b"x" * (2 << 20)) as r:
            assert r.status == 413


async def test_metrics_count_rooms_and_connections(relay: RelayProcess) -> None:
    a, _ = await _join(relay, "metrics-room")
    async with aiohttp.ClientSession() as s, s.get(f"{relay.http}/metrics") as r:
        text = await r.text()
    gauges = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith(("stadium_relay_connections ", "stadium_relay_rooms "))}
    assert gauges["stadium_relay_connections"] >= 1
    assert gauges["stadium_relay_rooms"] >= 1
    await a.close()
