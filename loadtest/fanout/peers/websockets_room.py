"""Fan-out peer: the `websockets` library, one broadcast room per URL path, relayed with its
`broadcast()` to every other member. Usage: python websockets_room.py PORT
"""

import sys

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

rooms: dict[str, set[ServerConnection]] = {}


async def member(ws: ServerConnection) -> None:
    path = ws.request.path if ws.request is not None else "/"
    room = rooms.setdefault(path, set())
    room.add(ws)
    try:
        async for message in ws:
            broadcast([c for c in room if c is not ws], message)
    finally:
        room.discard(ws)


async def main(port: int) -> None:
    # No keepalive pings and no compression: the other servers run without them too.
    async with serve(member, "127.0.0.1", port, compression=None, ping_interval=None,
                     max_size=1 << 20, backlog=4096, open_timeout=60) as server:
        print(f"listening on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
