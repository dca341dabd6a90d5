"""`diemcau bench media`: a small real run (server, publishers, decoding and load-only subscribers in
their own processes) and the pure helpers it counts with.

Timings are printed by the benchmark, never asserted: the machine is shared. What is asserted is
what must hold on any machine: every subscriber joined and got the program, frames were decoded,
the floor switches were measured, and the server created no decoder and no encoder.
"""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest
from typer.testing import CliRunner

from app.benchmarks.media import TARGETS, BenchError, MediaOptions, check_options, tree_cpu_seconds
from app.benchmarks.media_procs import StreamCount
from app.cli import cli

KEYS = {
    "subscribers",
    "server_cpu_pct",
    "cpu_per_subscriber_pct",
    "us_per_packet",
    "fps_min",
    "encoders_created",
    "decoders_created",
    "join_to_first_frame_p50_ms",
    "join_to_first_frame_p95_ms",
    "floor_switch_audio_p95_ms",
    "floor_switch_video_p95_ms",
    "machine",
    "targets",
    "pass",
    "command",
}


def test_small_run_forwards_without_codecs(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DIEMCAU_"):
            monkeypatch.delenv(key)
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "media",
            "--subscribers",
            "2",
            "--decoding",
            "1",
            "--seconds",
            "2",
            "--switches",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data.keys() >= KEYS
    assert data["subscribers"] == 2
    assert data["joined"] == 2, data["notes"]
    assert (data["decoding"], data["load_only"]) == (1, 1)
    # The point of the forwarder: nothing decoded or encoded in the server's process.
    assert data["decoders_created"] == 0
    assert data["encoders_created"] == 0
    assert data["pass"]["codecs_created"] is True
    assert data["program_video_codec"] == "video/VP8"
    assert data["forwarded_packets"] > 0
    assert len(data["fps"]) == 1
    assert data["fps_min"] > 0  # frames were decoded (how many is the machine's business)
    assert data["load_only_video_pps_min"] > 0
    assert len(data["floor_switches"]) == 2
    assert [s["to"] for s in data["floor_switches"]] == ["pointA", "pointB"]
    assert data["floor_switch_missed"] == {"audio": 0, "video": 0}
    assert data["floor_switch_video_p95_ms"] is not None
    assert data["floor_switch_audio_p95_ms"] is not None
    assert data["targets"] == TARGETS
    assert data["machine"]["cores"] >= 1
    assert data["command"].startswith("diemcau bench media --subscribers 2 --decoding 1")
    assert multiprocessing.active_children() == []


def test_stream_count_extends_sequence_numbers_and_counts_loss() -> None:
    stream = StreamCount()
    for seq in (65534, 65535, 0, 2, 1, 5):  # wraps, one reordered, 3 and 4 missing
        stream.add(seq, 10.0)
    assert stream.packets == 6
    assert stream.highest == 65536 + 5
    assert stream.lost() == 2
    assert stream.first_at == 10.0


def test_stream_count_between_uses_whole_buckets() -> None:
    stream = StreamCount()
    for i in range(30):
        stream.add(i, 100.0 + i * 0.1)  # 10 packets per second for 3 s
    assert stream.between(100.0, 101.0) == 10
    assert stream.between(101.0, 103.0) == 20
    assert stream.between(200.0, 201.0) == 0


def test_tree_cpu_counts_this_process() -> None:
    assert tree_cpu_seconds(os.getpid()) > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (MediaOptions(subscribers=0), "--subscribers"),
        (MediaOptions(subscribers=2, codec="AV1"), "--codec"),
        (MediaOptions(subscribers=2, decoding=-1), "--decoding"),
    ],
)
def test_options_are_checked(options: MediaOptions, message: str) -> None:
    with pytest.raises(BenchError, match=message):
        check_options(options)


def test_load_processes_follow_the_load_only_count() -> None:
    assert MediaOptions(subscribers=2).load_process_count == 0
    assert MediaOptions(subscribers=10).load_process_count == 1
    assert MediaOptions(subscribers=82).load_process_count == 2
    assert MediaOptions(subscribers=1000).load_process_count == 4
    assert MediaOptions(subscribers=10, load_processes=3).load_process_count == 3
