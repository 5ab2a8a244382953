"""The fan-out benchmark (`make bench`): Stadium's relay against its peers, same client.

Each server (`--servers`) runs pinned to core 0, the clients in processes pinned to core 1.
N receivers (`--conns`) join one broadcast room; one sender sends 64-byte messages carrying
a sequence number and the send time, first keeping `--inflight` broadcasts in flight
(saturation), then at fixed `--rates`. Prints a markdown table, writes JSON to
loadtest/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import socket
import struct
import sys
import time
from array import array
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import uvloop

from loadtest.clientproc import CONNS_PER_ADDR, join_all, obey, wait_ready
from loadtest.fanout.peers import SERVERS, PeerUnavailable, Server, default_cache
from loadtest.processes import ROOT
from loadtest.wsclient import WSClient

PAYLOAD = 64
HEAD = struct.Struct("!Qd")  # sequence number, send time (time.time())
SEQ = struct.Struct("!Q")
FDS_PER_PROC = 19_000  # client sockets per process: `ulimit -n` is 20,000 here
SAMPLE_EVERY = 16  # every 16th receiver records the latency of every message it gets
STALL = 5.0  # saturation gives up when no broadcast completes for this long (loss)


def _proc_stat(pid: int) -> tuple[float, float, int]:
    """user seconds, system seconds, RSS bytes of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return int(fields[11]) / tick, int(fields[12]) / tick, rss


def _cpu(pids: list[int]) -> float:
    return sum(sum(_proc_stat(p)[:2]) for p in pids)


def _pin(cpus: set[int]) -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, cpus)


