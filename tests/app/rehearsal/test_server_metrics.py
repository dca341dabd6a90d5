"""Reading the server's histograms: a step's distribution from two scrapes, quantiles as bounds."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from app.rehearsal.server_metrics import between, bound_ms, histograms, quantile_bound


def exposition(*observations: float, labelled: bool = False) -> str:
    registry = CollectorRegistry()
    labels = ["kind"] if labelled else []
    histogram = Histogram(
        "demo_seconds", "demo", labels, buckets=(0.01, 0.1, 1.0), registry=registry
    )
    Counter("demo_total", "not a histogram", registry=registry).inc()
    for k, value in enumerate(observations):
        (histogram.labels("a" if k % 2 else "b") if labelled else histogram).observe(value)
    return generate_latest(registry).decode()


def test_histograms_are_read_by_name_and_counters_are_left_out() -> None:
    found = histograms(exposition(0.005, 0.05, 0.5, 5.0))
    assert list(found) == ["demo_seconds"]
    assert found["demo_seconds"] == {0.01: 1, 0.1: 2, 1.0: 3, math.inf: 4}


def test_labelled_series_are_summed() -> None:
    found = histograms(exposition(0.005, 0.005, 0.5, labelled=True))
    assert found["demo_seconds"] == {0.01: 2, 0.1: 2, 1.0: 3, math.inf: 3}


def test_between_two_scrapes_is_what_happened_in_between() -> None:
    before = histograms(exposition(0.005, 0.005))["demo_seconds"]
    after = histograms(exposition(0.005, 0.005, 0.5, 0.5, 0.05))["demo_seconds"]
    step = between(before, after)
    assert step == {0.01: 0, 0.1: 1, 1.0: 3, math.inf: 3}
    # Two of three in the (0.1, 1] bucket: the median and the 99th percentile are ≤ 1 s.
    assert quantile_bound(step, 0.5) == 1.0
    assert bound_ms(step, 0.99) == 1000.0
    assert quantile_bound(step, 0.3) == 0.1


def test_nothing_observed_and_past_the_last_bound() -> None:
    empty = histograms(exposition())["demo_seconds"]
    assert quantile_bound(empty, 0.99) is None
    assert bound_ms(empty, 0.99) is None
    slow = histograms(exposition(5.0, 7.0))["demo_seconds"]
    assert quantile_bound(slow, 0.99) == math.inf
    assert bound_ms(slow, 0.99) is None


def test_a_histogram_missing_before_counts_from_zero() -> None:
    after = histograms(exposition(0.05))["demo_seconds"]
    assert between({}, after) == after
