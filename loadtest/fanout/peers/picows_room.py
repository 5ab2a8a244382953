"""Fan-out peer: picows, one broadcast room per URL path; a message is framed once and the
same bytes are written to every other member's transport. Usage: python picows_room.py PORT
"""

import asyncio
import struct
import sys

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

rooms: dict[str, set[asyncio.Transport]] = {}


def frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


class Member(WSListener):
    def __init__(self, path: str) -> None:
        self.path = path
        self.room: set[asyncio.Transport] = set()
        self.raw: asyncio.Transport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.room = rooms.setdefault(self.path, set())
        self.raw = transport.underlying_transport
        self.room.add(self.raw)

    def on_ws_frame(self, transport: WSTransport, f: WSFrame) -> None:
        kind = f.msg_type
        if kind == WSMsgType.BINARY or kind == WSMsgType.TEXT:
            # Only single-frame messages: the benchmark sends 64 bytes.
            data = frame(int(kind), f.get_payload_as_bytes())
            me = self.raw
            for t in self.room:
                if t is not me:
                    t.write(data)
        elif kind == WSMsgType.CLOSE:
            transport.send_close(f.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.raw is not None:
            self.room.discard(self.raw)


def listener(request: WSUpgradeRequest) -> Member:
    return Member(request.path.decode() if isinstance(request.path, bytes) else request.path)


async def main(port: int) -> None:
    server = await ws_create_server(listener, "127.0.0.1", port, backlog=4096,
                                    websocket_handshake_timeout=60)
    print(f"listening on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