def _cores() -> tuple[int | None, set[int] | None]:
    """(server core, client cores), or (None, None) on a one-core machine."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (cpus[0], set(cpus[1:])) if len(cpus) > 1 else (None, None)


# --- receivers (one process per up to FDS_PER_PROC sockets) ---------------------------------

async def _receivers(host: str, port: int, path: str, n: int, first_addr: int,
                     pipe: Connection, notify: tuple[str, int]) -> None:
    """Join `n` receivers, then obey the bench: ("reset",), ("report", sent), ("close",).

    A broadcast is complete here when all of this process's receivers have it; the process
    then sends its sequence number to `notify` (UDP), which paces the sender.
    """
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    pending: dict[int, int] = {}  # seq -> receivers that have it so far
    done = [0]  # broadcasts that all of this process's receivers have
    done_at = [0.0]  # when the last of them completed
    lat = array("d")
    unpack_seq = SEQ.unpack_from
    unpack_head = HEAD.unpack_from
    now = time.time
    want = [n]

    def count(data: str | bytes) -> None:
        seq = unpack_seq(data)[0]  # type: ignore[arg-type]
        c = pending.get(seq, 0) + 1
        if c == want[0]:
            del pending[seq]
            done[0] += 1
            done_at[0] = now()
            # A lost notification shows as a stall of the sender, not as a hang.
            with contextlib.suppress(BlockingIOError):
                udp.sendto(SEQ.pack(seq), notify)
        else:
            pending[seq] = c

    def sample(data: str | bytes) -> None:
        lat.append(now() - unpack_head(data)[1])  # type: ignore[arg-type]
        count(data)

    clients, failed = await join_all(
        host, port, path, n, first_addr,
        lambda i: sample if i % SAMPLE_EVERY == 0 else count)
    want[0] = len(clients)

    def reset(_: tuple[Any, ...]) -> tuple[str]:
        pending.clear()
        done[0], done_at[0] = 0, 0.0
        del lat[:]
        return ("ok",)

    async def report(cmd: tuple[Any, ...]) -> dict[str, Any]:
        expected = cmd[1] * len(clients)
        give_up = time.monotonic() + 60
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() < give_up:
            got = done[0] * len(clients) + sum(pending.values())
            if got >= expected:
                break
            if got != seen:
                seen, quiet_since = got, time.monotonic()
            elif time.monotonic() - quiet_since > 2.0:
                break  # nothing more is coming: the rest is lost
            await asyncio.sleep(0.05)
        delivered = done[0] * len(clients) + sum(pending.values())
        last = time.time() - (time.monotonic() - quiet_since) if pending else 0.0
        return {"delivered": delivered, "last": max(last, done_at[0]),
                "dropped": sum(1 for c in clients if c.closed.done()),
                "latency": lat.tobytes()}

    await obey(pipe, clients, failed, {"reset": reset, "report": report})


def _receiver_main(cpus: set[int] | None, *args: Any) -> None:
    if cpus:
        _pin(cpus)
    uvloop.run(_receivers(*args))


# --- sender ------------------------------------------------------------------------------------

async def _send(host: str, port: int, path: str, seconds: float, inflight: int,
                rate: float | None, seq: int, notify: socket.socket,
                procs: int) -> tuple[int, bool]:
    """Send broadcasts from `seq` on; returns (how many were sent, whether saturation stalled).

    Saturation keeps `inflight` broadcasts outstanding: one is outstanding until every
    receiver process reports that all its receivers have it.
    """
    loop = asyncio.get_running_loop()
    sender = await WSClient.connect(host, port, path)
    first = seq
    end = time.monotonic() + seconds
    pad = b"\0" * (PAYLOAD - HEAD.size)
    stalled = False
    if rate:
        interval = 1.0 / rate
        next_at = time.monotonic()
        while time.monotonic() < end:
            sender.send(HEAD.pack(seq, time.time()) + pad)
            seq += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    else:
        reports: dict[int, int] = {}
        completed = [0]
        progress = asyncio.Event()

        def on_notify() -> None:
            while True:
                try:
                    s = SEQ.unpack(notify.recv(64))[0]
                except BlockingIOError:
                    return
                c = reports.get(s, 0) + 1
                if c == procs:
                    del reports[s]
                    completed[0] += 1
                    progress.set()
                else:
                    reports[s] = c

        loop.add_reader(notify.fileno(), on_notify)
        try:
            while time.monotonic() < end:
                while seq - first - completed[0] < inflight:
                    sender.send(HEAD.pack(seq, time.time()) + pad)
                    seq += 1
                progress.clear()
                try:
                    await asyncio.wait_for(progress.wait(), STALL)
                except TimeoutError:
                    stalled = True
                    break
        finally:
            loop.remove_reader(notify.fileno())
    # A server still busy fanning out may answer the close late; that is not a failure.
    with contextlib.suppress(TimeoutError):
        await sender.close(timeout=2.0)
    return seq - first, stalled


# --- one server at one N ----------------------------------------------------------------------

def _pct(lat: list[float], q: float) -> float | None:
    return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None


def run(server: Server, conns: int, procs: int, seconds: float, inflight: int,
        rates: list[float], client_cpus: set[int] | None) -> dict[str, Any]:
    """Start `server`, join `conns` receivers, run saturation then each rate; one result."""
    procs = max(procs, math.ceil(conns / FDS_PER_PROC))
    svc = server.start()
    pid = svc.proc.pid
    path = f"/rooms/broadcast/bench-{os.getpid()}"
    ctx = mp.get_context("spawn")
    notify = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    notify.bind(("127.0.0.1", 0))
    notify.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    notify.setblocking(False)
    per = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    pipes: list[Connection] = []
    workers = []
    addrs_per_proc = math.ceil(max(per) / CONNS_PER_ADDR)
    result: dict[str, Any] = {"server": server.name, "version": server.version, "conns": conns,
                              "client_procs": procs, "phases": []}
    try:
        time.sleep(0.3)
        rss_before = _proc_stat(pid)[2]
        t_join = time.monotonic()
        for i, n in enumerate(per):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_receiver_main, daemon=True, args=(
                client_cpus, svc.host, svc.port, path, n, 2 + i * addrs_per_proc, theirs,
                notify.getsockname()))
            p.start()
            pipes.append(mine)
            workers.append(p)
        joined, refused, errors = wait_ready(pipes, 600)
        result["join_seconds"] = round(time.monotonic() - t_join, 1)
        time.sleep(0.5)
        rss_idle = _proc_stat(pid)[2]
        result.update(joined=joined, refused=refused, refused_examples=errors[:3],
                      rss_bytes_per_idle_conn=round((rss_idle - rss_before) / max(joined, 1)))
        client_pids = [os.getpid(), *(p.pid for p in workers if p.pid is not None)]
        seq = 0
        for rate in [None, *rates]:
            for pipe in pipes:
                pipe.send(("reset",))
            for pipe in pipes:
                pipe.recv()
            while True:  # stale notifications from the previous phase
                try:
                    notify.recv(64)
                except BlockingIOError:
                    break
            u0, s0, _ = _proc_stat(pid)
            c0 = _cpu(client_pids)
            t0 = time.time()
            sent, stalled = uvloop.run(_send(svc.host, svc.port, path, seconds, inflight,
                                             rate, seq, notify, procs))
            seq += sent
            for pipe in pipes:
                pipe.send(("report", sent))
            reports = [pipe.recv() for pipe in pipes]
            u1, s1, _ = _proc_stat(pid)
            c1 = _cpu(client_pids)
            delivered = sum(r["delivered"] for r in reports)
            window = max(max(r["last"] for r in reports) - t0, 1e-9)
            lat = sorted(x for r in reports for x in array("d", r["latency"]))
            d = max(delivered, 1)
            result["phases"].append({
                "mode": f"rate {rate:g}/s" if rate else f"saturation ({inflight} in flight)",
                "rate": rate, "sent": sent, "stalled": stalled, "seconds": round(window, 2),
                "delivered": delivered, "delivered_per_s": round(delivered / window),
                "achieved_broadcasts_per_s": round(delivered / max(joined, 1) / window, 2),
                "lost": sent * joined - delivered,
                "dropped": sum(r["dropped"] for r in reports),
                "p50_ms": _pct(lat, 0.5), "p99_ms": _pct(lat, 0.99),
                "server_us_per_msg_user": round((u1 - u0) / d * 1e6, 3),
                "server_us_per_msg_sys": round((s1 - s0) / d * 1e6, 3),
                "server_cpu_pct": round((u1 - u0 + s1 - s0) / window * 100),
                "client_us_per_msg": round((c1 - c0) / d * 1e6, 3),
                "client_cpu_pct": round((c1 - c0) / window * 100),
            })
            print(json.dumps({"server": server.name, "conns": conns, **result["phases"][-1]}),
                  file=sys.stderr, flush=True)
        for pipe in pipes:
            pipe.send(("close",))
    finally:
        for p in workers:
            p.join(30)
            if p.is_alive():
                p.kill()
        notify.close()
        result["server_exit"] = svc.stop()
    return result


# --- report ------------------------------------------------------------------------------------

def _summary(r: dict[str, Any], rates: list[float]) -> dict[str, Any]:
    """One table row: saturation figures, p99 at the first rate, achieved at the last."""
    if "skipped" in r:
        return {"server": r["server"], "conns": r["conns"], "skipped": r["skipped"]}
    sat, *fixed = r["phases"]
    low = fixed[0] if fixed else {}
    high = fixed[-1] if fixed else {}
    return {
        "server": r["server"], "conns": r["conns"],
        "delivered_per_s": sat["delivered_per_s"],
        "server_us_user": sat["server_us_per_msg_user"],
        "server_us_sys": sat["server_us_per_msg_sys"],
        "client_us": sat["client_us_per_msg"], "client_cpu_pct": sat["client_cpu_pct"],
        "kib_per_idle_conn": round(r["rss_bytes_per_idle_conn"] / 1024, 2),
        "p50_low": low.get("p50_ms"), "p99_low": low.get("p99_ms"),
        "achieved_high": high.get("achieved_broadcasts_per_s"),
        "lost": sum(p["lost"] for p in r["phases"]),
        "dropped": max(p["dropped"] for p in r["phases"]) + r["refused"],
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(results: list[dict[str, Any]], rates: list[float]) -> str:
    low = f"{rates[0]:g}/s" if rates else "—"
    high = f"{rates[-1]:g}/s" if rates else "—"
    head = ["server", "N", "delivered msg/s", "vs Bun", "server µs/msg (user / sys)",
            "client µs/msg (core %)", "KiB per idle conn", f"p50 / p99 ms at {low}",
            f"achieved bcast/s asked {high}", "lost", "dropped"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [_summary(r, rates) for r in results]
    bun = {r["conns"]: r for r in rows if r["server"] == "bun" and "skipped" not in r}
    for s in rows:
        if "skipped" in s:
            lines.append(f"| {s['server']} | {_fmt(s['conns'])} | skipped: {s['skipped']} |"
                         + " |" * (len(head) - 3))
            continue
        b = bun.get(s["conns"])
        ratio = (f"{s['delivered_per_s'] / b['delivered_per_s']:.2f}x"
                 if b and b["delivered_per_s"] else "—")
        total = s["server_us_user"] + s["server_us_sys"]
        cpu_ratio = (f", {total / (b['server_us_user'] + b['server_us_sys']):.2f}x Bun"
                     if b and s is not b and b["server_us_user"] + b["server_us_sys"] else "")
        lines.append("| " + " | ".join([
            s["server"], _fmt(s["conns"]), _fmt(s["delivered_per_s"]), ratio,
            f"{total:.2f} ({s['server_us_user']:.2f} / {s['server_us_sys']:.2f}){cpu_ratio}",
            f"{s['client_us']:.2f} ({s['client_cpu_pct']}%)", _fmt(s["kib_per_idle_conn"]),
            f"{_fmt(s['p50_low'])} / {_fmt(s['p99_low'])}", _fmt(s["achieved_high"]),
            _fmt(s["lost"]), _fmt(s["dropped"])]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.fanout", description=__doc__)
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help=f"comma-separated, from {','.join(SERVERS)} (default: all)")
    ap.add_argument("--conns", type=int, nargs="+", default=[10_000],
                    help="receivers per run (up to 50,000; a server process can hold 19,500)")
    ap.add_argument("--procs", type=int, default=2,
                    help=f"client processes (at least one per {FDS_PER_PROC:,} receivers)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--rates", type=float, nargs="*", default=[5.0, 20.0],
                    help="fixed broadcast rates after saturation: latency at the first, "
                         "achieved rate at the last")
    ap.add_argument("--relay-arg", action="append", default=[],
                    help="extra flag for Stadium's relay (repeatable)")
    ap.add_argument("--cache", type=Path, default=default_cache(),
                    help="where peers are installed (default $STADIUM_BENCH_CACHE or "
                         "~/.cache/stadium-bench)")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in names if s not in SERVERS]
    if unknown:
        ap.error(f"unknown server(s) {', '.join(unknown)}; choose from {','.join(SERVERS)}")
    if max(args.conns) > 50_000:
        ap.error("--conns above 50,000 is not supported (source addresses and descriptors)")
    server_cpu, client_cpus = _cores()
    if client_cpus:
        _pin(client_cpus)  # the sender runs here, beside the receivers
    results: list[dict[str, Any]] = []
    for name in names:
        server = Server(name, args.cache, server_cpu, args.relay_arg)
        try:
            server.prepare()
        except PeerUnavailable as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr, flush=True)
            results += [{"server": name, "conns": n, "skipped": str(exc)} for n in args.conns]
            continue
        for n in args.conns:
            try:
                results.append(run(server, n, args.procs, args.seconds, args.inflight,
                                   args.rates, client_cpus))
            except (PeerUnavailable, RuntimeError, OSError) as exc:
                print(f"{name} at N={n} failed: {exc!r}", file=sys.stderr, flush=True)
                results.append({"server": name, "conns": n, "skipped": f"failed: {exc!r}"})
    command = "python -m loadtest.fanout " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"\n{platform.platform()}, {os.cpu_count()} CPUs; server on cpu {server_cpu}, "
          f"clients on cpus {sorted(client_cpus or [])}; {args.inflight} in flight, "
          f"{PAYLOAD}-byte messages, {args.seconds:g} s per phase\n")
    print(table(results, args.rates))
    out = ROOT / "loadtest" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"fanout-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({
        "command": command, "machine": platform.platform(), "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(), "server_cpu": server_cpu,
        "client_cpus": sorted(client_cpus or []), "inflight": args.inflight,
        "payload": PAYLOAD, "seconds": args.seconds, "rates": args.rates,
        "versions": {r["server"]: r.get("version") for r in results},
        "results": results}, indent=1))
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0
