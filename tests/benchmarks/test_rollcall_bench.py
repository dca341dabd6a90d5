"""`diemcau bench rollcall`: a small real run, and the tally-lag arithmetic.

Timings are printed, never asserted (the machine is shared). Asserted is what must hold anywhere:
every point acknowledged, nothing lost, the operator's last tally equal to what the points sent,
one stored row per acknowledged answer and an intact database file.
"""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest
from typer.testing import CliRunner

from app.benchmarks.rollcall import TARGETS, tally_lags
from app.cli import cli


def test_small_run(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DIEMCAU_"):
            monkeypatch.delenv(key)
    result = CliRunner().invoke(
        cli, ["bench", "rollcall", "--points", "30", "--window-s", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["points"], data["joined"], data["acked"], data["lost"]) == (30, 30, 30, 0)
    assert data["errors"] == {}
    assert data["ack_p50_ms"] > 0
    assert data["ack_p99_ms"] >= data["ack_p50_ms"]
    assert data["tally_lag_p99_ms"] is not None
    assert data["tally_consistent"] is True
    assert data["final_counts"]["present"] == 30
    assert data["final_counts"]["headcount"] == data["headcount_sent"]
    assert (data["db_rows"], data["integrity_check"]) == (30, "ok")
    assert data["targets"] == TARGETS
    assert set(data["passed"]) == set(TARGETS)
    assert data["command"] == "diemcau bench rollcall --points 30 --window-s 1 --processes 2"
    assert multiprocessing.active_children() == []


def test_tally_lag_is_to_the_first_tally_covering_the_event() -> None:
    sent = {"00001": 10.0, "00004": 10.5, "00006": 11.0}
    seqs = {"00001": 5, "00004": 6, "00006": 9}
    tallies = [
        (10.2, 5, {}),  # covers 00001
        (10.9, 4, {}),  # an older tally arriving late covers nothing new
        (11.1, 7, {}),  # covers 00004
        (12.0, 9, {}),  # covers 00006
        (12.5, 12, {}),
    ]
    lags = tally_lags(sent, seqs, tallies)
    assert lags == pytest.approx([0.2, 0.6, 1.0])


def test_points_without_an_event_or_a_tally_are_left_out() -> None:
    assert tally_lags({"a": 1.0, "b": 1.0}, {"a": 3, "c": 2}, [(2.0, 2, {})]) == []
    assert tally_lags({"a": 1.0}, {"a": 3}, [(1.5, 2, {}), (4.0, 3, {})]) == [3.0]
