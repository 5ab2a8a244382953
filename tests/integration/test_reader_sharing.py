"""Between frames every socket shares one frame reader; a socket that stops mid-frame or
mid-message keeps a reader of its own until it completes. Interleaved partial frames from
many sockets, and a protocol error in the middle of them, must not mix up anyone's data."""

from __future__ import annotations

import asyncio

from loadtest.wsclient import WSClient
from relay.ws.frames import OP_BINARY, OP_CONT, OP_TEXT, encode_client_frame
from tests.conftest import RelayProcess


async def _settle() -> None:
    await asyncio.sleep(0.05)  # each piece arrives in a read of its own


async def test_interleaved_partial_frames_from_several_sockets(relay: RelayProcess) -> None:
    path = "/rooms/broadcast/reader-sharing"
    watcher = await WSClient.connect(relay.host, relay.port, path)
    a, b, c, d = [await WSClient.connect(relay.host, relay.port, path) for _ in range(4)]
    big = bytes(range(256)) * 40  # 10,240 bytes: a 64-bit length header, split below
    frame_a = encode_client_frame(OP_BINARY, big)
    a.send_raw(frame_a[:1])  # not even a whole header
    await _settle()
    b.send("from b, whole")
    await _settle()
    c.send_frame(OP_TEXT, b"from c, part 1 ", fin=False)  # a fragmented message
    await _settle()
    a.send_raw(frame_a[1:5000])
    await _settle()
    d.send_raw(b"\x82\xff\x80" + bytes(7))  # a length with its top bit set: protocol error
    await _settle()
    b.send("from b, again")
    await _settle()
    c.send_frame(OP_CONT, b"und 2", fin=True)
    await _settle()
    a.send_raw(frame_a[5000:])
    got = [await watcher.recv() for _ in range(4)]
    assert sorted(got, key=repr) == sorted([big, "from b, whole", "from b, again",
                                            "from c, part 1 und 2"], key=repr)
    assert got.index("from b, whole") < got.index("from b, again")
    assert await asyncio.wait_for(d.closed, 5) == 1002
    # The readers are back in the shared one's hands and still parse correctly.
    a.send("a again")
    c.send("c again")
    assert {await watcher.recv(), await watcher.recv()} == {"a again", "c again"}
    for ws in (watcher, a, b, c):
        await ws.close()
