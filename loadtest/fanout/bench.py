"""The fan-out benchmark (`make bench`): delivered messages/s, latency, server cost.

The relay runs in its own process pinned to core 0 (when there are two cores), the
clients in `--procs` processes pinned to the other cores. A sender keeps `--inflight`
broadcasts outstanding (saturation), or sends at `--rate` per second; every payload is 64
bytes carrying a sequence number and the send time. Prints a table, writes JSON to
loadtest/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import struct
import sys
import time
from pathlib import Path

import uvloop

from loadtest.processes import ROOT, start_service
from loadtest.wsclient import WSClient

PAYLOAD = 64
HEAD = struct.Struct("!Qd")  # sequence number, send time (time.time())


def _proc_stat(pid: int) -> tuple[float, float, int]:
    """user seconds, system seconds, RSS bytes of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return int(fields[11]) / tick, int(fields[12]) / tick, rss


def _pin(cpus: set[int]) -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, cpus)


async def _receivers(host: str, port: int, path: str, n: int, first_addr: int,
                     ready: mp.Event, go: mp.Event, stop: mp.Event, out: mp.Queue) -> None:
    counts = [0]
    span = [0.0, 0.0]  # first and last receipt
    lat: list[float] = []
    seqs: set[int] = set()

    def on_message(data: str | bytes) -> None:
        seq, sent = HEAD.unpack_from(data)  # type: ignore[arg-type]
        now = time.time()
        if not counts[0]:
            span[0] = now
        span[1] = now
        counts[0] += 1
        if seq % 16 == 0:
            lat.append(now - sent)
        seqs.add(seq)

    clients = []
    for i in range(0, n, 200):
        batch = [WSClient.connect(host, port, path, on_message=on_message,
                                  local_addr=(f"127.0.0.{first_addr + (i + j) // 10000}", 0))
                 for j in range(min(200, n - i))]
        clients += await asyncio.gather(*batch)
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    # Drain: the run ends when nothing has arrived for a second (or after a minute).
    give_up = time.time() + 60
    while time.time() - max(span[1], 0.0) < 1.0 and time.time() < give_up:
        await asyncio.sleep(0.1)
    out.put({"delivered": counts[0], "latency": lat, "distinct": len(seqs),
             "first": span[0], "last": span[1]})
    for c in clients:
        c.transport.close()  # type: ignore[union-attr]


def _receiver_main(*args: object) -> None:
    _pin({1}) if os.cpu_count() and os.cpu_count() > 1 else None  # type: ignore[func-returns-value]
    uvloop.run(_receivers(*args))  # type: ignore[arg-type]


async def _send(host: str, port: int, path: str, seconds: float, inflight: int,
                rate: float | None) -> int:
    """Send broadcasts; with `inflight`, wait for our own echo-free room to drain by pacing
    on the relay's acknowledgement-free path: the sender tracks its write buffer."""
    sender = await WSClient.connect(host, port, path)
    t = sender.transport
    assert t is not None
    seq = 0
    end = time.monotonic() + seconds
    pad = b"\0" * (PAYLOAD - HEAD.size)
    if rate:
        interval = 1.0 / rate
        next_at = time.monotonic()
        while time.monotonic() < end:
            sender.send(HEAD.pack(seq, time.time()) + pad)
            seq += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    else:
        # Saturation: keep `inflight` broadcasts in flight, paced by a probe client that
        # receives every broadcast (it sits in the same room).
        got = asyncio.Queue[int]()
        probe = await WSClient.connect(host, port, path,
                                       on_message=lambda d: got.put_nowait(1))
        outstanding = 0
        while time.monotonic() < end:
            while outstanding < inflight:
                sender.send(HEAD.pack(seq, time.time()) + pad)
                seq += 1
                outstanding += 1
            await got.get()
            outstanding -= 1
        probe.transport.close()  # type: ignore[union-attr]
    t.close()
    return seq


def run(conns: int, procs: int, seconds: float, inflight: int, rate: float | None,
        relay_args: list[str]) -> dict[str, object]:
    relay = start_service("relay", "--ip-max-connections", "100000",
                          "--ip-handshake-rate", "100000", "--ip-handshake-burst", "100000",
                          "--ip-max-pending", "100000", "--msg-rate", "100000",
                          "--msg-burst", "100000", "--byte-rate", "1e9", "--byte-burst", "1e9",
                          *relay_args)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(relay.proc.pid, {0})
    path = f"/rooms/broadcast/bench-{os.getpid()}"
    ctx = mp.get_context("spawn")
    go, stop = ctx.Event(), ctx.Event()
    out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    per = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    readies = []
    workers = []
    rss_before = _proc_stat(relay.proc.pid)[2]
    for i, n in enumerate(per):
        ready = ctx.Event()
        readies.append(ready)
        p = ctx.Process(target=_receiver_main, args=(
            relay.host, relay.port, path, n, 2 + i * 10, ready, go, stop, out))
        p.start()
        workers.append(p)
    for r in readies:
        r.wait(300)
    time.sleep(0.5)
    rss_idle = _proc_stat(relay.proc.pid)[2]
    u0, s0, _ = _proc_stat(relay.proc.pid)
    t0 = time.monotonic()
    sent = uvloop.run(_send(relay.host, relay.port, path, seconds, inflight, rate))
    elapsed = time.monotonic() - t0
    stop.set()
    results = [out.get(timeout=120) for _ in workers]
    u1, s1, _ = _proc_stat(relay.proc.pid)
    for p in workers:
        p.join(30)
    relay.stop()
    delivered = sum(r["delivered"] for r in results)
    first = min(r["first"] for r in results if r["delivered"]) if delivered else 0.0
    last = max(r["last"] for r in results)
    window = max(last - first, 1e-9)
    lat = sorted(x for r in results for x in r["latency"])
    expected = sent * conns

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {
        "server": "stadium", "conns": conns, "mode": f"rate {rate:g}/s" if rate else
        f"saturation ({inflight} in flight)", "seconds": round(elapsed, 2), "sent": sent,
        "broadcasts_per_s": round(sent / elapsed, 1),
        "delivered_per_s": round(delivered / window), "lost": expected - delivered,
        "p50_ms": round(pct(0.5), 2), "p99_ms": round(pct(0.99), 2),
        "cpu_us_per_delivery_user": round((u1 - u0) / max(delivered, 1) * 1e6, 3),
        "cpu_us_per_delivery_sys": round((s1 - s0) / max(delivered, 1) * 1e6, 3),
        "rss_bytes_per_idle_conn": round((rss_idle - rss_before) / conns),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.fanout", description=__doc__)
    ap.add_argument("--conns", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--rates", type=float, nargs="*", default=[5.0, 20.0],
                    help="fixed broadcast rates to measure latency at, besides saturation")
    ap.add_argument("--relay-arg", action="append", default=[],
                    help="extra flag for the relay (repeatable)")
    args = ap.parse_args(argv)
    rows = []
    for n in args.conns:
        for rate in [None, *args.rates]:
            row = run(n, args.procs, args.seconds, args.inflight, rate, args.relay_arg)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    cols = ["server", "conns", "mode", "broadcasts_per_s", "delivered_per_s", "p50_ms", "p99_ms",
            "cpu_us_per_delivery_user", "cpu_us_per_delivery_sys", "rss_bytes_per_idle_conn",
            "lost"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
    results = ROOT / "loadtest" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"fanout-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                "rows": rows}, indent=1))
    print(f"wrote {path.relative_to(ROOT)}")
    return 0
