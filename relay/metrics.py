"""The relay's counters (relay.core.stats) rendered as Prometheus text on scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from relay.core.stats import TICK_BUCKETS, Stats

__all__ = ["TICK_BUCKETS", "Stats", "make_registry", "render"]


class _RelayCollector(Collector):
    def __init__(self, stats: Stats, gauges: Callable[[], dict[str, int]]) -> None:
        self._stats = stats
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        g = self._gauges()
        yield GaugeMetricFamily("stadium_relay_connections", "Open WebSocket connections",
                                value=g["connections"])
        yield GaugeMetricFamily("stadium_relay_rooms", "Rooms awake in memory", value=g["rooms"])
        yield GaugeMetricFamily("stadium_relay_rooms_hibernated",
                                "Rooms hibernated: snapshot kept, object dropped, sockets open",
                                value=g["rooms_hibernated"])
        for name, doc, value in (
            ("messages_in", "Messages accepted from clients", s.messages_in),
            ("bytes_in", "Bytes received on WebSocket connections", s.bytes_in),
            ("messages_out", "Messages queued to clients (one per recipient)", s.messages_out),
            ("bytes_out", "Bytes queued to clients", s.bytes_out),
            ("rate_limit_drops", "Client messages dropped by a rate limit", s.rate_limit_drops),
            ("handler_errors", "Room handlers that raised", s.handler_errors),
            ("handshakes", "WebSocket handshakes accepted", s.handshakes),
            ("room_hibernations", "Rooms put to sleep after being idle", s.hibernations),
            ("updates_skipped", "State ticks and droppable broadcasts not sent to slow readers",
             s.updates_skipped),
            ("room_wakes", "Hibernated rooms woken by a message, request, close or alarm",
             s.wakes),
            ("seat_join_errors", "Seat joins that could not be written to Redis",
             s.seat_join_errors),
        ):
            yield CounterMetricFamily(f"stadium_relay_{name}", doc, value=value)
        closes = CounterMetricFamily("stadium_relay_closes", "Closed connections by close code",
                                     labels=["code"])
        for code, n in sorted(s.closes.items()):
            closes.add_metric([str(code)], n)
        yield closes
        rejects = CounterMetricFamily("stadium_relay_http_rejects",
                                      "HTTP requests and upgrades refused, by status",
                                      labels=["status"])
        for status, n in sorted(s.http_rejects.items()):
            rejects.add_metric([str(status)], n)
        yield rejects
        ticks = HistogramMetricFamily("stadium_relay_tick_seconds",
                                      "Room tick duration (logic, state diff and send)",
                                      labels=["room_type"])
        for room_type, times in sorted(s.tick_times.items()):
            cumulative, buckets = 0, []
            for le, n in zip((*TICK_BUCKETS, float("inf")), times.counts, strict=True):
                cumulative += n
                buckets.append(("+Inf" if le == float("inf") else repr(le), cumulative))
            ticks.add_metric([room_type], buckets, times.total)
        yield ticks
        overruns = CounterMetricFamily("stadium_relay_tick_overruns",
                                       "Ticks skipped because the room fell behind its tick rate",
                                       labels=["room_type"])
        for room_type, n in sorted(s.tick_overruns.items()):
            overruns.add_metric([room_type], n)
        yield overruns


def make_registry(stats: Stats, gauges: Callable[[], dict[str, int]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RelayCollector(stats, gauges))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
