"""How fast the floor passes: a moderator calls on one point after another while N points listen.

One run starts the real server (the signaling benchmark's server process: `uvicorn.Server(
server_config(settings))` on a fresh migrated SQLite database, the embedded media forwarder on its
loop, media on 127.0.0.1), prepares a session through the HTTP API (import, invite all, join links,
open) and connects N points as real WebSocket clients: N - M of them in the signaling benchmark's
client processes (one asyncio loop each, every event stamped on receipt), and the M media points in
a process of their own, where each also publishes small aiortc video (`media.publish` on its own
WebSocket; a picture height no other point has). A moderator (one staff connection, role moderator,
its own process) then makes `--passes` floor passes: `{"type": "floor", "action": "grant",
"point_code": …}` (a call-on; the previous holder is released by the same command), one every
`--pass-interval-ms`.

Measured per pass: the moderator's send time → the `floor.call_on` event's arrival at each of the N
points (`time.time()`, one machine, one clock), and → the moderator's ack. With media points, every
pass calls on one of them, and the hall (a staff connection in role `hall`, its own process, an
aiortc subscriber to the floor and preview slots, decoding) reports the time from the command to its
first decoded floor frame of the new speaker's size (`time.monotonic()`, CLOCK_MONOTONIC across
processes); a pass whose speaker never shows before the next command counts as infinitely late.
From the server: CPU per pass, `diemcau_fanout_seconds` and the event loop's lag from /metrics, and
garbage-collector pauses over the passes.

Everything is bounded by timeouts; processes and the temporary directory are removed even on
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from app.benchmarks import floor_procs
from app.benchmarks import signaling_procs as sprocs
from app.benchmarks.signaling import (
    MAX_POINTS,
    NATIONAL_CSV,
    BenchError,
    SignalingOptions,
    _Bench,
    _create_admin,
    _sigterm_unwinds,
    _Worker,
    bucket_quantile,
    cpu_seconds,
    free_port,
    machine_info,
    percentile,
)

__all__ = ["TARGETS", "BenchError", "FloorOptions", "FloorResult", "as_dict", "render", "run"]

# The targets (issue 5, "Performance"), stated for N = 3,321 and 50 media points.
TARGETS: dict[str, float] = {
    "grant_to_event_p99_ms": 100.0,
    "grant_to_first_frame_p95_ms": 1000.0,
}
MAX_MEDIA_POINTS = 100
MEDIA_WIDTH = 128
"""A multiple of 32: `media.loadgen.PatternVideoTrack` fills its planes assuming no row padding,
and PyAV pads rows (of the luma and of the half-width chroma planes) to 16 bytes; with other widths
the track fails and the publisher sends no video at all."""
MEDIA_BASE_HEIGHT = 96
MEDIA_HEIGHT_STEP = 2
SETTLE_S = 2.0
"""After the last connection: the server's GC policy freezes what is alive 0.5 s after arrivals."""


@dataclass(frozen=True)
class FloorOptions:
    points: int
    passes: int = 100
    media_points: int = 0
    pass_interval_ms: int = 0
    """0: 500 ms without media points, 2,000 ms with them (time for the new speaker's frame)."""
    processes: int = 2
    batch: int = 0
    batch_interval_ms: int = 100
    join_timeout_s: float = 60.0
    media_fps: int = 15
    media_audio: bool = False
    """Media points also send an Opus tone (video only by default: half the clients' CPU)."""
    codec: str = "VP8"

    @property
    def interval_ms(self) -> int:
        if self.pass_interval_ms:
            return self.pass_interval_ms
        return 2000 if self.media_points else 500

    def signaling(self) -> SignalingOptions:
        """What the signaling benchmark's harness needs to start the server and join the points."""
        return SignalingOptions(
            points=self.points,
            processes=self.processes,
            batch=self.batch,
            batch_interval_ms=self.batch_interval_ms,
            join_timeout_s=self.join_timeout_s,
        )

    def command(self) -> str:
        return (
            f"diemcau bench floor --points {self.points} --passes {self.passes} "
            f"--media-points {self.media_points} --pass-interval-ms {self.interval_ms} "
            f"--processes {self.processes} --batch {self.batch} "
            f"--batch-interval-ms {self.batch_interval_ms} --media-fps {self.media_fps} "
            f"--codec {self.codec}" + (" --media-audio" if self.media_audio else "")
        )


