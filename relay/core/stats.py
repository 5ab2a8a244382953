"""The relay's counters: plain integers on the hot path, read by /metrics on scrape."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter

TICK_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25)


class TickTimes:
    """Tick durations of one room type, in the buckets of TICK_BUCKETS (seconds)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(TICK_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(TICK_BUCKETS, seconds)] += 1
        self.total += seconds


class Stats:
    __slots__ = ("messages_in", "bytes_in", "messages_out", "bytes_out", "rate_limit_drops",
                 "handler_errors", "closes", "http_rejects", "handshakes", "tick_times",
                 "tick_overruns", "hibernations", "wakes", "updates_skipped",
                 "seat_join_errors")

    def __init__(self) -> None:
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0
        self.rate_limit_drops = 0
        self.handler_errors = 0
        self.handshakes = 0
        self.hibernations = 0
        self.wakes = 0
        self.updates_skipped = 0
        self.seat_join_errors = 0
        self.closes: Counter[int] = Counter()
        self.http_rejects: Counter[int] = Counter()
        self.tick_times: dict[str, TickTimes] = {}
        self.tick_overruns: Counter[str] = Counter()

    def observe_tick(self, room_type: str, seconds: float) -> None:
        times = self.tick_times.get(room_type)
        if times is None:
            times = self.tick_times[room_type] = TickTimes()
        times.observe(seconds)
