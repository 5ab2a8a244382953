"""Interest management: each viewer's mirror holds exactly the entities in the cells it sees."""

from __future__ import annotations

import random

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.state import Angle, Fixed, Grid, Int, State
from stadium_client.state import StateError, StateMirror, state_payload

CELL, COLS, ROWS = 10.0, 8, 6


def make_state(radius: int = 1) -> State:
    grid = Grid(CELL, COLS, ROWS, {"ships": ("x", "y"), "rocks": ("px", "py")}, radius=radius)
    return State({
        "ships": {"x": Fixed(0.01), "y": Fixed(0.01), "angle": Angle(), "hp": Int("u1")},
        "rocks": {"px": Fixed(0.1, "i2"), "py": Fixed(0.1, "i2")},
        "teams": {"score": Int("i4")},
    }, capacity=8, grid=grid)


def visible_ids(state: State, table: str, viewer: int) -> np.ndarray:
    assert state.grid is not None
    t = state[table]
    fx, fy = state.grid.tables[table]
    cells = state.grid.cell_of(t[fx], t[fy])
    seen = set(state.grid.visible(viewer))
    return np.array([i for i in t.ids if int(cells[i]) in seen], dtype=np.int64)


def assert_view(state: State, viewer: int, mirror: StateMirror) -> None:
    assert mirror.tick == state.tick
    assert mirror.doc == msgpack.unpackb(msgpack.packb(state.doc))
    np.testing.assert_array_equal(mirror["teams"].ids, state["teams"].ids)
    for name in ("ships", "rocks"):
        want = visible_ids(state, name, viewer)
        np.testing.assert_array_equal(mirror[name].ids, want, err_msg=name)
        for fname, field in state[name].fields.items():
            np.testing.assert_array_equal(mirror[name].column(fname)[want],
                                          field.quantise(state[name][fname])[want],
                                          err_msg=f"{name}.{fname}")


def random_tick(state: State, rng: random.Random) -> None:
    ships, rocks, teams = state["ships"], state["rocks"], state["teams"]
    for _ in range(rng.randint(0, 3)):
        ships.spawn(x=rng.uniform(-5, 90), y=rng.uniform(-5, 70), angle=rng.uniform(0, 6),
                    hp=rng.randint(0, 255))
    if rng.random() < 0.3:
        rocks.spawn(px=rng.uniform(0, 80), py=rng.uniform(0, 60))
    if rng.random() < 0.1:
        teams.spawn(score=rng.randint(0, 9))
    for table in (ships, rocks):
        ids = table.ids
        if len(ids) and rng.random() < 0.4:
            table.despawn(int(rng.choice(list(ids))))
    ids = ships.ids
    if len(ids):
        step = rng.choice([0.3, 4.0, 15.0])
        moving = ids[np.array([rng.random() < 0.5 for _ in ids], dtype=bool)]
        ships["x"][moving] += np.array([rng.uniform(-step, step) for _ in moving])
        ships["y"][moving] += np.array([rng.uniform(-step, step) for _ in moving])
        if rng.random() < 0.3:
            ships["hp"][ids] += 7  # wraps around in u1
    if len(teams.ids) and rng.random() < 0.3:
        teams["score"][teams.ids] += 1
    if rng.random() < 0.3:
        state.doc["round"] = rng.randint(0, 3)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), radius=st.integers(0, 2))
def test_every_viewer_mirrors_exactly_the_cells_it_sees(seed: int, radius: int) -> None:
    rng = random.Random(seed)
    state = make_state(radius)
    mirrors: dict[int, StateMirror] = {}
    synced: dict[int, int] = {}
    for _ in range(40):
        random_tick(state, rng)
        if rng.random() < 0.3 or not mirrors:  # a viewer joins
            v = len(mirrors) + 1
            mirrors[v], synced[v] = StateMirror(), 0
        for v in mirrors:
            if rng.random() < 0.3:
                state.set_focus(v, rng.uniform(-10, 100), rng.uniform(-10, 80))
            if rng.random() < 0.05:
                state.set_focus(v, None)
        tick = state.commit()
        for v, mirror in mirrors.items():
            if rng.random() < 0.05:  # the viewer missed ticks: it must be sent everything
                synced[v] = 0
                mirrors[v] = mirror = StateMirror()
            body = state_payload(state.view_message(v, synced[v]))
            assert body is not None
            assert mirror.apply(body)
            synced[v] = tick
            assert_view(state, v, mirror)


def test_viewers_with_the_same_view_share_one_encoded_message() -> None:
    state = make_state()
    for i in range(30):
        state["ships"].spawn(x=i * 2.5, y=i * 1.7)
    for v in (1, 2, 3):
        state.set_focus(v, 5.0, 5.0)
    state.set_focus(3, 75.0, 55.0)
    tick = state.commit()
    first = [state.view_message(v, 0) for v in (1, 2, 3)]
    assert first[0] is first[1] and first[0] is not first[2]
    state["ships"]["x"][state["ships"].ids] += 0.5
    state.commit()
    second = [state.view_message(v, tick) for v in (1, 2, 3)]
    assert second[0] is second[1] and second[0] is not second[2]


def test_a_view_diff_against_another_tick_is_refused() -> None:
    state = make_state()
    state["ships"].spawn(x=1, y=1)
    state.set_focus(1, 1, 1)
    state.commit()
    state.view_message(1, 0)
    state.commit()
    stale = StateMirror()
    body = state_payload(state.view_message(1, 1))
    assert body is not None
    with pytest.raises(StateError):
        stale.apply(body)


def test_cells_clip_positions_outside_the_grid() -> None:
    grid = Grid(CELL, COLS, ROWS, {"ships": ("x", "y")})
    assert grid.cell_of(-50.0, -50.0) == 0
    assert grid.cell_of(1e9, 1e9) == COLS * ROWS - 1
    assert grid.cell_of(15.0, 25.0) == 2 * COLS + 1
    assert grid.near(0) == [0, 1, COLS, COLS + 1]
    with pytest.raises(ValueError):
        State({"ships": {"x": Fixed(1)}}, grid=grid)
