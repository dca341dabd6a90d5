"""`diemcau bench floor`: a small real run (server, point clients, media points, the hall and the
moderator in their own processes) and the pure helpers that plan the passes.

Timings are printed by the benchmark, never asserted: the machine is shared. What is asserted is
what must hold on any machine: every point joined, every pass was accepted and reached every point,
and the hall decoded the first frame of every new speaker.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os

import pytest
from typer.testing import CliRunner

from app.benchmarks.floor import (
    TARGETS,
    BenchError,
    FloorOptions,
    check_options,
    media_height,
    media_indices,
    p95_with_misses,
    pass_targets,
)
from app.benchmarks.floor_procs import FLOOR_EVENT, floor_latencies
from app.benchmarks.signaling_procs import Client
from app.cli import cli

KEYS = {
    "points",
    "joined",
    "media_points",
    "passes",
    "grant_to_event_p50_ms",
    "grant_to_event_p99_ms",
    "ack_p50_ms",
    "ack_p99_ms",
    "grant_to_first_frame_p95_ms",
    "machine",
    "targets",
    "pass",
    "command",
}


def test_small_run_with_media_points(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DIEMCAU_"):
            monkeypatch.delenv(key)
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "floor",
            "--points",
            "6",
            "--passes",
            "4",
            "--media-points",
            "2",
            "--pass-interval-ms",
            "1500",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data.keys() >= KEYS
    assert (data["points"], data["joined"]) == (6, 6), data["notes"]
    assert (data["media_points"], data["media_published"]) == (2, 2), data["join_failures"]
    assert (data["passes"], data["passes_accepted"]) == (4, 4), data["pass_outcomes"]
    # Every pass reached every point, the moderator got every ack.
    assert data["events_received"] == data["events_expected"] == 4 * 6
    assert data["grant_to_event_p50_ms"] > 0
    assert data["grant_to_event_p99_ms"] >= data["grant_to_event_p50_ms"]
    assert data["ack_p50_ms"] > 0
    assert data["event_bytes"] > 0
    # The passes alternate between the two media points; the hall saw each new speaker.
    codes = [p["point_code"] for p in data["per_pass"]]
    assert codes[0] != codes[1]
    assert codes[0::2] == [codes[0]] * 2
    assert data["first_frame_missed"] == 0, data["per_pass"]
    assert all(ms is not None and ms > 0 for ms in data["first_frame_ms"])
    assert data["grant_to_first_frame_p95_ms"] is not None
    assert set(data["hall_sizes_seen"]) == {"128x96", "128x98"}
    assert data["closed_during_passes"] == {}
    assert data["targets"] == TARGETS
    assert set(data["pass"]) == set(TARGETS)
    assert data["machine"]["cores"] >= 1
    assert data["command"].startswith("diemcau bench floor --points 6 --passes 4 --media-points 2")
    assert multiprocessing.active_children() == []


def test_passes_never_call_on_the_holder_again() -> None:
    for points, passes in ((2, 5), (3, 100), (526, 100), (3321, 100), (50, 1)):
        targets = pass_targets(points, [], passes)
        assert len(targets) == passes
        assert all(0 <= t < points for t in targets)
        assert all(a != b for a, b in itertools.pairwise(targets))
    media = media_indices(526, 10)
    targets = pass_targets(526, media, 25)
    assert set(targets) == set(media)
    assert all(a != b for a, b in itertools.pairwise(targets))


def test_media_points_are_spread_and_told_apart_by_size() -> None:
    media = media_indices(3321, 50)
    assert len(set(media)) == 50
    assert media[0] == 0
    assert max(media) < 3321
    assert media_indices(10, 0) == []
    heights = [media_height(i) for i in range(100)]
    assert len(set(heights)) == 100
    assert all(h % 2 == 0 for h in heights)  # yuv420p


def test_latencies_count_each_pass_once_and_the_missing() -> None:
    sent = {7: 100.0, 8: 101.0}
    one = Client(index=0)
    one.events = [
        (FLOOR_EVENT, 7, 100.05, "", 0),
        ("session.updated", 8, 101.5, "", 0),  # not a pass
        (FLOOR_EVENT, 8, 101.02, "", 0),
        (FLOOR_EVENT, 8, 101.9, "", 0),  # a replay of the same seq counts once
    ]
    other = Client(index=1)
    other.events = [(FLOOR_EVENT, 8, 101.1, "", 0)]
    latencies, missing = floor_latencies([one, other], sent)
    assert sorted((seq, round(ms)) for seq, ms in latencies) == [(7, 50), (8, 20), (8, 100)]
    assert missing == 1


def test_a_missed_first_frame_counts_as_infinitely_late() -> None:
    assert p95_with_misses([100.0] * 19 + [None]) == 100.0
    assert p95_with_misses([100.0] * 18 + [None, None]) is None
    assert p95_with_misses([]) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (FloorOptions(points=1), "--points"),
        (FloorOptions(points=3322), "--points"),
        (FloorOptions(points=10, passes=0), "--passes"),
        (FloorOptions(points=10, media_points=1), "--media-points"),
        (FloorOptions(points=10, media_points=11), "--media-points"),
        (FloorOptions(points=10, codec="AV1"), "--codec"),
    ],
)
def test_options_are_checked(options: FloorOptions, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        check_options(options)


def test_the_pass_interval_leaves_time_for_the_first_frame() -> None:
    assert FloorOptions(points=10).interval_ms == 500
    assert FloorOptions(points=10, media_points=2).interval_ms == 2000
    assert FloorOptions(points=10, media_points=2, pass_interval_ms=700).interval_ms == 700
