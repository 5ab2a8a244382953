"""`make loadtest-leaderboard`: a leaderboard on an embedded Redis, and locust headless
against it for a fixed time; the stats CSV goes to loadtest/results/."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from loadtest.processes import ROOT, start_service
from stadium.redis_server import EmbeddedRedis


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.leaderboard.locust_run")
    ap.add_argument("--time", default="30s", help="locust --run-time")
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--spawn-rate", type=int, default=16)
    args = ap.parse_args(argv)
    key = "locust-key"
    results = ROOT / "loadtest" / "results"
    results.mkdir(exist_ok=True)
    with EmbeddedRedis() as redis_server:
        service = start_service("leaderboard", "--redis-url", redis_server.url, "--api-key", key)
        try:
            prefix = results / f"leaderboard-locust-{time.strftime('%Y%m%dT%H%M%S')}"
            return subprocess.call(
                [sys.executable, "-m", "locust", "-f",
                 str(ROOT / "loadtest" / "leaderboard" / "locustfile.py"), "--headless",
                 "--host", service.url, "-u", str(args.users), "-r", str(args.spawn_rate),
                 "--run-time", args.time, "--csv", str(prefix), "--only-summary"],
                env={**os.environ, "STADIUM_API_KEY": key}, cwd=ROOT)
        finally:
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
