"""`diemcau bench signaling`: a small real run (server, baseline and client processes) and its helpers.

Timings are printed by the benchmark, never asserted: the machine is shared.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import tempfile
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from typer.testing import CliRunner

from app.benchmarks.signaling import (
    TARGETS,
    bucket_quantile,
    parse_metrics,
    percentile,
)
from app.cli import cli

KEYS = {
    "points",
    "joined",
    "all_joined_s",
    "join_p50_ms",
    "join_p99_ms",
    "fanout_p50_ms",
    "fanout_p99_ms",
    "fanout_received",
    "fanout_expected",
    "server_fanout_mean_ms",
    "server_fanout_p99_ms",
    "baseline_fanout_p50_ms",
    "baseline_fanout_p99_ms",
    "baseline_received",
    "baseline_expected",
    "rss_per_point_kib",
    "loop_lag_p99_ms",
    "server_gc",
    "targets",
    "pass",
    "passed_all",
    "machine",
    "command",
}


def _leftovers() -> set[str]:
    return {
        name
        for name in os.listdir(tempfile.gettempdir())
        if name.startswith("diemcau-bench-signaling-")
    }


def test_small_run_reports_every_measure_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DIEMCAU_"):
            monkeypatch.delenv(key)
    before = _leftovers()
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "signaling",
            "--points",
            "20",
            "--events",
            "3",
            "--event-interval-ms",
            "100",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    print(json.dumps({k: v for k, v in data.items() if k != "machine"}, indent=1))

    assert set(data) >= KEYS
    assert data["points"] == 20
    assert data["joined"] == data["points"]
    assert data["join_failures"] == {}
    assert data["source_file"].startswith("vietnam-communes-2025.csv")
    # Every point received every event, from diemcau and from the baseline alike.
    assert data["fanout_expected"] == 3 * 20
    assert data["fanout_received"] == data["fanout_expected"]
    assert data["baseline_connections"] == 20
    assert data["baseline_received"] == data["baseline_expected"] == 3 * 20
    assert data["server_point_connections"] == 20
    assert data["event_bytes"] > 100
    for key in ("join_p50_ms", "join_p99_ms", "fanout_p99_ms", "baseline_fanout_p99_ms"):
        assert isinstance(data[key], float)
        assert data[key] > 0
    assert data["join_p50_ms"] <= data["join_p99_ms"]
    assert data["rss_joined_kib"] >= data["rss_before_kib"] > 0
    assert set(data["server_gc"]) == {"join", "fanout"}
    assert set(data["targets"]) == set(TARGETS) == set(data["pass"])
    assert all(isinstance(v, bool) for v in data["pass"].values())
    assert data["passed_all"] == all(data["pass"].values())
    assert data["machine"]["cores"] == os.cpu_count()
    assert "websockets" in data["machine"]["versions"]
    assert data["command"].startswith("diemcau bench signaling --points 20 ")

    assert multiprocessing.active_children() == []
    assert _leftovers() <= before


@pytest.mark.parametrize("points", ["0", "3322"])
def test_points_out_of_range_are_refused(points: str) -> None:
    result = CliRunner().invoke(cli, ["bench", "signaling", "--points", points])
    assert result.exit_code == 2
    assert multiprocessing.active_children() == []


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(list(reversed(values)), 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


def test_metrics_parse_and_bucket_quantile() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("x_seconds", "x", buckets=(0.01, 0.1, 1.0), registry=registry)
    for value in [0.005] * 50 + [0.05] * 49 + [0.5]:
        histogram.observe(value)
    scrape = parse_metrics(generate_latest(registry).decode())
    parsed = scrape.histograms["x_seconds"]
    assert parsed.count == 100
    assert parsed.buckets == [(0.01, 50.0), (0.1, 99.0), (1.0, 100.0), (math.inf, 100.0)]
    assert math.isclose(parsed.total, 0.005 * 50 + 0.05 * 49 + 0.5)
    # Interpolated inside the bucket as Prometheus' histogram_quantile does.
    assert bucket_quantile(0.5, parsed.buckets) == pytest.approx(0.01)
    assert bucket_quantile(0.99, parsed.buckets) == pytest.approx(0.1)
    assert bucket_quantile(0.995, parsed.buckets) == pytest.approx(0.55)
    assert parsed.highest_bucket() == 1.0
    # Differencing two scrapes leaves only what was observed in between.
    histogram.observe(2.0)
    later = parse_metrics(generate_latest(registry).decode()).histograms["x_seconds"]
    delta = later.minus(parsed)
    assert delta.count == 1
    assert delta.highest_bucket() == math.inf
    assert bucket_quantile(0.99, delta.buckets) == 1.0
    assert bucket_quantile(0.5, []) is None


def test_hanoi_file_is_used_for_526_points(tmp_path: Path) -> None:
    from app.benchmarks.signaling import HANOI_CSV, NATIONAL_CSV, SignalingOptions, _Bench

    assert _Bench(SignalingOptions(points=526), tmp_path).source()[0] == HANOI_CSV
    path, data = _Bench(SignalingOptions(points=7), tmp_path).source()
    assert path == NATIONAL_CSV
    assert data.decode().count("\n") == 8  # header + 7 rows
