"""The encoders the state benchmark replays the scenario through: Stadium's `relay.State`,
plain msgpack (full state, changed entities, full state plus a generic binary delta), and
`@colyseus/schema` in Node.
"""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from loadtest.state.scenario import Scenario, angle_steps, write
from relay.state import Angle, Fixed, State
from stadium_client.state import StateMirror, state_payload

HERE = Path(__file__).resolve().parent
COLYSEUS_SPEC = "@colyseus/schema@5"
BSDIFF_SPEC = "bsdiff4>=1.2"


class Unavailable(Exception):
    """A comparison's runtime or library could not be installed; the bench skips it."""


def stats(values: list[float] | list[int]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(a)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "max": float(a.max())}


def world(s: Scenario) -> State:
    """The scenario's start as a committed Stadium state (tick 1)."""
    state = State({"ents": {"x": Fixed(0.01), "y": Fixed(0.01), "angle": Angle(256)}},
                  capacity=s.entities)
    ents = state["ents"]
    for i in range(s.entities):
        ents.spawn(x=s.x[i], y=s.y[i], angle=s.angle[i])
    state.commit()
    return state


def move(state: State, s: Scenario, t: int) -> None:
    """Tick `t`'s moves, written the way room code does: numpy assignment to the columns."""
    ents = state["ents"]
    idx = s.moved[t]
    ents["x"][idx] = s.mx[t]
    ents["y"][idx] = s.my[t]
    ents["angle"][idx] = s.mangle[t]


def run_stadium(s: Scenario) -> dict[str, Any]:
    """Per tick: the moves (game code), commit (quantise and freeze), diff_message (find
    changed rows and encode); then the full snapshot. Wall time, and this thread's CPU time
    for commit + diff (which a busy shared machine's preemption does not inflate)."""
    state = world(s)
    mirror = StateMirror()
    _apply(mirror, state.snapshot_message())
    writes, commits, diffs, cpu, sizes = [], [], [], [], []
    messages = []
    clock, cpu_clock = time.perf_counter, time.thread_time
    gc.collect()
    for t in range(s.ticks):
        t0 = clock()
        move(state, s, t)
        c1 = cpu_clock()
        t1 = clock()
        tick = state.commit()
        t2 = clock()
        msg = state.diff_message(tick - 1)
        t3 = clock()
        cpu.append((cpu_clock() - c1) * 1e3)
        writes.append((t1 - t0) * 1e3)
        commits.append((t2 - t1) * 1e3)
        diffs.append((t3 - t2) * 1e3)
        sizes.append(len(msg))
        messages.append(msg)
    t0 = clock()
    snapshot = state.snapshot_message()
    snap_ms = (clock() - t0) * 1e3
    # The diffs must carry the whole change: the SDK's mirror ends where the room is, and so
    # does a mirror that starts from the last snapshot.
    for msg in messages:
        _apply(mirror, msg)
    fresh = StateMirror()
    _apply(fresh, snapshot)
    ents = state["ents"]
    for name, field in ents.fields.items():
        want = field.quantise(ents[name])
        for m in (mirror, fresh):
            if not np.array_equal(m["ents"].column(name), want):
                raise AssertionError(f"the SDK mirror's {name!r} differs from the room's")
    total = [c + d for c, d in zip(commits, diffs, strict=True)]
    return {"name": "stadium", "bytes_per_tick": stats(sizes), "writes_ms": stats(writes),
            "commit_ms": stats(commits), "diff_ms": stats(diffs), "total_ms": stats(total),
            "total_cpu_ms": stats(cpu),
            "full_bytes": len(snapshot), "snapshot_ms": snap_ms, "verified": True}


def _apply(mirror: StateMirror, message: bytes) -> None:
    payload = state_payload(message)
    if payload is None or not mirror.apply(payload):
        raise AssertionError("a state message the SDK mirror did not apply")


# --- msgpack baselines ------------------------------------------------------------------------

Delta = Callable[[bytes, bytes], bytes]


def binary_delta() -> tuple[str, Delta, Delta]:
    """(name, diff(old, new), patch(old, delta)): bsdiff4 (installed on demand into the
    bench cache), else XOR + zlib."""
    try:
        import bsdiff4  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return "xor+zlib", _xor_zlib, _xor_zlib_patch
    return f"bsdiff4 {bsdiff4.__version__}", bsdiff4.diff, bsdiff4.patch


