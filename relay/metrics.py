"""Relay counters kept as plain integers on the hot path, rendered as Prometheus text on scrape."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class Stats:
    __slots__ = ("messages_in", "bytes_in", "messages_out", "bytes_out", "rate_limit_drops",
                 "handler_errors", "closes", "http_rejects", "handshakes")

    def __init__(self) -> None:
        self.messages_in = 0
        self.bytes_in = 0
        self.messages_out = 0
        self.bytes_out = 0
        self.rate_limit_drops = 0
        self.handler_errors = 0
        self.handshakes = 0
        self.closes: Counter[int] = Counter()
        self.http_rejects: Counter[int] = Counter()


class _RelayCollector(Collector):
    def __init__(self, stats: Stats, gauges: Callable[[], dict[str, int]]) -> None:
        self._stats = stats
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        g = self._gauges()
        yield GaugeMetricFamily("stadium_relay_connections", "Open WebSocket connections",
                                value=g["connections"])
        yield GaugeMetricFamily("stadium_relay_rooms", "Rooms in memory", value=g["rooms"])
        for name, doc, value in (
            ("messages_in", "Messages accepted from clients", s.messages_in),
            ("bytes_in", "Bytes received on WebSocket connections", s.bytes_in),
            ("messages_out", "Messages queued to clients (one per recipient)", s.messages_out),
            ("bytes_out", "Bytes queued to clients", s.bytes_out),
            ("rate_limit_drops", "Client messages dropped by a rate limit", s.rate_limit_drops),
            ("handler_errors", "Room handlers that raised", s.handler_errors),
            ("handshakes", "WebSocket handshakes accepted", s.handshakes),
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


def make_registry(stats: Stats, gauges: Callable[[], dict[str, int]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RelayCollector(stats, gauges))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
