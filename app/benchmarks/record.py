"""`diemcau bench all`: every benchmark of issues 2–6 in one go, and a dated section of the record.

One after another (never two at once: they share the machine's two cores): the point import, the
signaling fan-out, the media plane, floor passes and the roll-call. Each keeps its own harness and
its own targets; this module only runs them with one set of sizes, collects each target's measured
value and verdict, and writes them as a section of docs/benchmarks.md with the machine, the versions
and the exact command of every part. A benchmark that fails to run is recorded as an error with its
message; the others still run.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from app.benchmarks import floor, media, point_import, rollcall, signaling
from app.benchmarks.signaling import NATIONAL_CSV, BenchError, machine_info

__all__ = ["BenchError", "RecordOptions", "RecordResult", "as_dict", "render", "run", "section"]


@dataclass(frozen=True)
class RecordOptions:
    points: int = 3321
    subscribers: int = 80
    media_points: int = 50
    passes: int = 100
    import_repeats: int = 3

    def command(self) -> str:
        return (
            f"diemcau bench all --points {self.points} --subscribers {self.subscribers} "
            f"--media-points {self.media_points} --passes {self.passes} "
            f"--import-repeats {self.import_repeats}"
        )


@dataclass
class Part:
    name: str
    command: str
    seconds: float
    error: str | None = None
    measures: list[tuple[str, float | None, float, bool]] = field(default_factory=list)
    """(target name, measured value, target, pass)"""

    @property
    def passed(self) -> bool:
        return self.error is None and all(ok for *_, ok in self.measures)


@dataclass
class RecordResult:
    started: str
    command: str
    parts: list[Part]
    machine: dict[str, Any]

    @property
    def passed_all(self) -> bool:
        return all(part.passed for part in self.parts)


def as_dict(result: RecordResult) -> dict[str, Any]:
    data = asdict(result)
    data["passed_all"] = result.passed_all
    for part, item in zip(result.parts, data["parts"], strict=True):
        item["passed"] = part.passed
    return data


def _derived(data: dict[str, Any], name: str) -> Any:
    """The two targets whose value is not a field of its own."""
    if name == "codecs_created":
        return int(data["encoders_created"]) + int(data["decoders_created"])
    if name == "fanout_p99_vs_baseline":
        ours, theirs = data.get("fanout_p99_ms"), data.get("baseline_fanout_p99_ms")
        return None if not ours or not theirs else round(ours / theirs, 2)
    return data.get(name)


def _measures(
    data: dict[str, Any], targets: dict[str, float]
) -> list[tuple[str, Any, float, bool]]:
    verdicts: dict[str, bool] = data.get("pass") or data.get("passed") or {}
    return [
        (name, _derived(data, name), target, bool(verdicts.get(name)))
        for name, target in targets.items()
    ]


def _timed(name: str, command: str, work: Callable[[], list[tuple[str, Any, float, bool]]]) -> Part:
    started = time.monotonic()
    try:
        measures = work()
    except BenchError as exc:
        return Part(name, command, round(time.monotonic() - started, 1), error=str(exc))
    return Part(name, command, round(time.monotonic() - started, 1), measures=measures)


def run(options: RecordOptions) -> RecordResult:
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts: list[Part] = []

    def import_part() -> list[tuple[str, Any, float, bool]]:
        result = point_import.run(
            NATIONAL_CSV, repeats=options.import_repeats, postgres_url=None, max_rows=100_000
        )
        return [("median_import_s", result.median_total_s, result.target_s, result.passed)]

    parts.append(
        _timed(
            "point import",
            f"diemcau bench import examples/{NATIONAL_CSV.name} --repeats {options.import_repeats}",
            import_part,
        )
    )
    sig = signaling.SignalingOptions(points=options.points)
    parts.append(
        _timed(
            "signaling",
            sig.command(),
            lambda: _measures(signaling.as_dict(signaling.run(sig)), signaling.TARGETS),
        )
    )
    med = media.MediaOptions(subscribers=options.subscribers)
    parts.append(
        _timed(
            "media plane",
            med.command(),
            lambda: _measures(media.as_dict(media.run(med)), media.TARGETS),
        )
    )
    flo = floor.FloorOptions(
        points=options.points, passes=options.passes, media_points=options.media_points
    )
    parts.append(
        _timed(
            "floor control",
            flo.command(),
            lambda: _measures(floor.as_dict(floor.run(flo)), floor.TARGETS),
        )
    )
    rc = rollcall.RollcallOptions(points=options.points)
    parts.append(
        _timed(
            "roll-call",
            rc.command(),
            lambda: _measures(rollcall.as_dict(rollcall.run(rc)), rollcall.TARGETS),
        )
    )
    return RecordResult(started, options.command(), parts, machine_info())


def _value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def section(result: RecordResult) -> str:
    """A dated markdown section: the machine, each part's command and its targets."""
    machine = result.machine
    versions = ", ".join(f"{k} {v}" for k, v in sorted(machine.get("versions", {}).items()))
    lines = [
        "",
        f"## Record of {result.started} (`{result.command}`)",
        "",
        f"Machine: {machine.get('cores')} cores ({machine.get('cpu')}), "
        f"{machine.get('memory_gib')} GiB, Python {machine.get('python')}; {versions}. "
        f"Load average at the end: {machine.get('load_average')}. "
        f"All targets met: **{'yes' if result.passed_all else 'no'}**.",
        "",
        "Commands, one after another:",
        "",
        "```sh",
        *(f".venv/bin/{part.command}" for part in result.parts),
        "```",
        "",
        "| benchmark | target | measured | target value | pass |",
        "| --- | --- | --- | --- | --- |",
    ]
    for part in result.parts:
        if part.error is not None:
            lines.append(f"| {part.name} | – | error: {part.error} | – | ✗ |")
            continue
        for name, value, target, ok in part.measures:
            lines.append(
                f"| {part.name} | `{name}` | {_value(value)} | {_value(target)} | "
                f"{'✓' if ok else '✗'} |"
            )
    lines.append("")
    return "\n".join(lines)


def write(result: RecordResult, document: Path) -> None:
    with document.open("a", encoding="utf-8") as out:
        out.write(section(result))


def render(result: RecordResult) -> Table:
    table = Table(title=f"bench all, {result.started}")
    for column in ("benchmark", "target", "measured", "target value", "pass"):
        table.add_column(column)
    for part in result.parts:
        if part.error is not None:
            table.add_row(part.name, "–", f"error: {part.error}", "–", "✗")
        for name, value, target, ok in part.measures:
            table.add_row(part.name, name, _value(value), _value(target), "✓" if ok else "✗")
    return table
