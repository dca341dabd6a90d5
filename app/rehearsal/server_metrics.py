"""The server's own view of a rehearsal, read from its `/metrics` histograms.

Room processes stamp sends and acks on a loop they share with thousands of other rooms, so their
latencies include their own congestion. The server's histograms say how much of a wait was the
server's: scraped before and after a step, the difference is that step's distribution. Prometheus
buckets give bounds, not exact values: a quantile is reported as the upper bound of its bucket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

Buckets = dict[float, float]
"""A histogram's cumulative counts by upper bound (`le`), +Inf included."""


def histograms(text: str) -> dict[str, Buckets]:
    """Every histogram in a Prometheus text exposition, by name (labels summed over)."""
    found: dict[str, Buckets] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        buckets = found.setdefault(family.name, {})
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return found


def between(before: Mapping[float, float], after: Mapping[float, float]) -> Buckets:
    """What was observed between two scrapes of one histogram."""
    return {bound: count - before.get(bound, 0.0) for bound, count in after.items()}


def quantile_bound(buckets: Mapping[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile; None if nothing was observed, and
    +inf when it lies past the last finite bound."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    rank = q * total
    for bound in sorted(buckets):
        if buckets[bound] >= rank:
            return bound
    return math.inf


def bound_ms(buckets: Mapping[float, float], q: float) -> float | None:
    """`quantile_bound` in milliseconds, JSON-safe (past the last bound is None)."""
    bound = quantile_bound(buckets, q)
    if bound is None or math.isinf(bound):
        return None
    return round(bound * 1000, 1)
