"""relay.state against the SDK mirror: whatever the server does, the client's copy matches."""

from __future__ import annotations

import math
import random

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.state import RING_SIZE, Angle, Fixed, Flags, Float, Int, State
from relay.state.codec import encode_ids
from stadium_client.state import StateError, StateMirror, decode_ids, state_payload


def make_state() -> State:
    return State({
        "ships": {"x": Fixed(0.01), "y": Fixed(0.01), "angle": Angle(), "flags": Flags(8),
                  "hp": Int("i2"), "speed": Float("f4")},
        "coins": {"x": Fixed(0.5, "i2"), "value": Int("u1")},
    }, capacity=4)


def assert_mirrors(state: State, mirror: StateMirror) -> None:
    assert mirror.tick == state.tick
    assert mirror.doc == msgpack.unpackb(msgpack.packb(state.doc))
    for name, table in state.tables.items():
        m = mirror[name]
        np.testing.assert_array_equal(m.ids, table.ids)
        for fname, field in table.fields.items():
            expected = field.quantise(table[fname])[table.ids]
            np.testing.assert_array_equal(m.column(fname)[table.ids], expected, err_msg=fname)


def payload(message: bytes) -> bytes:
    body = state_payload(message)
    assert body is not None
    return body


# --- one tick of random game activity -------------------------------------------------------
def random_tick(state: State, rng: random.Random) -> None:
    ships, coins = state["ships"], state["coins"]
    for _ in range(rng.randint(0, 4)):
        ships.spawn(x=rng.uniform(-500, 500), y=rng.uniform(-500, 500),
                    angle=rng.uniform(-10, 10), flags=rng.randint(0, 255),
                    hp=rng.randint(-300, 300), speed=rng.uniform(0, 3))
    for _ in range(rng.randint(0, 3)):
        coins.spawn(x=rng.uniform(-100, 100), value=rng.randint(0, 255))
    for table in (ships, coins):
        ids = table.ids
        if len(ids) and rng.random() < 0.5:
            for e in rng.sample(list(ids), k=rng.randint(1, min(3, len(ids)))):
                table.despawn(int(e))
    ids = ships.ids
    if len(ids):
        moving = ids[np.array([rng.random() < 0.3 for _ in ids], dtype=bool)]
        ships["x"][moving] += rng.uniform(-2, 2)
        ships["y"][moving] += rng.choice([0.004, 3.0, -70000.0, 123456.0])
        ships["angle"][moving] += rng.uniform(-0.5, 0.5)
        if rng.random() < 0.3:
            ships["hp"][ids] -= rng.randint(0, 40000) % 30000
        if rng.random() < 0.2:
            ships["flags"][ids[:1]] ^= 4
        if rng.random() < 0.2:
            ships["speed"][ids] *= 1.5
    op = rng.randint(0, 6)
    if op == 0:
        state.doc["phase"] = rng.choice(["lobby", "play", "end"])
    elif op == 1:
        state.doc.setdefault("scores", {})[f"p{rng.randint(0, 5)}"] = rng.randint(0, 100)
    elif op == 2 and state.doc.get("scores"):
        state.doc["scores"].pop(next(iter(state.doc["scores"])))
    elif op == 3:
        state.doc["timer"] = rng.uniform(0, 60)
    elif op == 4:
        state.doc.pop("phase", None)
    elif op == 5:
        state.doc["nested"] = {"a": {"b": rng.randint(0, 3)}, "list": [1, rng.randint(0, 2)]}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ticks=st.integers(1, 40))
def test_mirror_equals_server_over_reliable_delivery(seed: int, ticks: int) -> None:
    rng = random.Random(seed)
    state = make_state()
    mirror = StateMirror()
    state.commit()
    assert mirror.apply(payload(state.snapshot_message()))
    assert_mirrors(state, mirror)
    for _ in range(ticks):
        base = state.tick
        random_tick(state, rng)
        state.commit()
        assert mirror.apply(payload(state.diff_message(base)))
        assert_mirrors(state, mirror)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), loss=st.floats(0.0, 0.7))
def test_mirror_equals_server_over_a_channel_that_drops_and_reorders(seed: int,
                                                                     loss: float) -> None:
    """Each tick the server sends a diff against the client's last acknowledged tick (a
    snapshot when that fell out of the ring); the channel drops and reorders messages and
    acks. Whenever the client applies a message its mirror equals that tick's server state."""
    rng = random.Random(seed)
    state = make_state()
    mirror = StateMirror(history=RING_SIZE)
    truth: dict[int, StateMirror] = {}
    acked: int | None = None
    in_flight: list[bytes] = []
    applied = 0
    for _ in range(80):
        random_tick(state, rng)
        tick = state.commit()
        reference = StateMirror()
        reference.apply(payload(state.snapshot_message()))
        truth[tick] = reference
        msg = state.message_for(acked)
        if rng.random() >= loss:
            in_flight.insert(rng.randint(0, len(in_flight)), msg)
        while in_flight and rng.random() < 0.7:
            if mirror.apply(payload(in_flight.pop())):
                applied += 1
                ref = truth[mirror.tick]
                assert mirror.doc == ref.doc
                for name, t in ref.tables.items():
                    np.testing.assert_array_equal(mirror[name].ids, t.ids)
                    for f in t.names:
                        np.testing.assert_array_equal(mirror[name].column(f)[t.ids],
                                                      t.column(f)[t.ids])
                if rng.random() >= loss:  # the ack may be lost too
                    acked = mirror.tick if acked is None else max(acked, mirror.tick)
    assert loss > 0.5 or applied > 0


