"""Interest management: the grid's per-cell encoding against encoding each client's view
on its own, same world, same views, same run."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import numpy as np

from relay.state import Angle, Fixed, Grid, State
from relay.state.codec import Frozen, absolute, encode_ids, values

WORLD = 1000.0


def _index(fr: Frozen, ncells: int) -> tuple[np.ndarray[Any, Any], list[int]]:
    """Live ids sorted by cell and each cell's start: the shared index per-client encoding
    is given, so it does not scan every entity per client."""
    assert fr.cells is not None
    ids = np.flatnonzero(fr.alive)
    cells = fr.cells[ids]
    order = np.argsort(cells, kind="stable")
    starts = np.searchsorted(cells[order], np.arange(ncells + 1))
    return ids[order], starts.tolist()


def _per_client(state: State, grid: Grid, before: dict[int, list[int]],
                now: dict[int, list[int]]) -> int:
    """Each client's diff (left, entered, changed) of the entities in its cells, encoded
    for that client alone."""
    new = state.current().tables["e"]
    old = state.snapshot(state.tick - 1).tables["e"]
    (new_ids, new_at), (old_ids, old_at) = _index(new, grid.cells), _index(old, grid.cells)
    total = 0
    for viewer, cells in now.items():
        seen = np.sort(np.concatenate([new_ids[new_at[c]:new_at[c + 1]] for c in cells]))
        was = np.sort(np.concatenate([old_ids[old_at[c]:old_at[c + 1]] for c in before[viewer]]))
        stay = np.intersect1d(seen, was, assume_unique=True)
        stay = stay[old.gen[stay] == new.gen[stay]]
        left = np.setdiff1d(was, stay, assume_unique=True)
        entered = np.setdiff1d(seen, stay, assume_unique=True)
        moved = np.zeros(len(stay), np.bool_)
        for oc, nc in zip(old.cols, new.cols, strict=True):
            moved |= oc[stay] != nc[stay]
        changed = stay[moved]
        fields = [values(oc[changed], nc[changed]) if len(changed) else None
                  for oc, nc in zip(old.cols, new.cols, strict=True)]
        total += len(msgpack.packb([encode_ids(left), encode_ids(entered),
                                    [absolute(c[entered]) for c in new.cols],
                                    encode_ids(changed), fields]))
    return total


def run(entities: int, cells: int, clients: int, ticks: int, refocus: float,
        seed: int) -> dict[str, Any]:
    """`entities` in a `cells` x `cells` grid over a 1 km square, 10 % moving per tick,
    `clients` viewers seeing 3 x 3 cells, `refocus` of them moving their focus per tick."""
    rng = np.random.default_rng(seed)
    grid = Grid(WORLD / cells, cells, cells, {"e": ("x", "y")})
    state = State({"e": {"x": Fixed(0.01), "y": Fixed(0.01), "angle": Angle()}},
                  capacity=entities, grid=grid)
    table = state["e"]
    for _ in range(entities):
        table.spawn(x=rng.uniform(0, WORLD), y=rng.uniform(0, WORLD), angle=rng.uniform(0, 6.28))
    focus = {v: (rng.uniform(0, WORLD), rng.uniform(0, WORLD)) for v in range(1, clients + 1)}
    for v, (fx, fy) in focus.items():
        state.set_focus(v, fx, fy)
    tick = state.commit()
    synced = dict.fromkeys(focus, 0)
    for v in synced:
        state.view_message(v, 0)
        synced[v] = tick
    x, y, a = table["x"], table["y"], table["angle"]
    grid_ms, client_ms, grid_bytes, client_bytes = [], [], [], []
    for _ in range(ticks):
        moving = rng.choice(entities, entities // 10, replace=False)
        x[moving] = np.clip(x[moving] + rng.uniform(-1, 1, len(moving)), 0, WORLD - 0.01)
        y[moving] = np.clip(y[moving] + rng.uniform(-1, 1, len(moving)), 0, WORLD - 0.01)
        a[moving] += 0.1
        before = {v: grid.near(int(grid.cell_of(*f))) for v, f in focus.items()}
        for v in rng.choice(clients, max(0, round(clients * refocus)), replace=False) + 1:
            focus[int(v)] = (rng.uniform(0, WORLD), rng.uniform(0, WORLD))
            state.set_focus(int(v), *focus[int(v)])
        now = {v: grid.near(int(grid.cell_of(*f))) for v, f in focus.items()}
        c0 = time.process_time()
        tick = state.commit()
        sent = 0
        for v in synced:
            sent += len(state.view_message(v, synced[v]))
            synced[v] = tick
        c1 = time.process_time()
        per_client = _per_client(state, grid, before, now)
        c2 = time.process_time()
        grid_ms.append((c1 - c0) * 1e3)
        client_ms.append((c2 - c1) * 1e3)
        grid_bytes.append(sent / clients)
        client_bytes.append(per_client / clients)
    g, p = float(np.median(grid_ms)), float(np.median(client_ms))
    return {"entities": entities, "cells": cells * cells, "clients": clients, "ticks": ticks,
            "refocus": refocus,
            "grid_cpu_ms": {"median": g, "p99": float(np.percentile(grid_ms, 99))},
            "per_client_cpu_ms": {"median": p, "p99": float(np.percentile(client_ms, 99))},
            "ratio": p / g, "grid_bytes_per_client": float(np.median(grid_bytes)),
            "per_client_bytes_per_client": float(np.median(client_bytes))}
