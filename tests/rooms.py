"""Room types the integration tests register with `--room`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from relay import ConnectContext, Connection, Fixed, Grid, Int, Request, Response, Room, State


class FaultyRoom(Room):
    """Relays like `broadcast`, but raises on the text message "boom"."""

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        if message == "boom":
            raise RuntimeError("the room failed on purpose")
        self.broadcast(message, exclude=[conn])


class EchoRoom(Room):
    """Exercises the Room API: async handlers, tags, attachments, storage, alarms, HTTP."""

    async def on_start(self) -> None:
        self.started = (await self.storage.get("starts", 0)) + 1
        await self.storage.put("starts", self.started)

    async def on_connect(self, conn: Connection, ctx: ConnectContext) -> None:
        await asyncio.sleep(0.01)  # a real await: later messages must still come after this
        team = ctx.request.query.get("team")
        if team:
            conn.tags.add(team)
        conn.state = {"joined": True, "player": ctx.player}
        conn.send({"hello": conn.id, "player": ctx.player, "starts": self.started})

    def on_message(self, conn: Connection, message: str | bytes) -> Any:
        if message == "state":
            conn.send(repr(conn.state))
        elif isinstance(message, str) and message.startswith("state="):
            try:
                conn.state = message[6:]
                conn.send("ok")
            except ValueError as e:
                conn.send(f"error: {e}")
        elif isinstance(message, str) and message.startswith("team:"):
            team, _, text = message[5:].partition(":")
            for c in self.connections(tag=team):
                c.send(text)
        elif message == "alarm":
            self.set_alarm(time.time() + 0.05)
        elif message == "close":
            conn.close(4001, "asked to close")
        else:
            conn.send(message)
        return None

    def on_alarm(self) -> None:
        self.broadcast("alarm fired")

    async def on_request(self, request: Request) -> Response:
        if request.method == "POST":
            self.broadcast(request.body)
            return Response.json({"delivered_to": self.connection_count})
        return Response.json({"room": self.id, "connections": self.connection_count,
                              "path": request.path})


class OrderRoom(Room):
    """Records the order its handlers run in; `kick` closes the sender from inside a handler."""

    def on_start(self) -> None:
        self.events: list[str] = []

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        self.events.append(f"message {message!r} start")
        if message == "kick":
            conn.close(4000, "kicked")
        self.events.append(f"message {message!r} end")

    def on_close(self, conn: Connection) -> None:
        self.events.append("close")

    def on_request(self, request: Request) -> Any:
        if request.query.get("bad") == "header":
            return Response("x", headers=[("X-Name", "\u2603")])  # not latin-1: cannot be sent
        return {"events": self.events, "instance": id(self)}


class BrokenRoom(Room):
    """Cannot even be constructed."""

    def __init__(self) -> None:
        raise RuntimeError("no room today")


class TickRoom(Room):
    """20 Hz; one dot per connection; text input "dx,dy" moves the sender's dot. The
    document keeps the inputs of the last tick, so clients can check their order."""

    tick_rate = 20

    def on_start(self) -> None:
        self.state = State({"dots": {"x": Fixed(0.01), "y": Fixed(0.01), "hue": Int("u1")}})
        self.state.doc["inputs"] = []

    def on_connect(self, conn: Connection, ctx: ConnectContext) -> None:
        assert self.state is not None
        conn.state = self.state["dots"].spawn(hue=len(self.connections()))
        conn.send({"you": conn.state})

    def on_close(self, conn: Connection) -> None:
        assert self.state is not None
        self.state["dots"].despawn(conn.state)

    def on_tick(self, dt: float, inputs: list[tuple[Connection, str | bytes]]) -> None:
        assert self.state is not None
        dots = self.state["dots"]
        seen = []
        for conn, message in inputs:
            text = message if isinstance(message, str) else message.decode()
            seen.append(text)
            if "," in text:
                dx, dy = text.split(",")
                dots["x"][conn.state] += float(dx)
                dots["y"][conn.state] += float(dy)
        self.state.doc["inputs"] = seen
        self.state.doc["tick"] = self.tick


class SlowTickRoom(Room):
    """A 50 Hz room whose ticks take 50 ms: it cannot keep its rate."""

    tick_rate = 50

    async def on_tick(self, dt: float, inputs: list[tuple[Connection, str | bytes]]) -> None:
        time.sleep(0.05)
        await asyncio.sleep(0)
        for conn, message in inputs:
            conn.send(f"tick {self.tick}: {message!r}")


class TooFastRoom(Room):
    tick_rate = 1000


class GridRoom(Room):
    """20 Hz with an interest grid of 10 x 10 cells of 10 m: a connection's dot starts at
    ?x=&y= and text input "x,y" moves it there; each connection sees the cells around its dot."""

    tick_rate = 20

    def on_start(self) -> None:
        self.state = State({"dots": {"x": Fixed(0.01), "y": Fixed(0.01)}},
                           grid=Grid(10.0, 10, 10, {"dots": ("x", "y")}))

    def on_connect(self, conn: Connection, ctx: ConnectContext) -> None:
        assert self.state is not None
        x, y = float(ctx.request.query.get("x", 0)), float(ctx.request.query.get("y", 0))
        conn.state = self.state["dots"].spawn(x=x, y=y)
        self.state.set_focus(conn.id, x, y)
        conn.send({"you": conn.state})

    def on_close(self, conn: Connection) -> None:
        assert self.state is not None
        self.state["dots"].despawn(conn.state)

    def on_tick(self, dt: float, inputs: list[tuple[Connection, str | bytes]]) -> None:
        assert self.state is not None
        for conn, message in inputs:
            x, y = (float(v) for v in str(message).split(","))
            self.state["dots"].set(conn.state, x=x, y=y)
            self.state.set_focus(conn.id, x, y)


class SleepyRoom(Room):
    """A counter that hibernates: "inc" answers the new count, "alarm" sets an alarm 2 s
    ahead that tells everyone; "ping" is answered by the connection table."""

    def on_start(self) -> None:
        self.count = (self.restored or {}).get("count", 0)
        self.set_auto_response("ping", "pong")

    def snapshot(self) -> dict[str, int]:
        return {"count": self.count}

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        if message == "inc":
            self.count += 1
            conn.send(str(self.count))
        elif message == "alarm":
            self.set_alarm(time.time() + 2.0)
            conn.send("alarm set")

    def on_alarm(self) -> None:
        self.broadcast(f"alarm fired, count {self.count}")


class FloodRoom(Room):
    """50 Hz, 4,000 entities that all move every tick: about 20 KB of state per tick."""

    tick_rate = 50

    def on_start(self) -> None:
        self.state = State({"e": {"x": Fixed(0.01)}}, capacity=4000)
        for i in range(4000):
            self.state["e"].spawn(x=i)

    def on_tick(self, dt: float, inputs: list[tuple[Connection, str | bytes]]) -> None:
        assert self.state is not None
        self.state["e"]["x"][:] += 1.0
        self.state.doc["tick"] = self.tick


class MixRoom(Room):
    """Broadcasts and direct sends within one handler, for the order of the relay's writes."""

    def on_connect(self, conn: Connection, ctx: ConnectContext) -> None:
        conn.send(f"you {conn.id}")

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        if message == "hold":  # blocks the relay, so what arrives meanwhile is read together
            time.sleep(0.5)
        elif message == "mix":
            self.broadcast("A")
            self.broadcast("B", exclude=[conn])
            conn.send("P")
            self.broadcast("C")
            self.broadcast("D", exclude=[conn.id])
            conn.send("Q")
        elif message == "roll":
            self.broadcast("members " + " ".join(str(c.id) for c in self.connections()))


class SoloRoom(Room):
    """One connection per player, a second is refused; echoes to the sender."""

    seats = "refuse"

    def on_message(self, conn: Connection, message: str | bytes) -> None:
        conn.send(message)
