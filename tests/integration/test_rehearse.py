"""`diemcau rehearse` end to end on a small file: the real server, hall, moderator and rooms.

Shares of drops, hands and silence are set high so that every behaviour happens in a small run;
the report must account for each of them, and the checks it makes must be able to fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.rehearsal.script import (
    FloorStep,
    RehearsalError,
    RehearseOptions,
    _floor_steps,
    _redact,
    run,
)
from app.simulate.plan import Behaviour, make_plan
from tests.conftest import HANOI_CSV


def test_a_small_rehearsal_passes_and_accounts_for_every_room(tmp_path: Path) -> None:
    behaviour = Behaviour(drop_share=0.15, hand_share=0.15, silent_share=0.1, seed=3)
    options = RehearseOptions(
        points=HANOI_CSV,
        limit=40,
        media_points=3,
        passes=5,
        pass_interval_s=3,
        join_spread_s=2,
        behaviour=Behaviour(**{**behaviour.__dict__, "answer_delay_s": (0.5, 2.0)}),
    )
    lines: list[str] = []
    report = run(options, progress=lines.append)

    plan = make_plan(
        [(f"{i}", "x") for i in range(40)],
        Behaviour(**{**behaviour.__dict__, "media_points": 3, "join_spread_s": 2}),
    )
    silent = sum(p.silent for p in plan)
    assert report.passed_all, report.errors
    assert report.errors == []
    assert report.server_errors == []
    rooms = report.rooms
    assert (rooms.rooms, rooms.joined, rooms.ended) == (40, 40, 40)
    assert rooms.drops > 0
    assert rooms.resumed == rooms.drops
    assert rooms.hands > 0
    assert rooms.hands_acked == rooms.hands
    assert [r.round for r in report.rollcalls] == [1, 2]
    for rc in report.rollcalls:
        assert (rc.expected, rc.answered, rc.counted, rc.absent) == (
            40 - silent,
            40 - silent,
            40 - silent,
            silent,
        )
        assert rc.mismatched == 0
        assert rc.complete_s is not None
        # The server's own commit time is read from its histogram, bounded by the round's acks.
        assert rc.server_commit_p99_ms is not None
    assert len(report.floor) == 5
    assert report.floor_switches_seen == 5
    for step in report.floor:
        assert step.outcome == "ack"
        assert step.event_reached == 40
        assert step.first_frame_ms is not None
        assert step.first_frame_ms < options.pass_interval_s * 1000
    assert rooms.media_receiving == 3
    assert (rooms.program_frames_min or 0) > 0
    assert report.hall_frames > 0
    assert report.server_cpu_s > 0
    assert report.server_peak_rss_mib > 50
    assert report.clients_loop_lag_p99_ms is not None
    assert report.server_loop_lag_p99_ms is not None
    assert report.floor_fanout_max_ms is not None
    assert report.floor_server_loop_lag_p99_ms is not None
    assert any("roll-call 1 closed" in line for line in lines)


def test_a_rehearsal_on_the_configured_postgresql(postgres_url: str) -> None:
    options = RehearseOptions(
        points=HANOI_CSV,
        limit=25,
        media_points=2,
        passes=2,
        pass_interval_s=3,
        join_spread_s=1,
        database_url=postgres_url,
        behaviour=Behaviour(answer_delay_s=(0.5, 1.5), drop_share=0.1, seed=5),
    )
    report = run(options)
    assert report.passed_all, report.errors
    assert report.database.startswith("postgresql")
    assert report.rooms.joined == 25
    assert report.floor_switches_seen == 2
    assert "--database-url <postgresql>" in report.command


def test_the_command_prints_one_json_object_and_fails_on_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name\n00001,Phường Phúc Xá\n00001,Trùng mã\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["rehearse", "--points", str(bad), "--json"])
    assert result.exit_code == 1
    assert "line 3" in result.output

    result = CliRunner().invoke(
        cli,
        [
            "rehearse",
            "--points",
            str(HANOI_CSV),
            "--limit",
            "12",
            "--media-points",
            "0",
            "--passes",
            "2",
            "--pass-interval-s",
            "2",
            "--join-spread-s",
            "1",
            "--drop-share",
            "0",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["points"] == 12
    assert report["passed_all"] is True
    assert report["rooms"]["joined"] == 12
    assert [step["outcome"] for step in report["floor"]] == ["ack", "ack"]


def test_options_that_cannot_rehearse_are_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(RehearsalError, match="at least 2"):
        run(RehearseOptions(points=HANOI_CSV, limit=1))
    with pytest.raises(RehearsalError, match="media_points"):
        run(RehearseOptions(points=HANOI_CSV, limit=5, media_points=6))
    with pytest.raises(RehearsalError, match="cannot read"):
        run(RehearseOptions(points=tmp_path / "none.csv"))


def test_floor_steps_keep_replayed_events_out_of_the_latencies() -> None:
    passes = [
        {"code": "00001", "outcome": "ack", "ack_ms": 5.0, "seq": 10, "sent_wall": 100.0},
        {
            "code": "00004",
            "outcome": "error invalid_transition",
            "ack_ms": 4.0,
            "seq": None,
            "sent_wall": 108.0,
        },
    ]
    rooms = [
        {"call_on": [[10, 100.010, False]]},
        {"call_on": [[10, 100.030, False]]},
        {"call_on": [[10, 103.0, True]]},
    ]
    first, second = _floor_steps(passes, rooms, [150.0])
    assert first == FloorStep("00001", "ack", 5.0, 10.0, 30.0, 3, 1, 150.0)
    assert (second.event_reached, second.first_frame_ms, second.event_p99_ms) == (0, None, None)


def test_database_passwords_never_reach_the_report() -> None:
    assert (
        _redact("postgresql+asyncpg://diemcau:s3cret@db:5432/x")
        == "postgresql+asyncpg://diemcau@db:5432/x"
    )
    assert _redact("sqlite+aiosqlite:///tmp/x.sqlite3") == "sqlite+aiosqlite:///tmp/x.sqlite3"