def _xor_zlib(old: bytes, new: bytes) -> bytes:
    """The new length (4 bytes) and zlib of old XOR new (the shorter padded with zeros)."""
    n = max(len(old), len(new))
    a = np.frombuffer(old.ljust(n, b"\0"), np.uint8)
    b = np.frombuffer(new.ljust(n, b"\0"), np.uint8)
    return len(new).to_bytes(4, "little") + zlib.compress((a ^ b).tobytes(), 6)


def _xor_zlib_patch(old: bytes, delta: bytes) -> bytes:
    x = np.frombuffer(zlib.decompress(delta[4:]), np.uint8)
    a = np.frombuffer(old.ljust(len(x), b"\0"), np.uint8)
    return (a ^ x).tobytes()[:int.from_bytes(delta[:4], "little")]


def install_bsdiff(cache: Path) -> Path:
    """A `pip install --target` directory in the bench cache holding bsdiff4."""
    target = cache / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not (target / "bsdiff4").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"installing {BSDIFF_SPEC} into {target} ...", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target",
                               str(target), BSDIFF_SPEC], capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise Unavailable(f"pip install {BSDIFF_SPEC} failed: "
                              f"{(done.stderr or done.stdout).strip()[-200:]}")
    return target


def run_msgpack(s: Scenario, delta_ticks: int) -> list[dict[str, Any]]:
    """The state as a msgpack server holds it: a list of entity dicts ({id, x, y, angle};
    x, y float metres, angle in 256 steps), mutated in place each tick. Timed: the packing
    (and the delta), not the dict writes."""
    delta_name, delta, patch = binary_delta()
    steps = angle_steps(s.angle)
    ents = [{"id": i, "x": x, "y": y, "angle": a}
            for i, (x, y, a) in enumerate(zip(s.x.tolist(), s.y.tolist(), steps.tolist(),
                                              strict=True))]
    packb = msgpack.packb
    clock = time.perf_counter
    prev: bytes = packb(ents)
    full_ms, full_b, chg_ms, chg_b, d_ms, d_b = [], [], [], [], [], []
    gc.collect()
    for t in range(s.ticks):
        idx = s.moved[t].tolist()
        for i, x, y, a in zip(idx, s.mx[t].tolist(), s.my[t].tolist(),
                              angle_steps(s.mangle[t]).tolist(), strict=True):
            e = ents[i]
            e["x"], e["y"], e["angle"] = x, y, a
        t0 = clock()
        changed = packb([ents[i] for i in idx])
        t1 = clock()
        full = packb(ents)
        t2 = clock()
        chg_ms.append((t1 - t0) * 1e3)
        chg_b.append(len(changed))
        full_ms.append((t2 - t1) * 1e3)
        full_b.append(len(full))
        if t < delta_ticks:
            d = delta(prev, full)
            d_ms.append((t2 - t1 + clock() - t2) * 1e3)
            d_b.append(len(d))
            if patch(prev, d) != full:
                raise AssertionError(f"{delta_name}: the patched state differs")
        prev = full
    return [
        {"name": "msgpack full state", "bytes_per_tick": stats(full_b),
         "total_ms": stats(full_ms), "full_bytes": full_b[-1]},
        {"name": "msgpack changed entities", "bytes_per_tick": stats(chg_b),
         "total_ms": stats(chg_ms), "full_bytes": full_b[-1]},
        {"name": f"msgpack full state + {delta_name} delta", "delta": delta_name,
         "ticks": len(d_b), "bytes_per_tick": stats(d_b), "total_ms": stats(d_ms),
         "full_bytes": full_b[-1]},
    ]


# --- Colyseus -----------------------------------------------------------------------------------