def test_diff_is_encoded_once_per_baseline_and_refused_outside_the_ring() -> None:
    state = make_state()
    e = state["ships"].spawn(x=1)
    state.commit()
    for _ in range(3):
        state["ships"]["x"][e] += 1
        state.commit()
    assert state.diff_message(2) is state.diff_message(2)
    assert state.diff_message(2) != state.diff_message(3)
    for _ in range(RING_SIZE):
        state.commit()
    assert not state.has(2)
    with pytest.raises(KeyError):
        state.diff_message(2)
    assert state.message_for(2) == state.snapshot_message()
    assert state.message_for(None) == state.snapshot_message()


def test_mirror_refuses_a_diff_against_a_tick_it_does_not_have() -> None:
    state = make_state()
    state.commit()
    state["ships"].spawn(x=3)
    state.commit()
    state.commit()
    mirror = StateMirror()
    with pytest.raises(StateError):
        mirror.apply(payload(state.diff_message(2)))
    assert not mirror.apply(payload(state.snapshot_message())) or mirror.tick == 3
    assert not mirror.apply(payload(state.snapshot_message()))  # same tick again: ignored


def test_quantisation_rounds_clamps_and_wraps() -> None:
    state = State({"t": {"x": Fixed(0.01, "i2"), "a": Angle(256)}})
    t = state["t"]
    a = t.spawn(x=1.234, a=2 * math.pi + 0.01)
    b = t.spawn(x=1e9, a=-math.pi / 2)
    state.commit()
    mirror = StateMirror()
    mirror.apply(payload(state.snapshot_message()))
    x = mirror["t"].values("x")
    assert x[a] == pytest.approx(1.23)
    assert x[b] == pytest.approx(32767 * 0.01)
    angle = mirror["t"].values("a")
    assert angle[a] == pytest.approx(0.0)
    assert angle[b] == pytest.approx(1.5 * math.pi)


def test_respawn_in_the_same_slot_is_a_despawn_and_a_spawn() -> None:
    state = State({"t": {"v": Int("u1")}})
    t = state["t"]
    e = t.spawn(v=7)
    state.commit()
    mirror = StateMirror()
    mirror.apply(payload(state.snapshot_message()))
    t.despawn(e)
    assert t.spawn(v=7) == e
    state.commit()
    body = msgpack.unpackb(payload(state.diff_message(1)), strict_map_key=False)
    gone, born = body[3]["t"][0], body[3]["t"][1]
    assert list(decode_ids(gone)) == [e] and list(decode_ids(born)) == [e]
    mirror.apply(payload(state.diff_message(1)))
    assert mirror["t"].get(e) == {"v": 7}


def test_unchanged_state_gives_an_empty_diff() -> None:
    state = make_state()
    state["ships"].spawn(x=1, y=2)
    state.doc["phase"] = "play"
    state.commit()
    state.commit()
    body = msgpack.unpackb(payload(state.diff_message(1)), strict_map_key=False)
    assert body == [2, 2, 1, {}, []]


@pytest.mark.parametrize("ids", [[0], [5], [3, 4, 5, 6], [0, 300, 301], [1, 70000],
                                 list(range(0, 1000, 3)), [7, 9, 200, 201, 202, 203]])
def test_id_lists_round_trip(ids: list[int]) -> None:
    assert list(decode_ids(encode_ids(np.array(ids)))) == ids


def test_id_lists_pick_the_smaller_of_gaps_and_bitmap() -> None:
    dense = np.arange(0, 8000, 1)
    first, width, data = encode_ids(dense)
    assert width == 0 and len(data) == 1000
    sparse = np.array([10, 300, 5000])
    first, width, data = encode_ids(sparse)
    assert width == 2 and len(data) == 4


def test_lerp_interpolates_between_ticks_and_takes_the_short_way_round() -> None:
    state = State({"t": {"x": Fixed(0.01), "a": Angle()}})
    t = state["t"]
    e = t.spawn(x=0.0, a=math.radians(350))
    state.commit()
    mirror = StateMirror()
    mirror.apply(payload(state.snapshot_message()))
    t["x"][e] = 2.0
    t["a"][e] = math.radians(10)
    f = t.spawn(x=5.0)
    state.commit()
    mirror.apply(payload(state.diff_message(1)))
    x = mirror.lerp("t", "x", 0.25)
    assert x[e] == pytest.approx(0.5)
    assert x[f] == pytest.approx(5.0)
    a = mirror.lerp("t", "a", 0.5)
    assert math.degrees(a[e]) % 360 == pytest.approx(0.0, abs=1.5) or \
        math.degrees(a[e]) % 360 == pytest.approx(360.0, abs=1.5)


def test_ordinary_messages_are_not_state() -> None:
    assert state_payload(msgpack.packb({"hello": 1})) is None
    assert state_payload("text") is None
    assert state_payload(msgpack.packb(msgpack.ExtType(1, b"xyz"))) is None
    assert state_payload(b"\xd4") is None


def test_lerp_of_an_unsigned_field_that_goes_down() -> None:
    state = State({"t": {"hp": Int("u2")}})
    e = state["t"].spawn(hp=9)
    state.commit()
    mirror = StateMirror()
    mirror.apply(payload(state.snapshot_message()))
    state["t"]["hp"][e] = 2
    state.commit()
    mirror.apply(payload(state.diff_message(1)))
    assert mirror.lerp("t", "hp", 0.5)[e] == pytest.approx(5.5)
