"""`diemcau bench janus`: our media plane and Janus VideoRoom side by side, a small real run.

Janus comes from Debian's package; without it this test is skipped, except under CI=true, where
a missing real peer fails the run. Timings are printed, never asserted: what must hold is that both
servers delivered the publisher's packets to every subscriber and a decoded picture to the decoding
one, and that the ratio is computed from what was measured.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.benchmarks.sfu import (
    BenchError,
    SfuOptions,
    check_options,
    per_subscriber,
    ratio_of,
    split,
)
from app.benchmarks.sfu_janus import JANUS, render_config
from app.cli import cli
from tests.conftest import unavailable


def test_both_servers_deliver_to_the_same_subscribers_and_the_ratio_follows() -> None:
    if not Path(JANUS).exists():
        unavailable(f"{JANUS} is missing (apt-get install janus)")
    if shutil.which("gcc") is None:
        unavailable("gcc is missing (the Janus loopback shim is built with it)")
    result = CliRunner().invoke(
        cli,
        ["bench", "janus", "--subscribers", "3", "--window-s", "3", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    runs = {r["server"]: r for r in report["runs"]}
    assert set(runs) == {"diemcau", "janus"}
    for run in runs.values():
        assert run["connected"] == 3
        assert run["failures"] == []
        assert run["delivered_pct_min"] >= 90, run
        assert run["video_pps_p50"] > 100, run
        assert run["decoded_fps"] > 20, run
        assert run["loaded_cores"] > 0
    expected = ratio_of(
        runs["diemcau"]["subscribers_per_core"], runs["janus"]["subscribers_per_core"]
    )
    assert report["ratios"] == {"3": expected}
    assert report["machine"]["versions"]["janus"].startswith("1.")
    assert report["command"].startswith("diemcau bench janus --subscribers 3")


def test_cost_per_subscriber_is_the_marginal_cost() -> None:
    assert per_subscriber(0.02, 0.27, 100) == (0.25, 400.0)
    assert per_subscriber(0.05, 0.05, 10) == (None, None)
    assert per_subscriber(0.05, 0.04, 10) == (None, None)
    assert per_subscriber(0.0, 1.0, 0) == (None, None)
    assert ratio_of(400.0, 640.0) == 0.62
    assert ratio_of(None, 640.0) is None
    assert ratio_of(400.0, 0.0) is None


def test_subscribers_are_dealt_over_processes() -> None:
    names = [f"s{i}" for i in range(5)]
    assert split(names, 2) == [["s0", "s2", "s4"], ["s1", "s3"]]
    assert split(names[:1], 3) == [["s0"]]


@pytest.mark.parametrize(
    "options",
    [
        SfuOptions(subscribers=()),
        SfuOptions(subscribers=(0,)),
        SfuOptions(subscribers=(501,)),
        SfuOptions(subscribers=(2,), decoding=3),
        SfuOptions(window_s=1),
        SfuOptions(processes=0),
        SfuOptions(event_loops=0),
    ],
)
def test_impossible_options_are_refused(options: SfuOptions) -> None:
    with pytest.raises(BenchError):
        check_options(options)


def test_janus_gets_only_its_websocket_transport_and_the_videoroom(tmp_path: Path) -> None:
    if not Path(JANUS).exists():
        unavailable(f"{JANUS} is missing (apt-get install janus)")
    render_config(tmp_path, 8188, 2, (20000, 20100))
    config = (tmp_path / "janus.jcfg").read_text()
    assert "event_loops = 2" in config
    assert 'ice_enforce_list = "lo"' in config
    assert 'rtp_port_range = "20000-20100"' in config
    assert 'ws_ip = "127.0.0.1"' in (tmp_path / "janus.transport.websockets.jcfg").read_text()
    assert [p.name for p in (tmp_path / "plugins").iterdir()] == ["libjanus_videoroom.so"]
    assert [p.name for p in (tmp_path / "transports").iterdir()] == ["libjanus_websockets.so"]


def test_the_command_refuses_a_bad_load_list() -> None:
    result = CliRunner().invoke(cli, ["bench", "janus", "--subscribers", "fifty"])
    assert result.exit_code != 0
    assert "--subscribers" in result.output
