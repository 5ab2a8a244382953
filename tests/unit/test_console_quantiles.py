"""The console's percentiles from Prometheus histograms, as histogram_quantile computes them."""

from __future__ import annotations

import pytest

from relay.console import histogram_quantile

INF = float("inf")


def test_interpolates_within_the_bucket() -> None:
    buckets = [(1.0, 0.0), (2.0, 10.0), (5.0, 20.0), (INF, 20.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(2.0)
    assert histogram_quantile(0.25, buckets) == pytest.approx(1.5)
    assert histogram_quantile(0.75, buckets) == pytest.approx(3.5)


def test_edges() -> None:
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.99, [(1.0, 1.0), (INF, 10.0)]) == 1.0  # in +Inf: the last bound
    assert histogram_quantile(0.5, [(0.5, 4.0), (INF, 4.0)]) == pytest.approx(0.25)
