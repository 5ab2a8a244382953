"""The matchmaker locust run end to end: real Redis, relay and matchmaker, ten locust players
for a few seconds; their stats CSV shows seats, joins, messages and results, no failure."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from loadtest.matchmaker import locust_run

# Not imported here: importing locust monkey-patches the whole pytest process for gevent.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None,
    reason="locust is the optional extra `load`: pip install -e '.[load]' "
           "(make loadtest-matchmaker installs it)")


def test_ten_players_queue_join_play_and_report(tmp_path: Path) -> None:
    prefix = tmp_path / "mm"
    code = locust_run.main(["--users", "10", "--spawn-rate", "10", "--run-time", "8s",
                            "--play-seconds", "2", "--csv", str(prefix)])
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    with open(f"{prefix}_failures.csv", newline="") as f:
        failures = list(csv.DictReader(f))
    assert failures == []
    assert code == 0

    def count(name: str) -> int:
        return int(rows[name]["Request Count"]) if name in rows else 0

    # ten players, 2 s games: each is seated and joins at least once, most twice or more
    assert count("wait_seat") >= 10
    assert count("join") >= 10
    assert count("play") >= 10
    assert count("message") > 0  # the opponents' messages went through the relay
    # one result per match, by its team-0 player: a second post would fail with 409
    assert count("result") >= 5
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    summary = (tmp_path / "mm.json").read_text()
    assert '"failures": 0.0' in summary
