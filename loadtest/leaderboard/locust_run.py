"""`make loadtest-leaderboard`: a leaderboard on an embedded Redis, and locust headless
against it for a fixed time; the stats CSV goes to loadtest/results/."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stadium.redis_server import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest.leaderboard.locust_run")
    ap.add_argument("--time", default="30s", help="locust --run-time")
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--spawn-rate", type=int, default=16)
    args = ap.parse_args(argv)
    key = "locust-key"
    results = ROOT / "loadtest" / "results"
    results.mkdir(exist_ok=True)
    with EmbeddedRedis() as redis_server, tempfile.NamedTemporaryFile(suffix=".log") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "stadium.cli", "leaderboard", "--port", "0",
             "--redis-url", redis_server.url, "--api-key", key],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            url = ""
            deadline = time.monotonic() + 20
            while not url and time.monotonic() < deadline:
                m = re.search(r"listening on (http://\S+)", Path(log.name).read_text())
                url = m.group(1) if m else ""
                time.sleep(0.05)
            if not url:
                print(Path(log.name).read_text(), file=sys.stderr)
                return 1
            prefix = results / f"leaderboard-locust-{time.strftime('%Y%m%dT%H%M%S')}"
            return subprocess.call(
                [sys.executable, "-m", "locust", "-f",
                 str(ROOT / "loadtest" / "leaderboard" / "locustfile.py"), "--headless",
                 "--host", url, "-u", str(args.users), "-r", str(args.spawn_rate),
                 "--run-time", args.time, "--csv", str(prefix), "--only-summary"],
                env={**os.environ, "STADIUM_API_KEY": key}, cwd=ROOT)
        finally:
            service.terminate()
            service.wait(10)


if __name__ == "__main__":
    sys.exit(main())