def install_colyseus(cache: Path) -> str:
    """node_modules/@colyseus/schema in the cache, installed with npm only when missing;
    returns its version."""
    where = cache / "node_modules" / "@colyseus" / "schema"
    if shutil.which("node") is None:
        raise Unavailable("node not found (install Node.js and npm)")
    if not (where / "package.json").exists():
        if shutil.which("npm") is None:
            raise Unavailable("npm not found (install Node.js and npm)")
        cache.mkdir(parents=True, exist_ok=True)
        print(f"installing {COLYSEUS_SPEC} into {cache} ...", file=sys.stderr, flush=True)
        try:
            done = subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit",
                                   "--no-fund", "--loglevel=error", COLYSEUS_SPEC],
                                  capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"npm install {COLYSEUS_SPEC}: {exc}") from exc
        if done.returncode != 0:
            raise Unavailable(f"npm install {COLYSEUS_SPEC} failed: "
                              f"{(done.stderr or done.stdout).strip()[-200:]}")
    version = str(json.loads((where / "package.json").read_text())["version"])
    if not version.startswith("5."):
        raise Unavailable(f"{where} holds @colyseus/schema {version}, not 5.x")
    return version


def run_colyseus(s: Scenario, cache: Path, variants: list[str]) -> list[dict[str, Any]]:
    """Replays the same scenario in Node (loadtest/state/colyseus.mjs): setters + encode()."""
    install_colyseus(cache)
    with tempfile.TemporaryDirectory(prefix="stadium-state-bench-") as tmp:
        path = Path(tmp) / "scenario.bin"
        write(s, path)
        try:
            done = subprocess.run(["node", str(HERE / "colyseus.mjs"), str(cache), str(path),
                                   *variants], capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"node colyseus.mjs: {exc}") from exc
    if done.returncode != 0:
        raise Unavailable(f"node colyseus.mjs failed: {done.stderr.strip()[-300:]}")
    results = []
    for line in done.stdout.splitlines():
        r = json.loads(line)
        r["name"] = f"@colyseus/schema {r['version']} ({r['variant']})"
        results.append(r)
    return results


# --- acknowledged baselines --------------------------------------------------------------------

def run_baselines(s: Scenario, clients: int, baselines: int, ticks: int) -> dict[str, Any]:
    """Per tick, every client gets `message_for(its acked tick)`; client i acked
    `baselines` ticks ago at most. Three ways: as the relay does it (cached per distinct
    baseline), everyone on the previous tick, and per client with no cache."""
    state = world(s)
    acks = [1 + i % baselines for i in range(clients)]  # how many ticks behind
    clock = time.perf_counter
    cached, single, uncached, one_each = [], [], [], []
    sizes: dict[int, int] = {}
    warm = baselines + 1
    if s.ticks < warm + ticks:
        raise ValueError(f"the scenario needs at least {warm + ticks} ticks")
    gc.collect()
    for t in range(warm + ticks):
        move(state, s, t)
        tick = state.commit()
        if t < warm:
            continue
        message_for = state.message_for
        t0 = clock()
        for back in acks:
            message_for(tick - back)
        t1 = clock()
        for b in range(1, baselines + 1):
            sizes.setdefault(b, len(message_for(tick - b)))
        # Everyone on the previous tick: one diff, then 999 cache hits.
        _forget(state)
        t2 = clock()
        for _ in acks:
            message_for(tick - 1)
        t3 = clock()
        # One diff per distinct baseline, uncached: what each costs alone.
        each = []
        for b in range(1, baselines + 1):
            _forget(state)
            t4 = clock()
            message_for(tick - b)
            each.append(clock() - t4)
        # Per client with no cache: the cache is emptied before every client's diff.
        t5 = clock()
        for back in acks:
            _forget(state)
            message_for(tick - back)
        t6 = clock()
        _forget(state)
        cached.append((t1 - t0) * 1e3)
        single.append((t3 - t2) * 1e3)
        uncached.append((t6 - t5) * 1e3)
        one_each.append(sum(each[b - 1] * acks.count(b) for b in range(1, baselines + 1)) * 1e3)
    return {"clients": clients, "baselines": baselines, "ticks": ticks,
            "entities": s.entities, "moving": s.moving,
            "cached_ms": stats(cached), "one_baseline_ms": stats(single),
            "per_client_ms": stats(uncached), "per_client_estimate_ms": stats(one_each),
            "bytes_by_baseline": sizes}


def _forget(state: State) -> None:
    """Empty the state's per-tick diff cache, so the next diff_message is computed afresh
    (what encoding per client, without the cache, would cost)."""
    state._diffs.clear()
