"""`arena`, the built-in demo game: ships steered by their players collect coins at 20 Hz.

Input messages are msgpack maps `{"turn": -1..1, "thrust": 0..1}` (either key may be
left out); the last one received before a tick holds until the next input.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import msgpack
import numpy as np

from relay import Angle, ConnectContext, Connection, Fixed, Inputs, Int, Room, State
from relay.games.scores import ScoreBoards

log = logging.getLogger("stadium.relay.arena")

WORLD = 100.0  # metres; the world wraps around at its edges
COINS = 40
SHIP_SPEED = 12.0  # metres per second at full thrust
TURN_RATE = 3.0  # radians per second at full turn
PICKUP = 2.0  # metres from a coin to collect it
BOARD = "arena"  # leaderboard board the scores go to (with --leaderboard-url)
SCORES_EVERY = 100  # ticks between two score posts (5 s)


class ArenaRoom(Room):
    tick_rate = 20
    boards: ClassVar[ScoreBoards | None] = None  # where scores go: see `arena_room`

    def on_start(self) -> None:
        self.state = State({
            "ships": {"x": Fixed(0.01), "y": Fixed(0.01), "angle": Angle(256),
                      "score": Int("u2"), "hue": Int("u1")},
            "coins": {"x": Fixed(0.01), "y": Fixed(0.01)},
        })
        self.state.doc["world"] = WORLD
        self.state.doc["players"] = {}
        self._rng = np.random.default_rng()
        self._steer: dict[int, tuple[float, float]] = {}
        coins = self.state["coins"]
        for _ in range(COINS):
            coins.spawn(x=self._rng.uniform(0, WORLD), y=self._rng.uniform(0, WORLD))

    def on_connect(self, conn: Connection, ctx: ConnectContext) -> None:
        assert self.state is not None
        ship = self.state["ships"].spawn(
            x=self._rng.uniform(0, WORLD), y=self._rng.uniform(0, WORLD),
            angle=self._rng.uniform(0, 2 * np.pi), hue=int(self._rng.integers(0, 256)))
        conn.state = ship
        name = conn.player or ctx.request.query.get("name") or f"player-{conn.id}"
        self.state.doc["players"][str(ship)] = name[:32]
        self._steer[ship] = (0.0, 0.0)
        conn.send({"ship": ship})

    def on_close(self, conn: Connection) -> None:
        assert self.state is not None
        ship = conn.state
        if isinstance(ship, int) and ship in self.state["ships"]:
            self._post_scores([ship])
            self.state["ships"].despawn(ship)
            self.state.doc["players"].pop(str(ship), None)
            self._steer.pop(ship, None)

    def on_tick(self, dt: float, inputs: Inputs) -> None:
        assert self.state is not None
        for conn, message in inputs:
            given = _steering(message)
            if given is not None and conn.state in self._steer:
                old = self._steer[conn.state]
                self._steer[conn.state] = (given[0] if given[0] is not None else old[0],
                                           given[1] if given[1] is not None else old[1])
        ships, coins = self.state["ships"], self.state["coins"]
        ids = ships.ids
        if not len(ids):
            return
        if self.tick % SCORES_EVERY == 0:
            self._post_scores(ids.tolist())
        steer = np.array([self._steer.get(int(i), (0.0, 0.0)) for i in ids])
        angle = ships["angle"]
        angle[ids] = (angle[ids] + steer[:, 0] * TURN_RATE * dt) % (2 * np.pi)
        speed = steer[:, 1] * SHIP_SPEED * dt
        x, y = ships["x"], ships["y"]
        x[ids] = (x[ids] + np.cos(angle[ids]) * speed) % WORLD
        y[ids] = (y[ids] + np.sin(angle[ids]) * speed) % WORLD
        self._collect(ids, coins)

    def _collect(self, ids: np.ndarray[Any, Any], coins: Any) -> None:
        assert self.state is not None
        ships = self.state["ships"]
        cids = coins.ids
        dx = ships["x"][ids][:, None] - coins["x"][cids][None, :]
        dy = ships["y"][ids][:, None] - coins["y"][cids][None, :]
        dx = np.abs((dx + WORLD / 2) % WORLD - WORLD / 2)
        dy = np.abs((dy + WORLD / 2) % WORLD - WORLD / 2)
        hit_ship, hit_coin = np.nonzero(dx * dx + dy * dy <= PICKUP * PICKUP)
        taken: set[int] = set()
        for s, c in zip(hit_ship.tolist(), hit_coin.tolist(), strict=True):
            if c in taken:
                continue
            taken.add(c)
            ship = int(ids[s])
            ships["score"][ship] = min(65535, int(ships["score"][ship]) + 1)
            coin = int(cids[c])
            coins["x"][coin] = self._rng.uniform(0, WORLD)
            coins["y"][coin] = self._rng.uniform(0, WORLD)


    def _post_scores(self, ships: list[int]) -> None:
        assert self.state is not None
        poster = self.boards.board(BOARD) if self.boards is not None else None
        if poster is None:
            return
        names, score = self.state.doc["players"], self.state["ships"]["score"]
        poster.post({names[str(s)]: int(score[s]) for s in ships
                     if str(s) in names and score[s] > 0})


def _steering(message: str | bytes) -> tuple[float | None, float | None] | None:
    """(turn, thrust) from an input message, clamped; None when it is not a steering input."""
    if not isinstance(message, bytes):
        return None
    try:
        data = msgpack.unpackb(message)
    except Exception:
        return None
    if not isinstance(data, dict):
        return None
    turn, thrust = data.get("turn"), data.get("thrust")
    if not isinstance(turn, int | float | None) or not isinstance(thrust, int | float | None):
        return None
    if turn is None and thrust is None:
        return None
    return (None if turn is None else float(np.clip(turn, -1.0, 1.0)),
            None if thrust is None else float(np.clip(thrust, 0.0, 1.0)))


def arena_room(boards: ScoreBoards | None) -> type[ArenaRoom]:
    """The arena room type posting its scores to `boards` (None: scores are not posted)."""
    return type("ArenaRoom", (ArenaRoom,), {"boards": boards})
