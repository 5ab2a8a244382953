"""The moving-entities scenario every encoder in the state benchmark replays: the same
start positions and the same moves per tick, from one seed, also written to a file for Node.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

WORLD = 1000.0  # metres per side, centred on 0: positions need 17 bits at 0.01 m
STEP = 0.25  # largest move per tick along x and y, metres (5 m/s at 20 Hz)
TURN = 0.1  # largest turn per tick, radians (about 4 of 256 angle steps)
HEADER = struct.Struct("<4sIII")  # magic, entities, ticks, moving per tick

F64 = npt.NDArray[np.float64]


@dataclass
class Scenario:
    """`x`, `y`, `angle` at the start; per tick `moved[t]` (distinct entity indices) and
    their new `mx[t]`, `my[t]`, `mangle[t]` (absolute values, as a game would assign)."""

    x: F64
    y: F64
    angle: F64
    moved: npt.NDArray[np.int64]
    mx: F64
    my: F64
    mangle: F64

    @property
    def entities(self) -> int:
        return len(self.x)

    @property
    def ticks(self) -> int:
        return len(self.moved)

    @property
    def moving(self) -> int:
        return int(self.moved.shape[1])


def make(entities: int, moving: int, ticks: int, seed: int = 9) -> Scenario:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-WORLD / 2, WORLD / 2, entities)
    y = rng.uniform(-WORLD / 2, WORLD / 2, entities)
    angle = rng.uniform(0, 2 * math.pi, entities)
    cx, cy, ca = x.copy(), y.copy(), angle.copy()
    moved = np.empty((ticks, moving), np.int64)
    mx = np.empty((ticks, moving))
    my = np.empty((ticks, moving))
    ma = np.empty((ticks, moving))
    for t in range(ticks):
        idx = np.sort(rng.choice(entities, moving, replace=False))
        cx[idx] += rng.uniform(-STEP, STEP, moving)
        cy[idx] += rng.uniform(-STEP, STEP, moving)
        ca[idx] = (ca[idx] + rng.uniform(-TURN, TURN, moving)) % (2 * math.pi)
        moved[t], mx[t], my[t], ma[t] = idx, cx[idx], cy[idx], ca[idx]
    return Scenario(x, y, angle, moved, mx, my, ma)


def angle_steps(radians: F64, steps: int = 256) -> npt.NDArray[np.uint8]:
    """The angle as Stadium's Angle(256) quantises it, for encoders that take a byte."""
    return (np.rint(radians * (steps / (2 * math.pi))).astype(np.int64) % steps).astype(np.uint8)


def write(s: Scenario, path: Path) -> None:
    """Little-endian: header; start x, y (f64), angle (u8 steps); then per tick the moved
    indices (u32), their x, y (f64) and angle (u8 steps)."""
    with path.open("wb") as f:
        f.write(HEADER.pack(b"STB1", s.entities, s.ticks, s.moving))
        f.write(s.x.astype("<f8").tobytes())
        f.write(s.y.astype("<f8").tobytes())
        f.write(angle_steps(s.angle).tobytes())
        for t in range(s.ticks):
            f.write(s.moved[t].astype("<u4").tobytes())
            f.write(s.mx[t].astype("<f8").tobytes())
            f.write(s.my[t].astype("<f8").tobytes())
            f.write(angle_steps(s.mangle[t]).tobytes())
