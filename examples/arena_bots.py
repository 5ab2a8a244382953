"""Bots that play the built-in `arena` room: each steers its ship toward the nearest coin.

    stadium dev                                    # in one terminal
    python examples/arena_bots.py --bots 2         # in another

Prints what each bot saw, then a JSON summary line (used by the test suite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math

import msgpack
import numpy as np

from stadium_client import Room


async def bot(url: str, name: str, seconds: float) -> dict[str, object]:
    async with await Room.connect(f"{url}?name={name}") as room:
        ship = msgpack.unpackb(await room.recv())["ship"]
        await room.wait_state()
        start = room.state["ships"].get(ship)
        seen_ships: set[int] = set()
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while loop.time() < until:
            mirror = await room.wait_state()
            ships, coins = mirror["ships"], mirror["coins"]
            seen_ships.update(ships.ids.tolist())
            me = ships.get(ship)
            cx, cy = coins.values("x")[coins.ids], coins.values("y")[coins.ids]
            world = mirror.doc["world"]
            dx = (cx - me["x"] + world / 2) % world - world / 2
            dy = (cy - me["y"] + world / 2) % world - world / 2
            target = int(np.argmin(dx * dx + dy * dy))
            want = math.atan2(dy[target], dx[target])
            turn = (want - me["angle"] + math.pi) % (2 * math.pi) - math.pi
            await room.send({"turn": max(-1.0, min(1.0, turn * 2)), "thrust": 1.0})
        end = room.state["ships"].get(ship)
        players = room.state.doc["players"]
        print(f"{name}: ship {ship}, score {end['score']}, saw ships {sorted(seen_ships)} "
              f"({', '.join(players.values())})")
        return {"name": name, "ship": ship, "score": end["score"],
                "moved": math.dist((start["x"], start["y"]), (end["x"], end["y"])),
                "seen_ships": sorted(seen_ships), "ticks": room.state.tick}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/rooms/arena/demo")
    parser.add_argument("--bots", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    results = await asyncio.gather(*(bot(args.url, f"bot{i + 1}", args.seconds)
                                     for i in range(args.bots)))
    print(json.dumps({"bots": results}))


if __name__ == "__main__":
    asyncio.run(main())
