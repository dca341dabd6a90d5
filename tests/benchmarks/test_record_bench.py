"""`diemcau bench all`: every benchmark at small sizes in one real run, and the dated section it
appends to the record. Verdicts at these sizes are whatever they are (the targets are stated for
3,321 points); asserted is that every part ran and reported each of its targets, and that the
section names the machine, every command and every target."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.benchmarks import floor, media, rollcall, signaling
from app.cli import cli


def test_all_benchmarks_in_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DIEMCAU_"):
            monkeypatch.delenv(key)
    document = tmp_path / "benchmarks.md"
    document.write_text("# Benchmarks\n", encoding="utf-8")
    args = ["bench", "all", "--points", "8", "--subscribers", "3", "--media-points", "2"]
    args += ["--passes", "2", "--import-repeats", "1", "--document", str(document), "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    parts = {part["name"]: part for part in data["parts"]}
    assert list(parts) == ["point import", "signaling", "media plane", "floor control", "roll-call"]
    assert all(part["error"] is None for part in parts.values()), parts
    expected = {
        "signaling": signaling.TARGETS,
        "media plane": media.TARGETS,
        "floor control": floor.TARGETS,
        "roll-call": rollcall.TARGETS,
    }
    for name, targets in expected.items():
        measured = {m[0]: m for m in parts[name]["measures"]}
        assert set(measured) == set(targets), name
        assert all(m[1] is not None for m in measured.values()), (name, measured)
    assert parts["point import"]["measures"][0][3] is True  # 3,321 rows in under 5 s
    assert parts["roll-call"]["measures"][2][1:] == [0, 0, True]  # nothing lost

    text = document.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n")
    assert "## Record of " in text
    assert f"`{data['command']}`" in text
    for part in data["parts"]:
        assert f".venv/bin/{part['command']}" in text
    assert "| roll-call | `ack_p99_ms` |" in text
    assert "2 cores" in text or f"{data['machine']['cores']} cores" in text
    assert multiprocessing.active_children() == []