@dataclass
class FloorResult:
    points: int
    joined: int
    media_points: int
    media_published: int
    passes: int
    passes_accepted: int
    pass_interval_ms: int
    processes: int
    source_file: str
    join_failures: dict[str, int]
    grant_to_event_p50_ms: float | None
    grant_to_event_p99_ms: float | None
    grant_to_event_max_ms: float | None
    grant_to_all_p50_ms: float | None
    """Per pass, the slowest of the N points: p50 over the passes."""
    grant_to_all_p99_ms: float | None
    grant_to_first_p50_ms: float | None
    """Per pass, the fastest point (the fixed part: command, commit, first write)."""
    events_received: int
    events_expected: int
    event_bytes: int | None
    """The median size of a `floor.call_on` event on the wire (JSON text)."""
    media_points_event_p99_ms: float | None
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    ack_max_ms: float | None
    chair_event_p50_ms: float | None
    grant_to_first_frame_p50_ms: float | None
    grant_to_first_frame_p95_ms: float | None
    grant_to_first_frame_max_ms: float | None
    first_frame_missed: int
    first_frame_ms: list[float | None]
    hall_subscribe_ms: float | None
    hall_frames: int
    hall_sizes_seen: dict[str, int]
    """Decoded floor frames at the hall per picture size (one size per media point)."""
    media_fps: int
    media_audio: bool
    codec: str
    server_cpu_per_pass_ms: float | None
    server_cpu_passes_s: float
    server_fanout_mean_ms: float | None
    server_fanout_p99_ms: float | None
    loop_lag_p99_ms: float | None
    server_gc_passes: dict[str, Any]
    clients_cores: float
    other_load_cores: float
    closed_during_passes: dict[str, int]
    pass_outcomes: dict[str, int]
    per_pass: list[dict[str, Any]]
    """Each pass: the point called on, ack, first and last point's event (ms), first frame (ms)."""
    targets: dict[str, float]
    passed: dict[str, bool]
    passed_all: bool
    machine: dict[str, Any]
    command: str
    argv: list[str]
    wall_s: float
    notes: list[str] = field(default_factory=list)


def as_dict(result: FloorResult) -> dict[str, Any]:
    data = asdict(result)
    data["pass"] = data.pop("passed")
    return data


# ---- pure helpers ------------------------------------------------------------------------------


def check_options(options: FloorOptions) -> None:
    if not 2 <= options.points <= MAX_POINTS:
        raise BenchError(f"--points must be 2..{MAX_POINTS} (the rows of {NATIONAL_CSV.name})")
    if options.passes < 1:
        raise BenchError("--passes must be 1 or more")
    if options.media_points and not 2 <= options.media_points <= min(
        options.points, MAX_MEDIA_POINTS
    ):
        raise BenchError(
            f"--media-points must be 0 or 2..{min(options.points, MAX_MEDIA_POINTS)} "
            "(passes alternate between them)"
        )
    if options.codec not in ("VP8", "H264"):
        raise BenchError("--codec must be VP8 or H264")
    if not 1 <= options.media_fps <= 30:
        raise BenchError("--media-fps must be 1..30")


