"""A client that never reads: it stops getting state, the others get every tick, and it is
dropped with 1008 after --slow-reader-timeout."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
from collections.abc import Iterator

import aiohttp
import pytest

from stadium_client import Room
from tests.conftest import RelayProcess, start_relay


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayProcess]:
    r = start_relay("--room", "flood=tests.rooms:FloodRoom", "--slow-reader-bytes", "65536",
                    "--slow-reader-timeout", "2")
    yield r
    r.stop(signal.SIGKILL)


async def _metrics(relay: RelayProcess) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{relay.http}/metrics") as resp:
        return await resp.text()


def _value(text: str, pattern: str) -> float:
    m = re.search(pattern, text, re.M)
    return float(m.group(1)) if m else 0.0


def _stalled_client(relay: RelayProcess, path: str) -> socket.socket:
    """Completes the WebSocket handshake, then never reads again (tiny receive buffer)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((relay.host, relay.port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return s


async def test_a_stalled_reader_is_skipped_then_dropped_and_others_miss_nothing(
        relay: RelayProcess) -> None:
    before = await _metrics(relay)
    closes_1008 = _value(before, r'^stadium_relay_closes_total\{code="1008"\} (\S+)')
    stalled = _stalled_client(relay, "/rooms/flood/f1")
    try:
        async with await Room.connect(f"{relay.url}/rooms/flood/f1") as ok:
            ticks: list[int] = []
            ok.on("state", lambda m: ticks.append(m.doc["tick"]))
            async with asyncio.timeout(20):
                while True:
                    await ok.wait_state()
                    text = await _metrics(relay)
                    if _value(text, r'^stadium_relay_closes_total\{code="1008"\} (\S+)') \
                            > closes_1008:
                        break
            assert _value(text, r"^stadium_relay_updates_skipped_total (\S+)") > 0
            await ok.wait_state(ok.state.tick + 5)
            # The reader kept up: every tick, in order, none skipped.
            assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
            assert len(ticks) > 50
    finally:
        stalled.close()
