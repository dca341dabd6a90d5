"""How the server's costs grow with the number of points: 100, 526, 3,321 (the issue's sizes).

The signaling benchmark runs once per size, one after the other, with the same arrival pattern
(`batch` points every `batch_interval_ms`, so that a bigger session is a longer storm at the same
rate, not a denser one); from each run: join time, fan-out time (an event to every point), the
server's memory after the joins and its CPU for the joins and per delivered message. Ratios to the
smallest size show whether growth is linear. The run writes `growth.md` (the table) and
`growth.png` (the plot) into `out_dir`; a benchmark record without its picture is half a record.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from app.benchmarks import signaling
from app.benchmarks.signaling import BenchError, SignalingOptions, SignalingResult, machine_info

__all__ = ["BenchError", "GrowthOptions", "GrowthResult", "as_dict", "render", "run", "write"]


@dataclass(frozen=True)
class GrowthOptions:
    sizes: tuple[int, ...] = (100, 526, 3321)
    processes: int = 2
    events: int = 20
    batch: int = 50
    batch_interval_ms: int = 100
    out_dir: Path = Path("docs")

    def command(self) -> str:
        return (
            f"diemcau bench growth --sizes {','.join(map(str, self.sizes))} "
            f"--processes {self.processes} --events {self.events} --batch {self.batch} "
            f"--batch-interval-ms {self.batch_interval_ms} --out-dir {self.out_dir}"
        )


@dataclass
class SizeRow:
    points: int
    joined: int
    all_joined_s: float | None
    join_p50_ms: float | None
    join_p99_ms: float | None
    fanout_p50_ms: float | None
    fanout_p99_ms: float | None
    server_fanout_mean_ms: float | None
    rss_joined_mib: float
    rss_per_point_kib: float
    server_cpu_join_s: float
    cpu_per_join_ms: float
    cpu_per_message_us: float
    loop_lag_p99_ms: float | None
    other_load_cores: float


@dataclass
class GrowthResult:
    rows: list[SizeRow]
    ratios: dict[str, dict[str, float | None]]
    """Per size: each measure over its value at the smallest size."""
    machine: dict[str, Any]
    command: str
    argv: list[str]
    measured_at: str
    wall_s: float
    files: list[str] = field(default_factory=list)


def as_dict(result: GrowthResult) -> dict[str, Any]:
    return asdict(result)


_Series = list[tuple[str, list[float | None]]]
"""Named lines of a panel: (label, one value per size)."""

RATIO_FIELDS = (
    "join_p99_ms",
    "fanout_p99_ms",
    "rss_joined_mib",
    "rss_per_point_kib",
    "server_cpu_join_s",
    "cpu_per_message_us",
)


def row_of(result: SignalingResult) -> SizeRow:
    others = result.other_load_cores
    return SizeRow(
        points=result.points,
        joined=result.joined,
        all_joined_s=result.all_joined_s,
        join_p50_ms=result.join_p50_ms,
        join_p99_ms=result.join_p99_ms,
        fanout_p50_ms=result.fanout_p50_ms,
        fanout_p99_ms=result.fanout_p99_ms,
        server_fanout_mean_ms=result.server_fanout_mean_ms,
        rss_joined_mib=round(result.rss_joined_kib / 1024, 1),
        rss_per_point_kib=result.rss_per_point_kib,
        server_cpu_join_s=result.server_cpu_join_s,
        cpu_per_join_ms=round(result.server_cpu_join_s / max(1, result.joined) * 1000, 2),
        cpu_per_message_us=result.server_cpu_per_message_us,
        loop_lag_p99_ms=result.loop_lag_p99_ms,
        other_load_cores=round(max(others.values(), default=0.0), 2),
    )


def ratios(rows: list[SizeRow]) -> dict[str, dict[str, float | None]]:
    """Each measure at each size over its value at the smallest size (None where undefined)."""
    if not rows:
        return {}
    first = min(rows, key=lambda r: r.points)
    out: dict[str, dict[str, float | None]] = {}
    for row in rows:
        values: dict[str, float | None] = {"points": round(row.points / first.points, 2)}
        for name in RATIO_FIELDS:
            now, then = getattr(row, name), getattr(first, name)
            values[name] = round(now / then, 2) if now is not None and then else None
        out[str(row.points)] = values
    return out


def check_options(options: GrowthOptions) -> None:
    if len(options.sizes) < 2 or any(not 2 <= n <= signaling.MAX_POINTS for n in options.sizes):
        raise BenchError(f"--sizes needs two or more sizes, each 2..{signaling.MAX_POINTS}")
    if sorted(set(options.sizes)) != list(options.sizes):
        raise BenchError("--sizes must grow: e.g. 100,526,3321")


def run(options: GrowthOptions) -> GrowthResult:
    check_options(options)
    started = time.monotonic()
    rows = [
        row_of(
            signaling.run(
                SignalingOptions(
                    points=size,
                    processes=options.processes,
                    events=options.events,
                    batch=options.batch,
                    batch_interval_ms=options.batch_interval_ms,
                    join_timeout_s=max(60.0, size / 20),
                )
            )
        )
        for size in options.sizes
    ]
    return GrowthResult(
        rows=rows,
        ratios=ratios(rows),
        machine=machine_info(),
        command=options.command(),
        argv=list(sys.argv),
        measured_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        wall_s=round(time.monotonic() - started, 1),
    )


# ---- the files ---------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(result: GrowthResult, png_name: str = "growth.png") -> str:
    machine = result.machine
    lines = [
        "# Growth: from 100 to 526 to 3,321 points",
        "",
        f"Generated by `{result.command}` on {result.measured_at} "
        f"({machine['cores']} cores, {machine['cpu']}, Python {machine['python']}); "
        f"{result.wall_s:.0f} s. Each size is one run of the signaling benchmark "
        "([benchmarks.md](benchmarks.md)): real WebSocket points arriving at the same rate, then "
        "events fanned out to all of them.",
        "",
        f"![join time, fan-out time, memory and CPU against points]({png_name})",
        "",
        "| points | joined | all joined | join p50 / p99 | fan-out p50 / p99 | server memory "
        "after joins | per point | server CPU for the joins | per join | per delivered message "
        "| loop lag p99 | other load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result.rows:
        lines.append(
            f"| {r.points:,} | {r.joined:,} | {_num(r.all_joined_s)} s | "
            f"{_num(r.join_p50_ms)} / {_num(r.join_p99_ms)} ms | "
            f"{_num(r.fanout_p50_ms)} / {_num(r.fanout_p99_ms)} ms | {_num(r.rss_joined_mib)} MiB | "
            f"{_num(r.rss_per_point_kib)} KiB | {_num(r.server_cpu_join_s, 2)} s | "
            f"{_num(r.cpu_per_join_ms, 2)} ms | {_num(r.cpu_per_message_us)} µs | "
            f"{_num(r.loop_lag_p99_ms)} ms | {_num(r.other_load_cores, 2)} cores |"
        )
    lines += [
        "",
        "Each measure over its value at the smallest size (points grow by the first column):",
        "",
        "| points | × points | join p99 | fan-out p99 | memory | memory per point | join CPU "
        "| CPU per message |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, values in result.ratios.items():
        cells = " | ".join(_num(values.get(name), 2) for name in RATIO_FIELDS)
        lines.append(f"| {int(size):,} | {_num(values['points'], 2)} | {cells} |")
    lines += [
        "",
        "How to read it: memory per point and CPU per join or per message should stay flat (cost "
        "linear in points); fan-out time grows with points by nature (one event is written to "
        "every connection), and join time grows when the arrival rate outruns the server, which "
        "a longer storm at the same rate shows as a rising p99.",
        "",
    ]
    return "\n".join(lines)


def plot(result: GrowthResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r.points for r in result.rows]
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    rows = result.rows
    panels: list[tuple[Any, str, _Series, str, _Series]] = [
        (
            axes[0][0],
            "join time (ms)",
            [("p50", [r.join_p50_ms for r in rows]), ("p99", [r.join_p99_ms for r in rows])],
            "",
            [],
        ),
        (
            axes[0][1],
            "fan-out: one event to every point (ms)",
            [
                ("p50 at the points", [r.fanout_p50_ms for r in rows]),
                ("p99 at the points", [r.fanout_p99_ms for r in rows]),
                ("server's send, mean", [r.server_fanout_mean_ms for r in rows]),
            ],
            "",
            [],
        ),
        (
            axes[1][0],
            "server memory after the joins",
            [("resident (MiB)", [r.rss_joined_mib for r in rows])],
            "per point (KiB)",
            [("per point (KiB)", [r.rss_per_point_kib for r in rows])],
        ),
        (
            axes[1][1],
            "server CPU: per join (ms), per delivered message (µs)",
            [("per join (ms)", [r.cpu_per_join_ms for r in rows])],
            "per delivered message (µs)",
            [("per delivered message (µs)", [r.cpu_per_message_us for r in rows])],
        ),
    ]
    for axis, title, series, right_label, right in panels:
        lines = []
        for label, values in series:
            pairs = [(p, v) for p, v in zip(points, values, strict=True) if v is not None]
            lines += axis.plot(
                [p for p, _ in pairs], [v for _, v in pairs], marker="o", label=label
            )
        if right:
            twin = axis.twinx()
            for label, values in right:
                pairs = [(p, v) for p, v in zip(points, values, strict=True) if v is not None]
                lines += twin.plot(
                    [p for p, _ in pairs],
                    [v for _, v in pairs],
                    marker="s",
                    linestyle="--",
                    color="tab:red",
                    label=label,
                )
            twin.set_ylabel(right_label)
            twin.set_ylim(0, twin.get_ylim()[1] * 1.35)
        # Headroom for the legend above the lines.
        axis.set_ylim(0, axis.get_ylim()[1] * 1.35)
        axis.set_xscale("log")
        axis.set_xticks(points)
        axis.set_xticklabels([f"{p:,}" for p in points])
        axis.minorticks_off()
        axis.set_xlabel("points")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend(lines, [line.get_label() for line in lines], loc="upper left")
    machine = result.machine
    figure.suptitle(
        f"diemcau: growth with the number of points — {result.measured_at}, "
        f"{machine['cores']} cores"
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(result: GrowthResult, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "growth.png"
    plot(result, png)
    md = out_dir / "growth.md"
    md.write_text(markdown(result, png.name), encoding="utf-8")
    result.files = [str(md), str(png)]
    return [md, png]


def render(result: GrowthResult) -> Table:
    table = Table(
        "points",
        "join p50 / p99",
        "fan-out p50 / p99",
        "memory (per point)",
        "CPU per join / per message",
        "p99 join, fan-out × smallest",
        title=f"growth: {result.machine['cores']} cores, {result.machine['cpu']}",
        caption=result.command,
    )
    for r in result.rows:
        ratio = result.ratios.get(str(r.points), {})
        table.add_row(
            f"{r.points:,}",
            f"{_num(r.join_p50_ms)} / {_num(r.join_p99_ms)} ms",
            f"{_num(r.fanout_p50_ms)} / {_num(r.fanout_p99_ms)} ms",
            f"{_num(r.rss_joined_mib)} MiB ({_num(r.rss_per_point_kib)} KiB)",
            f"{_num(r.cpu_per_join_ms, 2)} ms / {_num(r.cpu_per_message_us)} µs",
            f"{_num(ratio.get('join_p99_ms'), 2)}, {_num(ratio.get('fanout_p99_ms'), 2)}",
        )
    for path in result.files:
        table.add_row("written", path, "", "", "", "")
    return table