def media_indices(points: int, media_points: int) -> list[int]:
    """Which of the points (by position) publish: spread evenly over the list."""
    return [i * points // media_points for i in range(media_points)] if media_points else []


def media_height(position: int) -> int:
    """The picture height of the media point at this position among them: no two alike, so a
    decoded frame at the hall names its source."""
    return MEDIA_BASE_HEIGHT + MEDIA_HEIGHT_STEP * position


def pass_targets(points: int, media: list[int], passes: int) -> list[int]:
    """The point (by position) each pass calls on; never the same one twice in a row.

    With media points, the passes go round them (each pass moves the picture); without, they are
    spread over all the points.
    """
    if media:
        return [media[k % len(media)] for k in range(passes)]
    step = max(1, points // min(points, passes))
    if step % points == 0:
        step = 1
    return [(k * step) % points for k in range(passes)]


def nearest_ms(values: list[float], q: float) -> float | None:
    found = percentile(values, q)
    return None if found is None else round(found, 2)


def p95_with_misses(values: list[float | None]) -> float | None:
    """p95 where a miss counts as infinitely late (None if that is what the p95 is)."""
    if not values:
        return None
    found = percentile([math.inf if v is None else v for v in values], 0.95)
    return None if found is None or math.isinf(found) else round(found, 1)


# ---- the run -----------------------------------------------------------------------------------


class _FloorBench(_Bench):
    """The signaling benchmark's harness (server, HTTP set-up, point clients, cleanup), with the
    chair, the hall and the media points in processes of their own and no baseline server."""

    def __init__(self, options: FloorOptions, tmp: Path) -> None:
        super().__init__(options.signaling(), tmp)
        self.floor = options
        self.chair: _Worker | None = None
        self.hall: _Worker | None = None
        self.media: _Worker | None = None

    def start(self) -> tuple[str, int]:
        from migrations import runner

        url = f"sqlite+aiosqlite:///{self.tmp / 'bench.sqlite3'}"
        runner.upgrade(url)
        password = secrets.token_urlsafe(18)
        asyncio.run(_create_admin(url, password))
        port = free_port()
        env = {
            "DIEMCAU_VAR_DIR": str(self.tmp / "var"),
            "DIEMCAU_DATABASE_URL": url,
            "DIEMCAU_HOST": "127.0.0.1",
            "DIEMCAU_PORT": str(port),
            "DIEMCAU_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DIEMCAU_SECRET_KEY": secrets.token_urlsafe(48),
            "DIEMCAU_LOG_LEVEL": "WARNING",
            "DIEMCAU_ARGON2_TIME_COST": "1",
            "DIEMCAU_ARGON2_MEMORY_KIB": "1024",
            "DIEMCAU_WS_MAX_PER_ADDRESS": str(max(4000, self.floor.points + 100)),
            "DIEMCAU_METRICS_ENABLED": "true",
            "DIEMCAU_MEDIA_HOST_ADDRESSES": "127.0.0.1",
        }
        self.server = self._spawn(
            "diemcau-bench-server", sprocs.serve_diemcau, env, str(self.phase_dir), False, False
        )
        self.workers = [
            self._piped(f"diemcau-bench-floor-client-{i}", floor_procs.floor_client_worker)
            for i in range(self.floor.processes)
        ]
        self.chair = self._piped("diemcau-bench-floor-chair", floor_procs.chair_worker)
        if self.floor.media_points:
            self.media = self._piped("diemcau-bench-floor-media", floor_procs.media_point_worker)
            self.hall = self._piped("diemcau-bench-floor-hall", floor_procs.hall_worker)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False)
        deadline = time.monotonic() + 60
        while True:
            if not self.server.is_alive():
                raise BenchError(f"the server exited with code {self.server.exitcode}")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/healthz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError("the server did not answer /healthz within 60 s")
            time.sleep(0.1)
        return password, port

    def prepare_floor(self, password: str) -> tuple[int, str, list[tuple[str, str]]]:
        """The signaling benchmark's operator path; returns the session, the admin's token and
        (code, credential) for every point."""
        session_id, auth, pairs = self.prepare(password, title="Benchmark: floor")
        return session_id, auth["Authorization"].removeprefix("Bearer "), pairs

    def one(self, worker: _Worker, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        answer: dict[str, Any] = self._ask([worker], [command], timeout_s)[0]
        if "error" in answer:
            raise BenchError(f"{worker.process.name}: {answer['error']}")
        return answer

    def collect(self, collectors: list[_Worker], sent: list[tuple[int, float]]) -> list[Any]:
        """Every point's latencies for the passes (seq, moderator's send time) given."""
        command = {"cmd": "collect", "sent": sent, "timeout_s": 15}
        return self._ask(collectors, [command] * len(collectors), timeout_s=90)

    def close(self) -> None:
        for worker in (self.chair, self.hall, self.media):
            if worker is not None:
                with contextlib.suppress(OSError, ValueError):
                    worker.commands.send({"cmd": "quit"})
        self.stop_server()
        super().close()


def run(options: FloorOptions) -> FloorResult:
    check_options(options)
    started = time.monotonic()
    machine = machine_info()
    if options.media_points:
        for package in ("aiortc", "aioice", "av", "pylibsrtp"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                machine["versions"][package] = metadata.version(package)
    tmp = Path(tempfile.mkdtemp(prefix="diemcau-bench-floor-"))
    bench = _FloorBench(options, tmp)
    try:
        with _sigterm_unwinds():
            return _measure(bench, options, machine, started)
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(
    bench: _FloorBench, options: FloorOptions, machine: dict[str, Any], started: float
) -> FloorResult:
    notes: list[str] = bench.notes
    password, port = bench.start()
    session_id, token, pairs = bench.prepare_floor(password)
    server_pid = bench.server.pid if bench.server is not None else None
    if server_pid is None:
        raise BenchError("the server process has no pid")
    ws_url = f"ws://127.0.0.1:{port}/api/v1/ws"
    media = media_indices(options.points, options.media_points)
    media_set = set(media)
    height_of = {index: media_height(position) for position, index in enumerate(media)}

    # Joins: the listening points (as the signaling benchmark joins them), then the media points
    # with their publishers, the hall's subscriber, and the moderator.
    bench.phase("join", start=True)
    listeners = [credential for i, (_, credential) in enumerate(pairs) if i not in media_set]
    join_ms, _welcomed, failures, _t0 = bench.join(ws_url, listeners)
    media_published = 0
    if bench.media is not None:
        answer = bench.one(
            bench.media,
            {
                "cmd": "join",
                "url": ws_url,
                "points": [(i, pairs[i][1]) for i in media],
                "specs": [
                    (
                        i,
                        {
                            "width": MEDIA_WIDTH,
                            "height": height_of[i],
                            "fps": options.media_fps,
                            "audio": options.media_audio,
                            "codec": options.codec,
                        },
                    )
                    for i in media
                ],
                "t0": time.time(),
                "batch": len(media),
                "batch_interval_s": 0.0,
                "timeout_s": options.join_timeout_s,
            },
            options.join_timeout_s + floor_procs.PUBLISH_TIMEOUT_S + 30,
        )
        join_ms.extend(answer["join_ms"])
        failures.update(answer["failures"])
        failures.update(answer["publish_failures"])
        media_published = len(answer["publish_ms"])
        if media_published < len(media):
            notes.append(f"{len(media) - media_published} media point(s) did not publish")
    hall_subscribe_ms = None
    if bench.hall is not None:
        answer = bench.one(
            bench.hall,
            {"cmd": "connect", "url": ws_url, "token": token, "session_id": session_id},
            90,
        )
        hall_subscribe_ms = float(answer["subscribe_ms"])
    assert bench.chair is not None
    bench.one(
        bench.chair,
        {"cmd": "connect", "url": ws_url, "token": token, "session_id": session_id},
        60,
    )
    bench.phase("join", start=False)
    joined = len(join_ms)
    if joined < options.points:
        notes.append(f"{options.points - joined} point(s) did not join: {dict(failures)}")
    time.sleep(SETTLE_S)

    # The passes.
    targets = pass_targets(options.points, media, options.passes)
    codes = [pairs[i][0] for i in targets]
    interval_s = options.interval_ms / 1000
    before = bench.scrape()
    cpu_before = cpu_seconds(server_pid)
    client_pids = [p.pid for p in bench.processes if p.pid is not None and p.pid != server_pid]
    clients_before = _cpu_of(client_pids)
    load = bench.load()
    passes_started = time.monotonic()
    bench.phase("fanout", start=True)
    ran = bench.one(
        bench.chair,
        {"cmd": "run", "codes": codes, "interval_s": interval_s},
        options.passes * (interval_s + floor_procs.REQUEST_TIMEOUT_S) + 60,
    )
    gc_passes = bench.phase("fanout", start=False)
    other_cores = load.cores()
    passes_wall = time.monotonic() - passes_started
    cpu_after = cpu_seconds(server_pid)
    clients_cores = (_cpu_of(client_pids) - clients_before) / max(1e-9, passes_wall)
    after = bench.scrape()
    passes: list[dict[str, Any]] = ran["passes"]
    outcomes = Counter(str(p["outcome"]) for p in passes)
    accepted = [p for p in passes if p["outcome"] == "ack" and p["seq"] is not None]
    if len(accepted) < len([p for p in passes if p["outcome"] == "ack"]):
        notes.append("the moderator did not see the event of some accepted passes")

    # What the points got.
    sent = [(int(p["seq"]), float(p["sent_wall"])) for p in accepted]
    collectors = [*bench.workers, *([bench.media] if bench.media is not None else [])]
    answers = bench.collect(collectors, sent)
    latencies: list[float] = []
    by_pass: dict[int, list[float]] = {}
    media_latencies: list[float] = []
    missing = 0
    closes: Counter[str] = Counter()
    sizes: list[int] = []
    for worker, answer in zip(collectors, answers, strict=True):
        sizes.extend(int(size) for size in answer["sizes"] if size)
        for seq, ms in answer["latencies"]:
            latencies.append(ms)
            by_pass.setdefault(int(seq), []).append(ms)
            if worker is bench.media:
                media_latencies.append(ms)
        missing += int(answer["missing"])
        closes.update(answer["closes"])
    complete = [values for values in by_pass.values() if len(values) == joined]
    slowest = [max(values) for values in complete]
    fastest = [min(values) for values in by_pass.values()]
    if len(complete) < len(accepted):
        notes.append(f"{len(accepted) - len(complete)} pass(es) did not reach every point")

    # What the hall saw.
    first_frame: list[float | None] = []
    hall_frames = 0
    hall_sizes: dict[str, int] = {}
    if bench.hall is not None:
        media_passes = [
            (p["sent_mono"], MEDIA_WIDTH, height_of[t])
            for p, t in zip(passes, targets, strict=False)
        ]
        answer = bench.one(
            bench.hall, {"cmd": "report", "passes": media_passes, "settle_s": interval_s}, 60
        )
        first_frame = [None if v is None else float(v) for v in answer["first_frame_ms"]]
        hall_frames = int(answer["frames"])
        hall_sizes = dict(answer["sizes_seen"])
    seen_frames = [v for v in first_frame if v is not None]
    per_pass: list[dict[str, Any]] = []
    for k, record in enumerate(passes):
        values = by_pass.get(record["seq"], []) if record["seq"] is not None else []
        per_pass.append(
            {
                "point_code": record["code"],
                "outcome": record["outcome"],
                "ack_ms": _round(record["ack_ms"], 1),
                "first_ms": _round(min(values, default=None), 1),
                "last_ms": _round(max(values, default=None), 1),
                "received": len(values),
                "first_frame_ms": _round(first_frame[k], 1) if k < len(first_frame) else None,
            }
        )

    fanout = after.histograms["diemcau_fanout_seconds"].minus(
        before.histograms.get("diemcau_fanout_seconds")
    )
    lag = after.histograms["diemcau_event_loop_lag_seconds"].minus(
        before.histograms.get("diemcau_event_loop_lag_seconds")
    )
    acks = [float(p["ack_ms"]) for p in passes if p["ack_ms"] is not None]
    chair_events = [float(p["chair_event_ms"]) for p in accepted if p["chair_event_ms"] is not None]
    event_p99 = nearest_ms(latencies, 0.99)
    frame_p95 = p95_with_misses(first_frame)
    expected = len(accepted) * joined
    passed = {
        "grant_to_event_p99_ms": event_p99 is not None
        and event_p99 < TARGETS["grant_to_event_p99_ms"]
        and missing == 0
        and len(accepted) == options.passes,
    }
    if options.media_points:
        passed["grant_to_first_frame_p95_ms"] = (
            frame_p95 is not None and frame_p95 < TARGETS["grant_to_first_frame_p95_ms"]
        )
    path, _ = bench.source()
    return FloorResult(
        points=options.points,
        joined=joined,
        media_points=options.media_points,
        media_published=media_published,
        passes=options.passes,
        passes_accepted=len(accepted),
        pass_interval_ms=options.interval_ms,
        processes=options.processes,
        source_file=f"{path.name} (first {options.points} rows)"
        if path == NATIONAL_CSV
        else path.name,
        join_failures=dict(failures),
        grant_to_event_p50_ms=nearest_ms(latencies, 0.5),
        grant_to_event_p99_ms=event_p99,
        grant_to_event_max_ms=_round(max(latencies, default=None)),
        grant_to_all_p50_ms=nearest_ms(slowest, 0.5),
        grant_to_all_p99_ms=nearest_ms(slowest, 0.99),
        grant_to_first_p50_ms=nearest_ms(fastest, 0.5),
        events_received=len(latencies),
        events_expected=expected,
        event_bytes=int(statistics.median(sizes)) if sizes else None,
        media_points_event_p99_ms=nearest_ms(media_latencies, 0.99),
        ack_p50_ms=nearest_ms(acks, 0.5),
        ack_p99_ms=nearest_ms(acks, 0.99),
        ack_max_ms=_round(max(acks, default=None)),
        chair_event_p50_ms=nearest_ms(chair_events, 0.5),
        grant_to_first_frame_p50_ms=nearest_ms(seen_frames, 0.5),
        grant_to_first_frame_p95_ms=frame_p95,
        grant_to_first_frame_max_ms=_round(max(seen_frames, default=None)),
        first_frame_missed=sum(v is None for v in first_frame),
        first_frame_ms=[_round(v, 1) for v in first_frame],
        hall_subscribe_ms=_round(hall_subscribe_ms, 1),
        hall_frames=hall_frames,
        hall_sizes_seen=hall_sizes,
        media_fps=options.media_fps,
        media_audio=options.media_audio,
        codec=options.codec,
        server_cpu_per_pass_ms=round((cpu_after - cpu_before) / len(passes) * 1000, 2)
        if passes
        else None,
        server_cpu_passes_s=round(cpu_after - cpu_before, 2),
        server_fanout_mean_ms=_ms(fanout.total / fanout.count) if fanout.count else None,
        server_fanout_p99_ms=_ms(bucket_quantile(0.99, fanout.buckets)),
        loop_lag_p99_ms=_ms(bucket_quantile(0.99, lag.buckets)),
        server_gc_passes=gc_passes,
        clients_cores=round(clients_cores, 2),
        other_load_cores=other_cores,
        closed_during_passes=dict(closes),
        pass_outcomes=dict(outcomes),
        per_pass=per_pass,
        targets=dict(TARGETS)
        if options.media_points
        else {"grant_to_event_p99_ms": TARGETS["grant_to_event_p99_ms"]},
        passed=passed,
        passed_all=all(passed.values()),
        machine=machine,
        command=options.command(),
        argv=list(sys.argv),
        wall_s=round(time.monotonic() - started, 1),
        notes=notes,
    )


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(pid)
    return total


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def render(result: FloorResult) -> Table:
    """The result as a table for a terminal."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f} ms"

    verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]"}
    machine = result.machine
    table = Table(
        "measure",
        "value",
        "target",
        "result",
        title=f"floor: {result.joined}/{result.points} points, {result.media_published}/"
        f"{result.media_points} publishing, {result.passes_accepted}/{result.passes} passes "
        f"every {result.pass_interval_ms} ms; {machine['cores']} cores, {machine['cpu']}, "
        f"Python {machine['python']}",
        caption=result.command,
    )
    table.add_row(
        "grant → event at every point p50 / p99",
        f"{ms(result.grant_to_event_p50_ms)} / {ms(result.grant_to_event_p99_ms)} "
        f"({result.events_received:,}/{result.events_expected:,} received)",
        f"p99 < {TARGETS['grant_to_event_p99_ms']:g} ms",
        verdict[result.passed["grant_to_event_p99_ms"]],
    )
    table.add_row(
        "per pass: first point p50 / last point p50, p99",
        f"{ms(result.grant_to_first_p50_ms)} / {ms(result.grant_to_all_p50_ms)}, "
        f"{ms(result.grant_to_all_p99_ms)}",
        "",
        "",
    )
    table.add_row(
        "grant → ack p50 / p99",
        f"{ms(result.ack_p50_ms)} / {ms(result.ack_p99_ms)}",
        "",
        "",
    )
    if result.media_points:
        table.add_row(
            "grant → first floor frame at the hall p50 / p95",
            f"{ms(result.grant_to_first_frame_p50_ms)} / {ms(result.grant_to_first_frame_p95_ms)}"
            f" ({result.first_frame_missed} missed)",
            f"p95 < {TARGETS['grant_to_first_frame_p95_ms']:g} ms",
            verdict[result.passed["grant_to_first_frame_p95_ms"]],
        )
        table.add_row("media points' event p99", ms(result.media_points_event_p99_ms), "", "")
    table.add_row(
        "server: CPU per pass / deliver mean, p99 / loop lag p99",
        f"{ms(result.server_cpu_per_pass_ms)} / {ms(result.server_fanout_mean_ms)}, "
        f"{ms(result.server_fanout_p99_ms)} / {ms(result.loop_lag_p99_ms)}",
        "",
        "",
    )
    full = result.server_gc_passes.get("collections", {}).get("2")
    if full:
        table.add_row(
            "full GC during the passes",
            f"{full['count']}×, longest {full['max_ms']:.0f} ms",
            "",
            "",
        )
    table.add_row(
        "clients / other load (cores)",
        f"{result.clients_cores:.2f} / {result.other_load_cores:.2f}",
        "",
        "",
    )
    if result.join_failures:
        table.add_row("join failures", str(result.join_failures), "", "")
    for note in result.notes:
        table.add_row("note", note, "", "")
    return table
