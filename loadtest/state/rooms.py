"""The ticking room the state benchmark runs on a real relay (`--room
bench=loadtest.state.rooms:BenchRoom`), sized by the environment: STADIUM_BENCH_ENTITIES
(1000) and STADIUM_BENCH_MOVING (fraction moving per tick, 0.1).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from relay import Angle, Connection, Fixed, Room, State

WORLD = 1000.0  # metres per side, as in loadtest/state/scenario.py
STEP = 0.25
TURN = 0.1


class BenchRoom(Room):
    """20 Hz; a random 10 % of the entities make a small move every tick. `doc["sent"]` is
    the relay's clock (time.time()) when the tick began, for the clients' latency."""

    tick_rate = 20

    def on_start(self) -> None:
        n = int(os.environ.get("STADIUM_BENCH_ENTITIES", "1000"))
        moving = float(os.environ.get("STADIUM_BENCH_MOVING", "0.1"))
        if n < 1 or not 0 < moving <= 1:
            raise ValueError("STADIUM_BENCH_ENTITIES must be >= 1 and STADIUM_BENCH_MOVING "
                             "in (0, 1]")
        self.moving = max(1, round(n * moving))
        self.rng = np.random.default_rng(9)
        self.state = State({"ents": {"x": Fixed(0.01), "y": Fixed(0.01), "angle": Angle(256)}},
                           capacity=n)
        ents = self.state["ents"]
        for x, y, a in zip(self.rng.uniform(-WORLD / 2, WORLD / 2, n).tolist(),
                           self.rng.uniform(-WORLD / 2, WORLD / 2, n).tolist(),
                           self.rng.uniform(0, 2 * math.pi, n).tolist(), strict=True):
            ents.spawn(x=x, y=y, angle=a)

    def on_tick(self, dt: float, inputs: list[tuple[Connection, str | bytes]]) -> None:
        state = self.state
        assert state is not None
        state.doc["sent"] = time.time()
        ents = state["ents"]
        rng = self.rng
        idx = rng.choice(ents.ids, self.moving, replace=False)
        ents["x"][idx] += rng.uniform(-STEP, STEP, len(idx))
        ents["y"][idx] += rng.uniform(-STEP, STEP, len(idx))
        angle = ents["angle"]
        angle[idx] = (angle[idx] + rng.uniform(-TURN, TURN, len(idx))) % (2 * math.pi)
