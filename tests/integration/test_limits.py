"""Limits, join tokens, origins, TLS and shutdown, each on a relay started with that setting."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import aiohttp
import pytest
import trustme
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from loadtest.wsclient import HandshakeRefused, WSClient
from stadium import tokens
from stadium_client import Room, RoomClosed
from tests.conftest import RelayProcess


async def _metric(relay: RelayProcess, name: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(f"{relay.http}/metrics") as r:
        return "\n".join(line for line in (await r.text()).splitlines()
                         if line.startswith(name))


async def test_message_rate_limit_drops_then_closes_1008(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--msg-rate", "5", "--msg-burst", "5", "--rate-close-after", "20")
    path = "/rooms/broadcast/rate"
    a = await WSClient.connect(relay.host, relay.port, path)
    flood = await WSClient.connect(relay.host, relay.port, path)
    for i in range(10):
        flood.send(f"m{i}")
    received = [await a.recv() for _ in range(5)]
    assert received == [f"m{i}" for i in range(5)]  # the burst passes, the rest is dropped
    await asyncio.sleep(0.2)
    assert a.messages.empty()
    assert "stadium_relay_rate_limit_drops_total 5.0" in await _metric(
        relay, "stadium_relay_rate_limit_drops_total")
    for i in range(40):  # sustained flooding: closed with 1008
        flood.send(f"more{i}")
    assert await flood.wait_closed() == 1008
    assert flood.close_reason == "rate limit exceeded"
    b = await WSClient.connect(relay.host, relay.port, path)
    b.send("others still fine")
    passed = []
    while (m := await a.recv()) != "others still fine":
        passed.append(m)
    # Only what the bucket refilled during the test (5/s) got through the flood.
    assert len(passed) <= 5 and all(str(m).startswith("more") for m in passed)


async def test_byte_rate_limit(relay_factory) -> None:  # type: ignore[no-untyped-def]
    # A slow refill (100 B/s), so a stalled test machine cannot refill a whole message.
    relay = relay_factory("--byte-rate", "100", "--byte-burst", "3100")
    path = "/rooms/broadcast/bytes"
    a = await WSClient.connect(relay.host, relay.port, path)
    flood = await WSClient.connect(relay.host, relay.port, path)
    for _ in range(3):
        flood.send(b"x" * 1500)
        await asyncio.sleep(0.05)  # separate reads, so each message is its own chunk
    assert len(await a.recv()) == 1500
    assert len(await a.recv()) == 1500
    await asyncio.sleep(0.2)
    assert a.messages.empty()  # the third pushed the bytes bucket into debt: dropped


async def test_max_message_size_is_configurable(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--max-message-size", "100")
    path = "/rooms/broadcast/size"
    a = await WSClient.connect(relay.host, relay.port, path)
    big = await WSClient.connect(relay.host, relay.port, path)
    big.send(b"y" * 100)
    assert await a.recv() == b"y" * 100
    big.send(b"y" * 101)
    assert await big.wait_closed() == 1009


async def test_per_ip_connection_limit_429(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--ip-max-connections", "3")
    path = "/rooms/broadcast/ip"
    clients = [await WSClient.connect(relay.host, relay.port, path) for _ in range(3)]
    with pytest.raises(HandshakeRefused) as e:
        await WSClient.connect(relay.host, relay.port, path)
    assert e.value.status == 429 and b"too_many_connections" in e.value.response
    # another source address is counted on its own
    other = await WSClient.connect(relay.host, relay.port, path, local_addr=("127.0.0.2", 0))
    await clients[0].close()
    await asyncio.sleep(0.1)
    again = await WSClient.connect(relay.host, relay.port, path)
    for c in (*clients[1:], other, again):
        c.transport.close()  # type: ignore[union-attr]


async def test_per_ip_handshake_rate_429(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--ip-handshake-rate", "1", "--ip-handshake-burst", "4")
    path = "/rooms/broadcast/hs"
    ok = [await WSClient.connect(relay.host, relay.port, path) for _ in range(4)]
    with pytest.raises(HandshakeRefused) as e:
        await WSClient.connect(relay.host, relay.port, path)
    assert e.value.status == 429 and b"too_many_handshakes" in e.value.response
    assert b"Retry-After: 1" in e.value.response
    await asyncio.sleep(1.1)
    ok.append(await WSClient.connect(relay.host, relay.port, path))
    for c in ok:
        c.transport.close()  # type: ignore[union-attr]


async def test_trust_proxy_takes_address_from_x_forwarded_for(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--ip-max-connections", "1", "--trust-proxy")
    path = "/rooms/broadcast/proxy"
    a = await WSClient.connect(relay.host, relay.port, path,
                               {"X-Forwarded-For": "203.0.113.9, 198.51.100.1"})
    b = await WSClient.connect(relay.host, relay.port, path, {"X-Forwarded-For": "198.51.100.2"})
    with pytest.raises(HandshakeRefused) as e:
        await WSClient.connect(relay.host, relay.port, path, {"X-Forwarded-For": "198.51.100.2"})
    assert e.value.status == 429
    a.transport.close()  # type: ignore[union-attr]
    b.transport.close()  # type: ignore[union-attr]


async def test_idle_timeout_and_keepalive_ping(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--ping-interval", "0.5", "--idle-timeout", "2.5")
    path = "/rooms/broadcast/idle"
    # Our client answers pings: it stays; a socket that never answers is closed.
    alive = await WSClient.connect(relay.host, relay.port, path)
    mute = await WSClient.connect(relay.host, relay.port, path)
    mute.transport.pause_reading()  # type: ignore[union-attr]
    await asyncio.sleep(4.5)
    assert alive.pings >= 2 and not alive.closed.done()
    mute.transport.resume_reading()  # type: ignore[union-attr]
    assert await mute.wait_closed() == 1001
    assert mute.close_reason == "idle timeout"


async def test_join_tokens(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--secret", "s3cret")
    url = f"{relay.url}/rooms/broadcast/match-1"
    for bad, code in ((None, "missing_token"),
                      (tokens.sign("wrong", room_type="broadcast", room_id="match-1",
                                   player="p1"), "bad_signature"),
                      (tokens.sign("s3cret", room_type="broadcast", room_id="match-2",
                                   player="p1"), "wrong_room"),
                      (tokens.sign("s3cret", room_type="broadcast", room_id="match-1",
                                   player="p1", ttl=-60), "expired")):
        with pytest.raises(InvalidStatus) as e:
            await Room.connect(url, token=bad)
        assert e.value.response.status_code == 401
        assert code.encode() in e.value.response.body
    good = tokens.sign("s3cret", room_type="broadcast", room_id="match-1", player="p1")
    other = tokens.sign("s3cret", room_type="broadcast", room_id="match-1", player="p2")
    async with await Room.connect(url, token=good) as a, await Room.connect(url, token=other) as b:
        await a.send("seated")
        assert await asyncio.wait_for(b.recv(), 5) == "seated"
    async with connect(url, additional_headers={"Authorization": f"Bearer {good}"}) as ws:
        assert ws.protocol.state.name == "OPEN"


async def test_allowed_origins(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--allowed-origins", "https://game.example")
    path = "/rooms/broadcast/origin"
    ok = await WSClient.connect(relay.host, relay.port, path, {"Origin": "https://game.example"})
    no_origin = await WSClient.connect(relay.host, relay.port, path)
    with pytest.raises(HandshakeRefused) as e:
        await WSClient.connect(relay.host, relay.port, path, {"Origin": "https://evil.example"})
    assert e.value.status == 403
    ok.transport.close()  # type: ignore[union-attr]
    no_origin.transport.close()  # type: ignore[union-attr]


async def test_wss_with_cert_and_key(relay_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    relay = relay_factory("--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem"))
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    url = f"wss://127.0.0.1:{relay.port}/rooms/broadcast/tls"
    async with connect(url, ssl=ctx) as a, connect(url, ssl=ctx) as b:
        await a.send("over tls")
        assert await asyncio.wait_for(b.recv(), 5) == "over tls"
    async with aiohttp.ClientSession() as s, \
            s.get(f"https://127.0.0.1:{relay.port}/healthz", ssl=ctx) as r:
        assert r.status == 200


async def test_sigterm_closes_every_socket_1001_and_exits(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory()
    path = "/rooms/broadcast/drain"
    clients = [await WSClient.connect(relay.host, relay.port, path) for _ in range(20)]
    started = time.monotonic()
    relay.proc.terminate()
    codes = await asyncio.gather(*(c.wait_closed(timeout=6) for c in clients))
    assert set(codes) == {1001}
    assert "reconnect" in clients[0].close_reason
    rc = await asyncio.to_thread(relay.proc.wait, 6)
    assert rc == 0 and time.monotonic() - started < 5


async def test_sigterm_with_a_client_that_never_answers(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory()
    mute = await WSClient.connect(relay.host, relay.port, "/rooms/broadcast/mute")
    mute.transport.pause_reading()  # type: ignore[union-attr]
    started = time.monotonic()
    relay.proc.terminate()
    rc = await asyncio.to_thread(relay.proc.wait, 8)
    assert rc == 0 and time.monotonic() - started < 5


async def test_closed_room_raises_room_closed(relay: RelayProcess) -> None:
    async with await Room.connect(f"{relay.url}/rooms/faulty/sdk-close") as r:
        await r.send("boom")
        with pytest.raises(RoomClosed) as e:
            await asyncio.wait_for(r.recv(), 5)
        assert e.value.code == 1011


async def test_one_join_token_holds_one_live_socket(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--secret", "s3cret", "--room", "solo=tests.rooms:SoloRoom")
    alice = tokens.sign("s3cret", room_type="broadcast", room_id="seat", player="alice")
    bob = tokens.sign("s3cret", room_type="broadcast", room_id="seat", player="bob")
    path = "/rooms/broadcast/seat"
    first = await WSClient.connect(relay.host, relay.port, f"{path}?token={alice}")
    second = await WSClient.connect(relay.host, relay.port, f"{path}?token={alice}")
    other = await WSClient.connect(relay.host, relay.port, f"{path}?token={bob}")
    assert await first.wait_closed() == 4409  # replaced by the newer connection
    other.send("to the room")
    assert await second.recv() == "to the room"
    assert "stadium_relay_connections 2.0" in await _metric(relay, "stadium_relay_connections")
    # a room type whose seats are "refuse" turns the second socket away instead
    solo = tokens.sign("s3cret", room_type="solo", room_id="s", player="alice")
    kept = await WSClient.connect(relay.host, relay.port, f"/rooms/solo/s?token={solo}")
    with pytest.raises(HandshakeRefused) as e:
        await WSClient.connect(relay.host, relay.port, f"/rooms/solo/s?token={solo}")
    assert e.value.status == 409 and b"seat_taken" in e.value.response
    kept.send("still mine")
    assert await kept.recv() == "still mine"
    for c in (second, other, kept):
        await c.close()


async def test_a_request_with_bare_lf_line_ends_is_refused_at_once(relay_factory) -> None:  # type: ignore[no-untyped-def]
    relay = relay_factory("--handshake-timeout", "30")
    reader, writer = await asyncio.open_connection(relay.host, relay.port)
    writer.write(b"GET /healthz HTTP/1.1\nHost: x\n\n")
    head = await asyncio.wait_for(reader.read(4096), 5)  # well before the handshake timeout
    assert head.startswith(b"HTTP/1.1 400 ") and b"CRLF" in head
    writer.close()
