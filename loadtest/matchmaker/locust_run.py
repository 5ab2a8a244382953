"""`make loadtest-matchmaker`: embedded Redis, a relay and a matchmaker, and locust headless
against them for a fixed time; the stats CSV and a JSON summary go to loadtest/results/."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from loadtest.processes import ROOT, start_service
from stadium.redis_server import EmbeddedRedis

SECRET = "locust-secret"
KEY = "locust-key"
# Every locust player connects from 127.0.0.1: the relay's per-address limits would refuse them.
RELAY_LIMITS = ("--ip-max-connections", "100000", "--ip-handshake-rate", "100000",
                "--ip-handshake-burst", "100000", "--ip-max-pending", "100000")


def stats(prefix: Path) -> dict[str, dict[str, str]]:
    """Rows of locust's `PREFIX_stats.csv` by name (`Aggregated` for the total)."""
    with open(f"{prefix}_stats.csv", newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def summary(rows: dict[str, dict[str, str]], seconds: float) -> dict[str, float]:
    def get(name: str, column: str) -> float:
        row = rows.get(name)
        return float(row[column]) if row and row[column] not in ("", "N/A") else 0.0

    return {
        "seats": get("wait_seat", "Request Count"),
        "matches_per_s": get("result", "Request Count") / seconds,
        "time_to_seat_ms_p50": get("wait_seat", "50%"),
        "time_to_seat_ms_p99": get("wait_seat", "99%"),
        "joins": get("join", "Request Count"),
        "join_ms_p50": get("join", "50%"),
        "join_ms_p99": get("join", "99%"),
        "message_ms_p50": get("message", "50%"),
        "message_ms_p99": get("message", "99%"),
        "results": get("result", "Request Count"),
        "requests": get("Aggregated", "Request Count"),
        "failures": get("Aggregated", "Failure Count"),
    }


def seconds_of(run_time: str) -> float:
    """Locust's `--run-time` (`60`, `90s`, `2m`, `1h30m`) in seconds."""
    total, number = 0.0, ""
    for ch in run_time:
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in "hms" and number:
            total += float(number) * {"h": 3600, "m": 60, "s": 1}[ch]
            number = ""
        else:
            raise ValueError(f"bad run time {run_time!r}: use e.g. 60s, 2m, 1h30m")
    return total + float(number or 0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.matchmaker.locust_run")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--spawn-rate", type=float, default=50)
    ap.add_argument("--run-time", default="60s", help="locust --run-time")
    ap.add_argument("--queue", default="1v1", help="one of the shipped queues")
    ap.add_argument("--play-seconds", type=float, default=3.0)
    ap.add_argument("--csv", type=Path, default=None,
                    help="CSV prefix (default loadtest/results/matchmaker-locust-TIME)")
    args = ap.parse_args(argv)
    seconds = seconds_of(args.run_time)
    prefix = args.csv or (ROOT / "loadtest" / "results"
                          / f"matchmaker-locust-{time.strftime('%Y%m%dT%H%M%S')}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with EmbeddedRedis() as redis_server:
        relay = start_service("relay", "--redis-url", redis_server.url, "--secret", SECRET,
                              *RELAY_LIMITS)
        try:
            matchmaker = start_service("matchmaker", "--redis-url", redis_server.url,
                                       "--secret", SECRET, "--api-key", KEY)
            try:
                code = subprocess.call(
                    [sys.executable, "-m", "locust", "-f",
                     str(ROOT / "loadtest" / "matchmaker" / "locustfile.py"), "--headless",
                     "--host", matchmaker.url, "-u", str(args.users),
                     "-r", str(args.spawn_rate), "--run-time", args.run_time,
                     "--csv", str(prefix), "--only-summary"],
                    env={**os.environ, "STADIUM_API_KEY": KEY, "STADIUM_SECRET": SECRET,
                         "MM_QUEUE": args.queue,
                         "MM_PLAY_SECONDS": str(args.play_seconds)}, cwd=ROOT)
            finally:
                matchmaker.stop()
        finally:
            relay.stop(signal.SIGKILL)
    s = summary(stats(prefix), seconds)
    print(f"\n{args.users} users in {args.queue} for {seconds:g}s: {s['seats']:.0f} seats, "
          f"{s['results']:.0f} matches reported ({s['matches_per_s']:.1f}/s), "
          f"{s['failures']:.0f} failures of {s['requests']:.0f}")
    print(f"{'step':<14} {'p50 ms':>8} {'p99 ms':>8}")
    for step, key in (("time to seat", "time_to_seat"), ("join", "join"),
                      ("message", "message")):
        print(f"{step:<14} {s[f'{key}_ms_p50']:>8.0f} {s[f'{key}_ms_p99']:>8.0f}")
    out = Path(f"{prefix}.json")
    out.write_text(json.dumps({
        "machine": platform.platform(), "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0], "users": args.users,
        "spawn_rate": args.spawn_rate, "run_time_s": seconds, "queue": args.queue,
        "play_seconds": args.play_seconds, **s}, indent=2))
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; wrote {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
