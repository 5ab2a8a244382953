"""The state-diff benchmark (`make bench-state`): Stadium's per-tick diffs against msgpack,
a generic binary delta and `@colyseus/schema` 5 on one scenario, acked baselines, and one
ticking room with many WebSocket clients on a real relay. Prints markdown tables, writes
JSON to loadtest/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.fanout.peers import PeerUnavailable, default_cache
from loadtest.processes import ROOT
from loadtest.state import encoders, interest, liveroom
from loadtest.state.scenario import make

PARTS = ("scenario", "baselines", "room", "interest")
VARIANTS = ("map", "array", "map-quantized")
# The targets.
BYTES_VS_COLYSEUS = 0.5
SNAPSHOT_BYTES_PER_ENTITY = 16
DIFF_MEDIAN_MS = 0.3
DIFF_P99_MS = 0.6
ROOM_TICK_P99_MS = 5.0
INTEREST_RATIO = 10.0


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}".rstrip("0").rstrip(".") if v else "0"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**not met**")


def scenario_table(rows: list[dict[str, Any]], entities: int, moving: int) -> str:
    head = ["encoder", "bytes/tick (median)", "bytes per moved entity", "ms/tick median",
            "ms/tick p99", "CPU ms/tick median / p99", "full state bytes", "full bytes/entity",
            "what is timed"]
    out = []
    for r in rows:
        if "skipped" in r:
            out.append([r["name"], f"skipped: {r['skipped']}", *[""] * (len(head) - 2)])
            continue
        cpu = r.get("total_cpu_ms")
        cpu_cell = f"{_fmt(cpu['median'])} / {_fmt(cpu['p99'])}" if cpu else "—"
        b = r["bytes_per_tick"]["median"]
        if r["name"] == "stadium":
            what = (f"commit {_fmt(r['commit_ms']['median'])} + diff_message "
                    f"{_fmt(r['diff_ms']['median'])} (median ms); the column writes, "
                    f"{_fmt(r['writes_ms']['median'])} ms, are not included")
        elif r["name"].startswith("@colyseus"):
            what = (f"setters {_fmt(r['setters_ms']['median'])} + encode() "
                    f"{_fmt(r['encode_ms']['median'])} (median ms)")
        elif "delta" in r:
            what = f"packb + delta ({r['ticks']} ticks)"
        else:
            what = "packb (dict writes not included)"
        out.append([r["name"], int(b), b / moving, r["total_ms"]["median"],
                    r["total_ms"]["p99"], cpu_cell, r["full_bytes"], r["full_bytes"] / entities,
                    what])
    return _table(head, out)


def targets(stadium: dict[str, Any] | None, colyseus: dict[str, Any] | None,
            room: dict[str, Any] | None, entities: int) -> list[dict[str, Any]]:
    """Each target with the measured figure and whether it is met."""
    rows: list[dict[str, Any]] = []
    if stadium is not None:
        b = stadium["bytes_per_tick"]["median"]
        if colyseus is not None:
            cb = colyseus["bytes_per_tick"]["median"]
            rows.append({"target": f"bytes/tick <= {BYTES_VS_COLYSEUS}x Colyseus' "
                                   f"({colyseus['variant']}: {int(cb):,})",
                         "measured": f"{int(b):,} ({b / cb:.2f}x)",
                         "met": b <= BYTES_VS_COLYSEUS * cb})
        else:
            rows.append({"target": f"bytes/tick <= {BYTES_VS_COLYSEUS}x Colyseus'",
                         "measured": f"{int(b):,} (Colyseus skipped)", "met": None})
        per = stadium["full_bytes"] / entities
        rows.append({"target": f"full snapshot <= {SNAPSHOT_BYTES_PER_ENTITY} bytes/entity",
                     "measured": f"{per:.2f}", "met": per <= SNAPSHOT_BYTES_PER_ENTITY})
        for key, clock in (("total_ms", "wall"), ("total_cpu_ms", "thread CPU")):
            med, p99 = stadium[key]["median"], stadium[key]["p99"]
            rows.append({"target": f"diff + encode (commit + diff_message) <= {DIFF_MEDIAN_MS} "
                                   f"ms median, {clock} time", "measured": f"{med:.3f} ms",
                         "met": med <= DIFF_MEDIAN_MS})
            rows.append({"target": f"diff + encode <= {DIFF_P99_MS} ms p99, {clock} time",
                         "measured": f"{p99:.3f} ms", "met": p99 <= DIFF_P99_MS})
    if room is not None and "skipped" not in room:
        p99 = room["tick_p99_le_ms"]
        rows.append({"target": f"room: p99 tick (logic + diff + send) <= {ROOM_TICK_P99_MS:g} ms",
                     "measured": f"<= {_fmt(p99)} ms (histogram bucket), mean "
                                 f"{_fmt(room['tick_mean_ms'])} ms",
                     "met": p99 is not None and p99 <= ROOM_TICK_P99_MS})
        rows.append({"target": "room: nothing lost",
                     "measured": f"{room['lost']} ticks lost, {room['closed']} clients closed",
                     "met": room["lost"] == 0 and room["closed"] == 0 and room["refused"] == 0})
        rows.append({"target": "room: p99 state latency (reported)",
                     "measured": f"{_fmt(room['latency_p99_ms'])} ms", "met": None})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.state", description=__doc__)
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"comma-separated, from {','.join(PARTS)} (default: all)")
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--moving", type=float, default=0.1, help="fraction moving per tick")
    ap.add_argument("--ticks", type=int, default=200)
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--delta-ticks", type=int, default=200,
                    help="ticks that also get the generic binary delta (it is slow)")
    ap.add_argument("--colyseus", default=",".join(VARIANTS),
                    help="Colyseus variants: map (x, y numbers in a MapSchema; the one the "
                         "targets use), array (ArraySchema), map-quantized (t.quantized "
                         "32-bit x, y); empty to skip")
    ap.add_argument("--clients", type=int, default=1000, help="acked-baselines clients")
    ap.add_argument("--baselines", type=int, default=8, help="distinct acked ticks")
    ap.add_argument("--baseline-ticks", type=int, default=20)
    ap.add_argument("--room-conns", type=int, default=1000)
    ap.add_argument("--room-entities", type=int, default=1000)
    ap.add_argument("--room-seconds", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=1, help="client processes for the room part")
    ap.add_argument("--interest-entities", type=int, default=50_000)
    ap.add_argument("--interest-cells", type=int, default=100, help="grid is N x N cells")
    ap.add_argument("--interest-clients", type=int, default=5_000)
    ap.add_argument("--interest-ticks", type=int, default=10)
    ap.add_argument("--interest-refocus", type=float, default=0.01,
                    help="fraction of clients whose focus moves to another place per tick")
    ap.add_argument("--cache", type=Path, default=default_cache(),
                    help="where @colyseus/schema and bsdiff4 are installed (default "
                         "$STADIUM_BENCH_CACHE or ~/.cache/stadium-bench)")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {','.join(PARTS)}")
    variants = [v.strip() for v in args.colyseus.split(",") if v.strip()]
    if any(v not in VARIANTS for v in variants):
        ap.error(f"--colyseus takes {','.join(VARIANTS)}")
    if not 0 < args.moving <= 1 or args.entities < 1 or args.ticks < 1:
        ap.error("--entities and --ticks must be >= 1 and --moving in (0, 1]")
    moving = max(1, round(args.entities * args.moving))
    notes: list[str] = []
    result: dict[str, Any] = {}
    stadium = colyseus = room = None
    load_start = os.getloadavg()  # the machine is shared: say how busy it was

    if "scenario" in parts:
        try:
            sys.path.insert(0, str(encoders.install_bsdiff(args.cache)))
        except (encoders.Unavailable, OSError, TimeoutError) as exc:
            notes.append(f"bsdiff4 unavailable ({exc}); the delta row uses XOR + zlib")
        full = make(args.entities, moving, args.ticks, args.seed)
        rows = [stadium := encoders.run_stadium(full)]
        rows += encoders.run_msgpack(full, args.delta_ticks)
        if variants:
            try:
                rows += encoders.run_colyseus(full, args.cache, variants)
            except (encoders.Unavailable, OSError) as exc:
                print(f"skipping @colyseus/schema: {exc}", file=sys.stderr, flush=True)
                rows.append({"name": "@colyseus/schema 5", "skipped": str(exc)})
        colyseus = next((r for r in rows if r.get("variant") == "map"), None)
        result["scenario"] = {"entities": args.entities, "moving": moving, "ticks": args.ticks,
                              "seed": args.seed, "results": rows}

    if "baselines" in parts:
        s = make(args.entities, moving, args.baselines + 1 + args.baseline_ticks, args.seed)
        result["baselines"] = encoders.run_baselines(s, args.clients, args.baselines,
                                                     args.baseline_ticks)

    if "interest" in parts:
        result["interest"] = interest.run(args.interest_entities, args.interest_cells,
                                          args.interest_clients, args.interest_ticks,
                                          args.interest_refocus, args.seed)

    server_cpu, client_cpus = _cores()
    if "room" in parts:
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        try:
            room = liveroom.run(args.cache, server_cpu, client_cpus, args.room_conns,
                                args.procs, args.room_seconds, args.room_entities, args.moving)
        except (PeerUnavailable, RuntimeError, OSError) as exc:
            print(f"room part failed: {exc}", file=sys.stderr, flush=True)
            room = {"skipped": f"failed: {exc}"}
        result["room"] = room

    command = "python -m loadtest.state " + shlex.join(sys.argv[1:] if argv is None else argv)
    versions = {"python": sys.version.split()[0], "numpy": np.__version__,
                "msgpack": metadata.version("msgpack"),
                "stadium": metadata.version("stadium")}
    load = {"start": load_start, "end": os.getloadavg()}
    print(f"\n{platform.platform()}, {os.cpu_count()} CPUs; "
          + ", ".join(f"{k} {v}" for k, v in versions.items())
          + f"; load average (1 min) {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end")
    for note in notes:
        print(f"note: {note}")
    if "scenario" in result:
        sc = result["scenario"]
        print(f"\n### Scenario: {sc['entities']:,} entities (x, y Fixed(0.01) m, angle "
              f"Angle(256)), {sc['moving']:,} moving per tick, {sc['ticks']} ticks\n")
        print(scenario_table(sc["results"], sc["entities"], sc["moving"]))
    if "baselines" in result:
        b = result["baselines"]
        print(f"\n### Acked baselines: {b['clients']:,} clients over {b['baselines']} distinct "
              f"baselines (1-{b['baselines']} ticks behind), {b['entities']:,} entities, "
              f"{b['ticks']} ticks\n")
        print(_table(["encode work per tick", "ms median", "ms p99"], [
            [f"{b['baselines']} baselines, cached per baseline (message_for per client)",
             b["cached_ms"]["median"], b["cached_ms"]["p99"]],
            ["1 baseline (everyone on the previous tick), cached",
             b["one_baseline_ms"]["median"], b["one_baseline_ms"]["p99"]],
            ["per client, no cache (measured: cache emptied before each client)",
             b["per_client_ms"]["median"], b["per_client_ms"]["p99"]],
            ["per client, no cache (one uncached diff per baseline x its clients)",
             b["per_client_estimate_ms"]["median"], b["per_client_estimate_ms"]["p99"]],
        ]))
        print("\ndiff bytes by baseline (ticks behind): " + ", ".join(
            f"{k}: {v:,}" for k, v in sorted(b["bytes_by_baseline"].items())))
    if room is not None:
        print(f"\n### One room: {args.room_conns:,} WebSocket clients, {args.room_entities:,} "
              f"entities, {args.moving:.0%} moving, 20 Hz, {args.room_seconds:g} s\n")
        if "skipped" in room:
            print(room["skipped"])
        else:
            print(_table(
                ["clients", "ticks", "tick mean ms", "tick p50 / p99 ms (bucket)", "overruns",
                 "relay / client CPU %", "messages", "per client min / max", "lost", "closed",
                 "latency p50 / p99 / max ms"],
                [[room["joined"], room["ticks"], room["tick_mean_ms"],
                  f"<= {_fmt(room['tick_p50_le_ms'])} / <= {_fmt(room['tick_p99_le_ms'])}",
                  room["overruns"], f"{room['relay_cpu_pct']} / {room['client_cpu_pct']}",
                  room["messages"],
                  f"{room['min_per_client']} / {room['max_per_client']}", room["lost"],
                  room["closed"],
                  f"{_fmt(room['latency_p50_ms'], 2)} / {_fmt(room['latency_p99_ms'], 2)} / "
                  f"{_fmt(room['latency_max_ms'], 2)}"]]))
    if "interest" in result:
        it = result["interest"]
        print(f"\n### Interest management: {it['entities']:,} entities, {it['cells']:,} cells, "
              f"{it['clients']:,} clients seeing 3 x 3 cells, {it['refocus']:.0%} refocusing "
              f"per tick, {it['ticks']} ticks (process CPU)\n")
        print(_table(["encoding", "CPU ms per tick median", "p99", "bytes per client"], [
            ["grid: per-cell bundles, sliced per client", it["grid_cpu_ms"]["median"],
             it["grid_cpu_ms"]["p99"], it["grid_bytes_per_client"]],
            ["per client: each view diffed and encoded alone (shared cell index)",
             it["per_client_cpu_ms"]["median"], it["per_client_cpu_ms"]["p99"],
             it["per_client_bytes_per_client"]],
        ]))
    goals = targets(stadium, colyseus, room, args.entities)
    if "interest" in result:
        ratio = result["interest"]["ratio"]
        goals.append({"target": f"interest: per-client CPU / grid CPU >= {INTEREST_RATIO:g}x",
                      "measured": f"{ratio:.1f}x", "met": ratio >= INTEREST_RATIO})
    if goals:
        print("\n### Targets\n")
        print(_table(["target", "measured", ""], [[g["target"], g["measured"], _met(g["met"])]
                                                  for g in goals]))
    out = ROOT / "loadtest" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"state-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({
        "command": command, "machine": platform.platform(), "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(), "versions": versions,
        "load_average": load, "notes": notes, "targets": goals, **result}, indent=1, default=_json))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


def _json(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serialisable")


def _cores() -> tuple[int | None, set[int] | None]:
    """(relay core, client cores), or (None, None) on a one-core machine."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (cpus[0], set(cpus[1:])) if len(cpus) > 1 else (None, None)
