"""The per-minute memo of current period ids gives what computing them afresh gives,
on both sides of every reset."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from leaderboard import periods


def test_current_period_matches_a_fresh_computation_across_resets() -> None:
    rng = random.Random(3)
    start = datetime(2026, 12, 28, tzinfo=UTC).timestamp()  # a month, a week, a year end
    for reset in ("00:00", "23:59", "07:30"):
        # Every 50 s over three days (the memo is filled as time moves on), then the last
        # millisecond before and the first after each reset, then random moments.
        moments = [start + 50 * i for i in range(3 * 86400 // 50)]
        for day in range(4):
            boundary = periods.period_end(periods.period_id("daily", start + day * 86400,
                                                            reset), reset)
            moments += [boundary - 0.001, boundary, boundary + 0.001]
        moments += [start + rng.uniform(-40, 40) * 86400 for _ in range(1000)]
        for at in moments:
            for kind in periods.KINDS:
                pid = periods.period_id(kind, at, reset)
                assert periods.current(kind, at, reset) == \
                    (pid, periods.period_end(pid, reset)), (kind, at, reset)
                assert periods.resolve(kind, [kind], at, reset) == pid
