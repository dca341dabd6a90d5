"""`diemcau bench growth`: the signaling benchmark at growing sizes, a table and a plot.

A small real run (20 and 40 points) writes both files; the pure parts (ratios, the table) are
checked against a fabricated run, so that what the files say is what was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.benchmarks.growth import (
    BenchError,
    GrowthOptions,
    GrowthResult,
    SizeRow,
    check_options,
    markdown,
    plot,
    ratios,
)
from app.cli import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def row(points: int, scale: float) -> SizeRow:
    return SizeRow(
        points=points,
        joined=points,
        all_joined_s=points / 500,
        join_p50_ms=5 * scale,
        join_p99_ms=20 * scale,
        fanout_p50_ms=2 * scale,
        fanout_p99_ms=4 * scale,
        server_fanout_mean_ms=1 * scale,
        rss_joined_mib=100 + points * 0.04,
        rss_per_point_kib=40.0,
        server_cpu_join_s=points * 0.002,
        cpu_per_join_ms=2.0,
        cpu_per_message_us=9.0,
        loop_lag_p99_ms=None,
        other_load_cores=0.1,
    )


def fabricated() -> GrowthResult:
    rows = [row(100, 1), row(526, 2), row(3321, 10)]
    return GrowthResult(
        rows=rows,
        ratios=ratios(rows),
        machine={"cores": 2, "cpu": "Xeon", "python": "3.11.7"},
        command="diemcau bench growth --sizes 100,526,3321",
        argv=[],
        measured_at="2026-12-03 17:30 UTC",
        wall_s=300,
    )


def test_ratios_are_over_the_smallest_size() -> None:
    result = fabricated()
    assert result.ratios["100"]["join_p99_ms"] == 1.0
    assert result.ratios["3321"]["points"] == 33.21
    assert result.ratios["3321"]["join_p99_ms"] == 10.0
    assert result.ratios["3321"]["rss_per_point_kib"] == 1.0
    assert result.ratios["3321"]["server_cpu_join_s"] == 33.21


def test_the_table_has_a_row_per_size_and_links_the_plot(tmp_path: Path) -> None:
    text = markdown(fabricated())
    assert "![join time, fan-out time, memory and CPU against points](growth.png)" in text
    assert text.count("\n| 3,321 |") == 2
    assert "| 526 | 526 | 1.1 s | 10.0 / 40.0 ms |" in text
    assert "`diemcau bench growth --sizes 100,526,3321`" in text
    path = tmp_path / "growth.png"
    plot(fabricated(), path)
    assert path.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("sizes", [(100,), (526, 100), (1, 100), (100, 4000), (100, 100)])
def test_sizes_must_grow_within_the_reference_file(sizes: tuple[int, ...]) -> None:
    with pytest.raises(BenchError):
        check_options(GrowthOptions(sizes=sizes))


def test_a_small_real_run_writes_the_table_and_the_plot(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "bench",
            "growth",
            "--sizes",
            "20,40",
            "--events",
            "3",
            "--out-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert [r["points"] for r in report["rows"]] == [20, 40]
    for measured in report["rows"]:
        assert measured["joined"] == measured["points"]
        assert measured["join_p99_ms"] > 0
        assert measured["fanout_p99_ms"] > 0
        assert measured["rss_joined_mib"] > 20
    assert (tmp_path / "growth.png").read_bytes().startswith(PNG_MAGIC)
    table = (tmp_path / "growth.md").read_text(encoding="utf-8")
    assert "| 20 | 20 |" in table
    assert "| 40 | 40 |" in table
