"""Ticking rooms on a real relay: inputs in order, state snapshots and diffs, tick metrics."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import msgpack
import numpy as np
import pytest

from stadium_client import Room, StateMirror
from tests.conftest import ROOT, RelayProcess, start_relay


@pytest.fixture(scope="module")
def relay() -> Iterator[RelayProcess]:
    r = start_relay("--room", "tick=tests.rooms:TickRoom",
                    "--room", "slow=tests.rooms:SlowTickRoom",
                    "--room", "grid=tests.rooms:GridRoom",
                    "--msg-rate", "1000", "--msg-burst", "1000")
    yield r
    r.stop(signal.SIGKILL)


async def _metrics(relay: RelayProcess) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{relay.http}/metrics") as resp:
        return await resp.text()


def _world(mirror: StateMirror) -> list[list[float]]:
    dots = mirror["dots"]
    return [dots.ids.tolist(), dots.values("x")[dots.ids].tolist(),
            dots.values("y")[dots.ids].tolist()]


async def test_a_joiner_gets_a_snapshot_then_diffs_and_sees_others_move(
        relay: RelayProcess) -> None:
    url = f"{relay.url}/rooms/tick/move"
    async with await Room.connect(url) as a:
        me_a = msgpack.unpackb(await a.recv())["you"]
        await a.wait_state()
        first = a.state.tick
        for _ in range(3):
            await a.send("1.5,-2")
        async with await Room.connect(url) as b:
            me_b = msgpack.unpackb(await b.recv())["you"]
            await b.wait_state()
            assert b.state.tick > first  # joined late: started from a snapshot
            dots = b.state["dots"]
            assert sorted(dots.ids.tolist()) == sorted([me_a, me_b])
            assert dots.values("x")[me_a] == pytest.approx(4.5)
            assert dots.values("y")[me_a] == pytest.approx(-6.0)
            await a.send("0.25,0")
            async with asyncio.timeout(5):
                while b.state["dots"].values("x")[me_a] != pytest.approx(4.75):
                    await b.wait_state()
            # Both mirrors hold the same world at every tick both have seen.
            seen_a: dict[int, list[list[float]]] = {}
            seen_b: dict[int, list[list[float]]] = {}
            a.on("state", lambda m: seen_a.setdefault(m.tick, _world(m)))
            b.on("state", lambda m: seen_b.setdefault(m.tick, _world(m)))
            for i in range(10):
                await a.send(f"{i},1")
                await b.wait_state()
            await a.wait_state(b.state.tick)
            common = set(seen_a) & set(seen_b)
            assert len(common) >= 5
            assert all(seen_a[t] == seen_b[t] for t in common)
        await a.wait_state(a.state.tick + 2)
        assert a.state["dots"].ids.tolist() == [me_a]  # b's dot despawned when b left


async def test_inputs_reach_on_tick_in_arrival_order(relay: RelayProcess) -> None:
    async with await Room.connect(f"{relay.url}/rooms/tick/order") as a:
        await a.recv()
        seen: list[str] = []
        a.on("state", lambda mirror: seen.extend(mirror.doc.get("inputs", [])))
        sent = [f"m{i}" for i in range(200)]
        for text in sent:
            await a.send(text)
        async with asyncio.timeout(10):
            while len(seen) < len(sent):
                await a.wait_state()
        assert seen == sent


async def test_state_ticks_are_consecutive_over_reliable_delivery(relay: RelayProcess) -> None:
    async with await Room.connect(f"{relay.url}/rooms/tick/consecutive") as a:
        await a.recv()
        ticks: list[int] = []
        a.on("state", lambda mirror: ticks.append(mirror.doc["tick"]))
        await a.wait_state()
        start = a.state.tick
        await a.wait_state(start + 10)
        assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))
        assert len(ticks) >= 10
        assert np.all(np.diff(ticks) == 1)


async def test_a_room_that_cannot_keep_its_rate_counts_overruns(relay: RelayProcess) -> None:
    async with await Room.connect(f"{relay.url}/rooms/slow/s1") as a:
        for i in range(3):
            await a.send(f"in{i}")
        replies = [await a.recv() for _ in range(3)]
        assert [r.split(": ")[1] for r in replies] == ["'in0'", "'in1'", "'in2'"]
        await asyncio.sleep(0.5)
    text = await _metrics(relay)
    overruns = re.search(r'stadium_relay_tick_overruns_total\{room_type="slow"\} (\S+)', text)
    assert overruns and float(overruns.group(1)) > 0
    count = re.search(r'stadium_relay_tick_seconds_count\{room_type="slow"\} (\S+)', text)
    assert count and float(count.group(1)) >= 3
    slow_bucket = re.search(
        r'stadium_relay_tick_seconds_bucket\{le="0\.02",room_type="slow"\} (\S+)', text)
    assert slow_bucket and float(slow_bucket.group(1)) == 0  # every tick took over 20 ms


def test_a_tick_rate_out_of_range_is_refused_at_start() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stadium.cli", "relay", "--port", "0", "--room",
         "fast=tests.rooms:TooFastRoom"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "tick_rate is 1000; use 1-120 Hz" in proc.stderr


def test_arena_is_playable_by_the_example_bots(relay: RelayProcess) -> None:
    """examples/arena_bots.py against the built-in `arena` room: both bots see each other
    and their ships move."""
    proc = subprocess.run(
        [sys.executable, "examples/arena_bots.py", "--url", f"{relay.url}/rooms/arena/t1",
         "--bots", "2", "--seconds", "3"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    bots = summary["bots"]
    ships = sorted(b["ship"] for b in bots)
    for b in bots:
        assert b["seen_ships"] == ships
        assert b["moved"] > 1.0
        assert b["ticks"] >= 20


async def test_with_an_interest_grid_a_client_sees_only_the_cells_around_it(
        relay: RelayProcess) -> None:
    url = f"{relay.url}/rooms/grid/g1"
    async with await Room.connect(f"{url}?x=5&y=5") as a, \
            await Room.connect(f"{url}?x=95&y=95") as b:
        me_a = msgpack.unpackb(await a.recv())["you"]
        me_b = msgpack.unpackb(await b.recv())["you"]
        await a.wait_state(b.state.tick + 1)
        await b.wait_state(a.state.tick + 1)
        assert a.state["dots"].ids.tolist() == [me_a]
        assert b.state["dots"].ids.tolist() == [me_b]
        await b.send("15,12")  # into the cell next to a's
        async with asyncio.timeout(5):
            while me_b not in a.state["dots"] or me_a not in b.state["dots"]:
                await a.wait_state()
                await b.wait_state()
        assert a.state["dots"].values("x")[me_b] == pytest.approx(15.0)
        assert b.state["dots"].values("y")[me_a] == pytest.approx(5.0)
        await b.send("80,80")  # and away again
        async with asyncio.timeout(5):
            while me_b in a.state["dots"]:
                await a.wait_state()
        await b.wait_state(b.state.tick + 2)
        assert b.state["dots"].ids.tolist() == [me_b]
