"""What the media plane costs: one hall program forwarded to N subscribers, and floor switches.

One run starts, each in its own process: the media server (the backend `create_backend(settings)`
builds, on 127.0.0.1, with `--workers` forwarding processes or none), the hall publisher (VP8 or
H264 640x360 30 fps at a pinned ~1.2 Mb/s + Opus), two point publishers (small video, distinct sizes
and loudness) that take the floor in turn, D decoding subscribers in one process and the N - D
load-only subscribers (counting RTP packets without decoding) in one or more others. Every
subscriber receives two slots, "program" and "floor". Offers and answers travel through this
orchestrator over pipes, not through the app's WebSocket: the signaling path has its own benchmark.

Measured: the server's CPU (from /proc, the server process and its children) and the forwarded
packets over a window with only the program flowing, and before any subscriber joins over a short
window with the publishers alone (receiving three publishers costs the same whatever N is: it is
subtracted for the "marginal" figures, so that small N can be compared with large N); frame rates
at the decoding subscribers over the window; packet loss at every subscriber over the window; join
time (offer created → first decoded program frame, or first program video packet for a load-only
subscriber); then, with the program still flowing, `--switches` floor moves A → B → A …, each timed
from the route call in the server to the first decoded floor video frame of the new size and the
first floor audio frame at the new loudness, at every decoding subscriber. A switch whose new source
never shows before the next switch counts as missed (infinitely late in the p95), and the server's
per-sink counters over that phase say where its packets stopped.

Everything is bounded by timeouts; the processes are stopped even on failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import math
import multiprocessing
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

from rich.table import Table

from app.benchmarks import media_procs as procs
from app.benchmarks.signaling import (
    OtherLoad,
    _sigterm_unwinds,
    cpu_seconds,
    machine_info,
    percentile,
)

# The targets (issue 4, "Performance"), for a VP8 640x360 30 fps ~1.2 Mb/s + Opus source.
TARGETS: dict[str, float] = {
    "cpu_per_subscriber_pct": 1.0,  # 100 subscribers per core
    "fps_min": 29.5,  # "30 fps at every decoding subscriber", with a frame of counting slack
    "us_per_packet": 40.0,
    "codecs_created": 0,
    "join_to_first_frame_p95_ms": 1000.0,
    "floor_switch_audio_p95_ms": 300.0,
    "floor_switch_video_p95_ms": 1000.0,
}

HALL_BITRATE = 1_200_000
HALL: dict[str, Any] = {
    "name": "hall",
    "width": 640,
    "height": 360,
    "fps": 30,
    "amplitude": 6000,
    "noise_rows": 24,
}
# The floor's two points: sizes and loudness that no other source has, so a decoded frame names
# its source. A decoded Opus tone of amplitude A measures an RMS of about A / 2 here.
POINTS: tuple[dict[str, Any], ...] = (
    {"name": "pointA", "width": 320, "height": 180, "fps": 15, "amplitude": 1500},
    {"name": "pointB", "width": 256, "height": 144, "fps": 15, "amplitude": 16000},
)
LEVEL_RANGE = (0.35, 0.65)
SLOTS = ("program", "floor")
PUBLISHER_SETTLE_S = 4.0
"""Subscribers join after the publisher's first keyframe is gone, so joins need a relayed PLI."""
IDLE_WINDOW_S = 3.0
WINDOW_SETTLE_S = 2.0
STARTUP_TIMEOUT_S = 60.0
MAX_SUBSCRIBERS = 1000
SUBSCRIBERS_PER_LOAD_PROCESS = 40


class BenchError(RuntimeError):
    """The benchmark could not run (a process did not start, a publisher did not connect)."""


@dataclass(frozen=True)
class MediaOptions:
    subscribers: int
    decoding: int = 2
    seconds: float = 10.0
    codec: str = "VP8"
    workers: int = 0
    join_rate: float = 10.0
    """Subscribers starting per second: points open their links over minutes, not all at once."""
    switches: int = 5
    switch_interval_s: float = 2.0
    load_processes: int = 0
    """0: one per 40 load-only subscribers, at most 4."""

    @property
    def load_only(self) -> int:
        return self.subscribers - min(self.decoding, self.subscribers)

    @property
    def load_process_count(self) -> int:
        if self.load_only == 0:
            return 0
        if self.load_processes:
            return min(self.load_processes, self.load_only)
        return min(4, math.ceil(self.load_only / SUBSCRIBERS_PER_LOAD_PROCESS))

    def command(self) -> str:
        return (
            f"diemcau bench media --subscribers {self.subscribers} --decoding {self.decoding} "
            f"--seconds {self.seconds:g} --codec {self.codec} --workers {self.workers} "
            f"--join-rate {self.join_rate:g} --switches {self.switches} "
            f"--load-processes {self.load_process_count}"
        )


@dataclass
class MediaResult:
    subscribers: int
    joined: int
    decoding: int
    load_only: int
    load_processes: int
    codec: str
    workers: int
    window_s: float
    server_cpu_pct: float
    cpu_per_subscriber_pct: float | None
    subscribers_per_core: float | None
    us_per_packet: float | None
    server_idle_cpu_pct: float
    marginal_cpu_per_subscriber_pct: float | None
    marginal_us_per_packet: float | None
    forward_us_per_packet: float | None
    forwarded_packets: int
    loop_lag_max_ms: float
    """How late a 10 ms timer fired at worst in a forwarding loop during the window (target:
    keyframe bursts paced so that no loop is held 20 ms)."""
    packets_per_subscriber_per_s: float | None
    fps_min: float | None
    fps: list[float]
    encoders_created: int
    decoders_created: int
    join_to_first_frame_p50_ms: float | None
    join_to_first_frame_p95_ms: float | None
    join_decoding_ms: list[float]
    join_failures: dict[str, int]
    floor_switch_audio_p95_ms: float | None
    floor_switch_video_p95_ms: float | None
    floor_switches: list[dict[str, Any]]
    floor_switch_missed: dict[str, int]
    floor_phase_us_per_packet: float | None
    floor_phase_counters: dict[str, Any]
    program_video_kbps: float | None
    program_video_codec: str | None
    program_video_sent_pps: float
    program_unprocessed_pct: float | None
    """Of the video packets the hall sent in the window, the share the server did not process in
    it: lost on the way in (see `udp_receive_buffer_drops`) or still queued behind a busy loop."""
    udp_receive_buffer_drops: int
    program_keyframes: int
    program_plis_up: int
    decoding_loss_pct: float | None
    load_only_video_pps_min: float | None
    load_only_loss_pct: float | None
    clients_cores: float
    other_load_cores: float
    workers_used: list[int]
    targets: dict[str, float]
    passed: dict[str, bool]
    passed_all: bool
    machine: dict[str, Any]
    command: str
    argv: list[str]
    wall_s: float
    notes: list[str] = field(default_factory=list)


def as_dict(result: MediaResult) -> dict[str, Any]:
    data = asdict(result)
    data["pass"] = data.pop("passed")
    return data


# ---- processes ---------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """A process and every live descendant (a worker pool's forwarding processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU time of a process and every live descendant."""
    total = 0.0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += cpu_seconds(pid)
    return total


@dataclass
class _Proc:
    name: str
    process: SpawnProcess
    commands: Connection
    answers: Connection
    pid: int = 0
    gone: bool = False


class _Hub:
    """The orchestrator's end of every pipe, and the relay of subscribers' offers to the server.

    One thread, no asyncio: `wait()` on every answer pipe, then dispatch. A subscriber's offer
    becomes a `subscribe` command to the server; the server's reply goes back to that subscriber
    as an `answer` command. Replies to the orchestrator's own commands are kept by id.
    """

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list[_Proc] = []
        self.server: _Proc | None = None
        self.replies: dict[int, dict[str, Any]] = {}
        self.relayed: dict[int, tuple[_Proc, str]] = {}
        self.next_id = 0

    def spawn(self, name: str, target: Any, *args: Any, daemon: bool = True) -> _Proc:
        """Start a process; `daemon=False` only for the server, whose worker pool has children
        (multiprocessing forbids them in daemons). Each process also dies with this one."""
        commands_out, commands_in = self.ctx.Pipe(duplex=False)
        answers_out, answers_in = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(
            target=target, args=(*args, commands_out, answers_in), name=name, daemon=daemon
        )
        process.start()
        commands_out.close()
        answers_in.close()
        proc = _Proc(name, process, commands_in, answers_out)
        self.procs.append(proc)
        return proc

    def ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while any(p.pid == 0 for p in self.procs):
            self.pump(min(0.5, max(0.0, deadline - time.monotonic())))
            if time.monotonic() > deadline:
                late = [p.name for p in self.procs if p.pid == 0]
                raise BenchError(f"not ready within {timeout_s:.0f} s: {', '.join(late)}")

    def send(self, proc: _Proc, command: dict[str, Any]) -> int:
        self.next_id += 1
        try:
            proc.commands.send({**command, "id": self.next_id})
        except OSError as exc:
            raise BenchError(f"{proc.name} is gone: {exc}") from None
        return self.next_id

    def request(self, proc: _Proc, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return self.gather([(proc, self.send(proc, command))], timeout_s)[0]

    def gather(self, asked: list[tuple[_Proc, int]], timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while not all(rid in self.replies for _, rid in asked):
            for proc, rid in asked:
                if rid not in self.replies and (proc.gone or not proc.process.is_alive()):
                    raise BenchError(
                        f"{proc.name} exited (code {proc.process.exitcode}) before answering"
                    )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                late = sorted({p.name for p, rid in asked if rid not in self.replies})
                raise BenchError(f"no answer within {timeout_s:.0f} s from {', '.join(late)}")
            self.pump(min(0.5, remaining))
        replies = [self.replies.pop(rid) for _, rid in asked]
        for (proc, _), reply in zip(asked, replies, strict=True):
            if "error" in reply:
                raise BenchError(f"{proc.name}: {reply['error']}")
        return replies

    def sleep(self, seconds: float) -> None:
        """Wait while still relaying (a late offer must not wait for the window to end)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.pump(remaining)

    def pump(self, timeout_s: float) -> None:
        by_pipe = {id(p.answers): p for p in self.procs if not p.gone}
        if not by_pipe:
            time.sleep(timeout_s)
            return
        for pipe in wait([p.answers for p in by_pipe.values()], timeout_s):
            proc = by_pipe[id(pipe)]
            try:
                message: dict[str, Any] = proc.answers.recv()
            except (EOFError, OSError):
                proc.gone = True
                continue
            self._dispatch(proc, message)

    def _dispatch(self, proc: _Proc, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "ready":
            proc.pid = int(message["pid"])
        elif kind == "offer":
            assert self.server is not None
            rid = self.send(
                self.server,
                {
                    "cmd": "subscribe",
                    "participant": message["name"],
                    "sdp": message["sdp"],
                    "slots": message["slots"],
                },
            )
            self.relayed[rid] = (proc, str(message["name"]))
        elif kind == "reply":
            rid = int(message["id"])
            if rid in self.relayed:
                subscriber, name = self.relayed.pop(rid)
                answer = {"cmd": "answer", "name": name}
                if "error" in message:
                    answer["error"] = str(message["error"])
                else:
                    answer["sdp"] = str(message["sdp"])
                with contextlib.suppress(BenchError):
                    self.send(subscriber, answer)
            else:
                self.replies[rid] = message

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError, ValueError):
                proc.commands.send({"cmd": "quit"})
        deadline = time.monotonic() + 15
        for proc in self.procs:
            proc.process.join(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.process.is_alive():
                proc.process.terminate()
        for proc in self.procs:
            proc.process.join(10)
            if proc.process.is_alive():
                proc.process.kill()
                proc.process.join(5)


# ---- the run -----------------------------------------------------------------------------------


def _level_range(amplitude: int) -> tuple[float, float]:
    return amplitude * LEVEL_RANGE[0], amplitude * LEVEL_RANGE[1]


def check_options(options: MediaOptions) -> None:
    if not 1 <= options.subscribers <= MAX_SUBSCRIBERS:
        raise BenchError(f"--subscribers must be 1..{MAX_SUBSCRIBERS}")
    if options.decoding < 0:
        raise BenchError("--decoding must be 0 or more")
    if options.codec not in ("VP8", "H264"):
        raise BenchError("--codec must be VP8 or H264")
    if options.workers > 0 and importlib.util.find_spec("media.workers.pool") is None:
        raise BenchError(
            "--workers > 0 needs the worker pool (media.workers.pool), which this tree does not have"
        )


def run(options: MediaOptions) -> MediaResult:
    check_options(options)
    started = time.monotonic()
    machine = machine_info()
    for package in ("aiortc", "aioice", "av", "pylibsrtp", "uvloop"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            machine["versions"][package] = metadata.version(package)
    hub = _Hub()
    try:
        with _sigterm_unwinds():
            return _measure(hub, options, machine, started)
    finally:
        hub.close()


def _publish(hub: _Hub, publisher: _Proc, spec: dict[str, Any], role: str, codec: str) -> None:
    assert hub.server is not None
    offer = hub.request(publisher, {"cmd": "offer", "spec": {**spec, "codec": codec}}, 60)
    answer = hub.request(
        hub.server,
        {"cmd": "publish", "participant": spec["name"], "sdp": offer["sdp"], "role": role},
        60,
    )
    hub.request(publisher, {"cmd": "accept", "name": spec["name"], "sdp": answer["sdp"]}, 60)


def udp_receive_buffer_errors() -> int:
    """Datagrams the kernel dropped because a socket's receive buffer was full (whole machine).

    Loopback never loses a datagram otherwise, so this counts packets a busy process did not read
    in time: the server (its publisher's packets) or a client (what the server sent it).
    """
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    for names, values in itertools.pairwise(lines):
        if names[0] == "Udp:" and values[0] == "Udp:" and "RcvbufErrors" in names:
            return int(values[names.index("RcvbufErrors")])
    return 0


@dataclass
class _Snapshot:
    at: float
    server_cpu_s: float
    clients_cpu_s: float
    stats: dict[str, Any]
    hall_sent: dict[str, int]
    udp_drops: int


def _snapshot(hub: _Hub, clients: list[_Proc], detail: list[str] | None = None) -> _Snapshot:
    """Server CPU, clients' CPU, the server's counters and the packets the hall publisher sent, at
    one moment; `detail` names the subscribers whose per-slot sink counters are wanted too (the
    decoding ones). `clients[0]` is the hall publisher's process."""
    assert hub.server is not None
    stats = hub.request(hub.server, {"cmd": "stats", "detail": detail or []}, 30)
    sent = hub.request(clients[0], {"cmd": "sent"}, 30)
    return _Snapshot(
        at=time.monotonic(),
        server_cpu_s=tree_cpu_seconds(hub.server.pid),
        clients_cpu_s=sum(tree_cpu_seconds(p.pid) for p in clients),
        stats=stats,
        hall_sent=dict(sent["packets"].get(HALL["name"], {})),
        udp_drops=udp_receive_buffer_errors(),
    )


def _mark(hub: _Hub, subscriber_procs: list[_Proc], label: str) -> None:
    hub.gather([(p, hub.send(p, {"cmd": "mark", "label": label})) for p in subscriber_procs], 30)


def _measure(
    hub: _Hub, options: MediaOptions, machine: dict[str, Any], started: float
) -> MediaResult:
    notes: list[str] = []
    hub.server = hub.spawn(
        "diemcau-bench-media-server", procs.serve_media, options.workers, daemon=False
    )
    hall = hub.spawn("diemcau-bench-media-hall", procs.publisher_worker, HALL_BITRATE)
    points = hub.spawn("diemcau-bench-media-points", procs.publisher_worker, None)
    decoding_proc = (
        hub.spawn("diemcau-bench-media-decoding", procs.subscriber_worker, True)
        if options.decoding > 0
        else None
    )
    load_procs = [
        hub.spawn(f"diemcau-bench-media-load-{i}", procs.subscriber_worker, False)
        for i in range(options.load_process_count)
    ]
    subscriber_procs = [p for p in [decoding_proc, *load_procs] if p is not None]
    clients = [hall, points, *subscriber_procs]
    hub.ready(STARTUP_TIMEOUT_S)

    # The program goes to every subscriber; the floor is empty until the switches start.
    hub.request(hub.server, {"cmd": "route", "routes": {"program": HALL["name"]}}, 30)
    _publish(hub, hall, HALL, "hall", options.codec)
    for spec in POINTS:
        _publish(hub, points, spec, "point", options.codec)
    # Publishers only, no subscriber yet: what the server spends whatever N is (receiving three
    # publishers' streams with aiortc's upstream handling). Subtracted for the marginal figures.
    hub.sleep(PUBLISHER_SETTLE_S - IDLE_WINDOW_S)
    idle_before = _snapshot(hub, clients)
    hub.sleep(IDLE_WINDOW_S)
    idle_after = _snapshot(hub, clients)

    # Joins: load-only subscribers first, the decoding ones last (they join a loaded server).
    t0 = time.monotonic() + 0.5
    schedule: dict[int, list[tuple[str, float]]] = {id(p): [] for p in subscriber_procs}
    order = [("load", i) for i in range(options.load_only)] + [
        ("dec", i) for i in range(min(options.decoding, options.subscribers))
    ]
    for position, (kind, index) in enumerate(order):
        start_at = t0 + position / options.join_rate
        if kind == "dec":
            assert decoding_proc is not None
            schedule[id(decoding_proc)].append((f"dec-{index + 1}", start_at))
        else:
            proc = load_procs[index % len(load_procs)]
            schedule[id(proc)].append((f"load-{index + 1:04d}", start_at))
    last_start = t0 + (len(order) - 1) / options.join_rate - time.monotonic()
    asked = [
        (p, hub.send(p, {"cmd": "join", "subscribers": schedule[id(p)], "slots": SLOTS}))
        for p in subscriber_procs
    ]
    joins = hub.gather(asked, max(0.0, last_start) + procs.JOIN_TIMEOUT_S + 30)
    join_ms: list[float] = []
    join_decoding: list[float] = []
    failures: Counter[str] = Counter()
    for (proc, _), reply in zip(asked, joins, strict=True):
        values = [float(ms) for _, ms in reply["joined"]]
        join_ms.extend(values)
        if proc is decoding_proc:
            join_decoding.extend(values)
        failures.update(reply["failures"])
    if failures:
        notes.append(f"{sum(failures.values())} subscriber(s) did not join: {dict(failures)}")
    hub.sleep(WINDOW_SETTLE_S)

    # The window: the program only (the floor is empty), as the targets are stated.
    # Everything of ours, the pool's workers included, is left out of "other load".
    load = OtherLoad([os.getpid(), *(pid for p in hub.procs for pid in process_tree(p.pid))])
    _mark(hub, subscriber_procs, "start")
    before = _snapshot(hub, clients)
    hub.sleep(options.seconds)
    after = _snapshot(hub, clients)
    _mark(hub, subscriber_procs, "end")
    other_cores = load.cores()

    # Floor switches, the program still flowing: A, B, A, … from the server's route call.
    switches: list[dict[str, Any]] = []
    decoding_names = [name for name, _ in schedule[id(decoding_proc)]] if decoding_proc else []
    floor_before = _snapshot(hub, clients, decoding_names)
    for index in range(options.switches):
        spec = POINTS[index % 2]
        reply = hub.request(hub.server, {"cmd": "route", "routes": {"floor": spec["name"]}}, 30)
        low, high = _level_range(int(spec["amplitude"]))
        switches.append(
            {
                "source": spec["name"],
                "called_at": reply["called_at"],
                "route_call_ms": round(float(reply["took_s"]) * 1000, 3),
                "width": spec["width"],
                "level_low": low,
                "level_high": high,
            }
        )
        hub.sleep(options.switch_interval_s)
    floor_after = _snapshot(hub, clients, decoding_names)

    window = (before.at, after.at)
    reports = hub.gather(
        [
            (
                p,
                hub.send(
                    p,
                    {
                        "cmd": "report",
                        "since": window[0],
                        "until": window[1],
                        "switches": switches if p is decoding_proc else [],
                    },
                ),
            )
            for p in subscriber_procs
        ],
        60,
    )
    hub.gather([(p, hub.send(p, {"cmd": "close"})) for p in subscriber_procs], 60)

    decoded = reports[0]["subscribers"] if decoding_proc is not None else []
    counted = [
        s for r in reports[1 if decoding_proc is not None else 0 :] for s in r["subscribers"]
    ]
    return _result(
        options,
        machine,
        started,
        notes,
        before=before,
        after=after,
        floor=(floor_before, floor_after),
        idle=(idle_before, idle_after),
        other_cores=other_cores,
        join_ms=join_ms,
        join_decoding=join_decoding,
        failures=failures,
        switches=switches,
        decoded=decoded,
        counted=counted,
    )


def _p95(values: list[float | None]) -> float | None:
    """p95 over every switch; a switch never seen counts as infinitely late."""
    if not values:
        return None
    found = percentile([math.inf if v is None else v for v in values], 0.95)
    return None if found is None or math.isinf(found) else round(found, 1)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _floor_counters(before: _Snapshot, after: _Snapshot) -> dict[str, Any]:
    """Over the floor phase: packets each point sent the server, and what the server sent to (or
    dropped for) each decoding subscriber's floor slot. When a switch is not seen at a subscriber,
    these tell whether the packets reached the server, left it, or were lost on the client."""
    result: dict[str, Any] = {"published_packets": {}, "floor_sinks": {}}
    for spec in POINTS:
        name = str(spec["name"])
        kinds = after.stats["published"].get(name, {})
        earlier = before.stats["published"].get(name, {})
        result["published_packets"][name] = {
            kind: counts["packets_in"] - earlier.get(kind, {}).get("packets_in", 0)
            for kind, counts in kinds.items()
        }
    for name, slots in after.stats.get("received", {}).items():
        earlier = before.stats.get("received", {}).get(name, {})
        result["floor_sinks"][name] = {
            key: {
                field: counts[field] - earlier.get(key, {}).get(field, 0)
                for field in ("packets_out", "dropped")
            }
            for key, counts in slots.items()
            if key.startswith("floor/")
        }
    return result


def _loss_pct(subscribers: list[dict[str, Any]]) -> float | None:
    """Packets lost over the window, as a share of those expected, over these subscribers."""
    received = sum(int(s["packets_received"]) for s in subscribers)
    lost = sum(int(s["packets_lost"]) for s in subscribers)
    return round(lost / (received + lost) * 100, 3) if received + lost else None


def _result(
    options: MediaOptions,
    machine: dict[str, Any],
    started: float,
    notes: list[str],
    *,
    before: _Snapshot,
    after: _Snapshot,
    floor: tuple[_Snapshot, _Snapshot],
    idle: tuple[_Snapshot, _Snapshot],
    other_cores: float,
    join_ms: list[float],
    join_decoding: list[float],
    failures: Counter[str],
    switches: list[dict[str, Any]],
    decoded: list[dict[str, Any]],
    counted: list[dict[str, Any]],
) -> MediaResult:
    wall = after.at - before.at
    server_cpu = after.server_cpu_s - before.server_cpu_s
    b_before, b_after = before.stats["backend"], after.stats["backend"]
    forwarded = int(b_after["forwarded_packets"] - b_before["forwarded_packets"])
    forward_cpu = float(b_after["forward_cpu_s"] - b_before["forward_cpu_s"])
    joined = len(join_ms)
    server_pct = server_cpu / wall * 100
    per_sub = server_pct / joined if joined else None
    idle_before, idle_after = idle
    idle_pct = (
        (idle_after.server_cpu_s - idle_before.server_cpu_s)
        / (idle_after.at - idle_before.at)
        * 100
    )
    marginal_cpu = max(0.0, server_cpu - idle_pct / 100 * wall)

    floor_before, floor_after = floor
    floor_forwarded = int(
        floor_after.stats["backend"]["forwarded_packets"]
        - floor_before.stats["backend"]["forwarded_packets"]
    )
    floor_cpu = floor_after.server_cpu_s - floor_before.server_cpu_s
    floor_counters = _floor_counters(floor_before, floor_after)

    hall_before = before.stats["published"].get(HALL["name"], {}).get("video", {})
    hall_after = after.stats["published"].get(HALL["name"], {}).get("video", {})
    video_kbps = None
    unprocessed = None
    sent = after.hall_sent.get("video", 0) - before.hall_sent.get("video", 0)
    if hall_after:
        video_kbps = (hall_after["bytes_in"] - hall_before.get("bytes_in", 0)) * 8 / wall / 1000
        arrived = hall_after["packets_in"] - hall_before.get("packets_in", 0)
        unprocessed = max(0.0, (sent - arrived) / sent * 100) if sent > 0 else None

    fps = [round(float(s["fps"]), 2) for s in decoded]
    audio_ms: list[float | None] = []
    video_ms: list[float | None] = []
    per_switch: list[dict[str, Any]] = []
    for index, switch in enumerate(switches):
        seen = [s["switches"][index] for s in decoded if index < len(s["switches"])]
        audio = [None if x["audio_ms"] is None else float(x["audio_ms"]) for x in seen]
        video = [None if x["video_ms"] is None else float(x["video_ms"]) for x in seen]
        audio_ms.extend(audio)
        video_ms.extend(video)
        per_switch.append(
            {
                "to": switch["source"],
                "route_call_ms": switch["route_call_ms"],
                "audio_ms": [_round(v) for v in audio],
                "video_ms": [_round(v) for v in video],
            }
        )
    missed = {
        "audio": sum(v is None for v in audio_ms),
        "video": sum(v is None for v in video_ms),
    }
    load_pps = [float(s["program_video_pps"]) for s in counted]
    decoders = int(after.stats["backend"]["decoders_created"])
    encoders = int(after.stats["backend"]["encoders_created"])
    for snap in (floor_after,):
        decoders = max(decoders, int(snap.stats["backend"]["decoders_created"]))
        encoders = max(encoders, int(snap.stats["backend"]["encoders_created"]))

    join_p95 = percentile(join_ms, 0.95)
    fps_min = min(fps) if fps else None
    us_per_packet = server_cpu / forwarded * 1e6 if forwarded else None
    audio_p95 = _p95(audio_ms)
    video_p95 = _p95(video_ms)
    passed = {
        "cpu_per_subscriber_pct": per_sub is not None
        and per_sub <= TARGETS["cpu_per_subscriber_pct"],
        "fps_min": fps_min is not None and fps_min >= TARGETS["fps_min"],
        "us_per_packet": us_per_packet is not None and us_per_packet <= TARGETS["us_per_packet"],
        "codecs_created": decoders == 0 and encoders == 0,
        "join_to_first_frame_p95_ms": joined == options.subscribers
        and join_p95 is not None
        and join_p95 < TARGETS["join_to_first_frame_p95_ms"],
        "floor_switch_audio_p95_ms": audio_p95 is not None
        and audio_p95 < TARGETS["floor_switch_audio_p95_ms"],
        "floor_switch_video_p95_ms": video_p95 is not None
        and video_p95 < TARGETS["floor_switch_video_p95_ms"],
    }
    states = after.stats.get("subscriber_states", {})
    if states.get("connected", 0) != joined:
        notes.append(f"server-side subscriber states at the window's end: {states}")
    return MediaResult(
        subscribers=options.subscribers,
        joined=joined,
        decoding=min(options.decoding, options.subscribers),
        load_only=options.load_only,
        load_processes=options.load_process_count,
        codec=options.codec,
        workers=options.workers,
        window_s=round(wall, 2),
        server_cpu_pct=round(server_pct, 1),
        cpu_per_subscriber_pct=_round(per_sub, 3),
        subscribers_per_core=_round(100 / per_sub if per_sub else None),
        us_per_packet=_round(us_per_packet),
        server_idle_cpu_pct=round(idle_pct, 1),
        marginal_cpu_per_subscriber_pct=_round(
            (server_pct - idle_pct) / joined if joined else None, 3
        ),
        marginal_us_per_packet=_round(marginal_cpu / forwarded * 1e6 if forwarded else None),
        forward_us_per_packet=_round(forward_cpu / forwarded * 1e6 if forwarded else None),
        forwarded_packets=forwarded,
        loop_lag_max_ms=round(float(after.stats["backend"].get("loop_lag_max_s", 0.0)) * 1000, 2),
        packets_per_subscriber_per_s=_round(forwarded / wall / joined if joined else None),
        fps_min=fps_min,
        fps=fps,
        encoders_created=encoders,
        decoders_created=decoders,
        join_to_first_frame_p50_ms=_round(percentile(join_ms, 0.5)),
        join_to_first_frame_p95_ms=_round(join_p95),
        join_decoding_ms=[round(v, 1) for v in join_decoding],
        join_failures=dict(failures),
        floor_switch_audio_p95_ms=audio_p95,
        floor_switch_video_p95_ms=video_p95,
        floor_switches=per_switch,
        floor_switch_missed=missed,
        floor_phase_us_per_packet=_round(
            floor_cpu / floor_forwarded * 1e6 if floor_forwarded else None
        ),
        floor_phase_counters=floor_counters,
        program_video_kbps=_round(video_kbps, 0),
        program_video_codec=hall_after.get("codec"),
        program_video_sent_pps=round(sent / wall, 1),
        program_unprocessed_pct=_round(unprocessed, 2),
        udp_receive_buffer_drops=after.udp_drops - before.udp_drops,
        program_keyframes=int(hall_after.get("keyframes", 0)),
        program_plis_up=int(hall_after.get("plis_up", 0)),
        decoding_loss_pct=_loss_pct(decoded),
        load_only_video_pps_min=_round(min(load_pps) if load_pps else None),
        load_only_loss_pct=_loss_pct(counted),
        clients_cores=round((after.clients_cpu_s - before.clients_cpu_s) / wall, 2),
        other_load_cores=other_cores,
        workers_used=list(after.stats.get("workers_used", [])),
        targets=dict(TARGETS),
        passed=passed,
        passed_all=all(passed.values()),
        machine=machine,
        command=options.command(),
        argv=list(sys.argv),
        wall_s=round(time.monotonic() - started, 1),
        notes=notes,
    )


def render(result: MediaResult) -> Table:
    """The result as a table for a terminal."""

    def num(value: float | None, unit: str = "", digits: int = 1) -> str:
        return "-" if value is None else f"{value:,.{digits}f}{unit}"

    verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]"}
    targets = result.targets
    machine = result.machine
    table = Table(
        "measure",
        "value",
        "target",
        "result",
        title=f"media: {result.joined}/{result.subscribers} subscribers ({result.decoding} "
        f"decoding), {result.codec}, workers {result.workers}; {machine['cores']} cores, "
        f"Python {machine['python']}",
        caption=result.command,
    )
    table.add_row(
        "server CPU (window)",
        f"{result.server_cpu_pct:.1f} % of a core over {result.window_s:.1f} s",
        "",
        "",
    )
    table.add_row(
        "CPU per subscriber",
        f"{num(result.cpu_per_subscriber_pct, ' %', 3)} ({num(result.subscribers_per_core)} per core)",
        f"≤ {targets['cpu_per_subscriber_pct']:g} % (100 per core)",
        verdict[result.passed["cpu_per_subscriber_pct"]],
    )
    table.add_row(
        "server CPU per forwarded packet",
        f"{num(result.us_per_packet, ' µs')} (fan-out alone {num(result.forward_us_per_packet, ' µs')}; "
        f"{result.forwarded_packets:,} packets, {num(result.packets_per_subscriber_per_s)}/s each)",
        f"≤ {targets['us_per_packet']:g} µs",
        verdict[result.passed["us_per_packet"]],
    )
    table.add_row(
        "beyond the publishers-only CPU",
        f"{result.server_idle_cpu_pct:.1f} % with no subscriber; then "
        f"{num(result.marginal_cpu_per_subscriber_pct, ' %', 3)} per subscriber, "
        f"{num(result.marginal_us_per_packet, ' µs')} per packet",
        "",
        "",
    )
    table.add_row(
        "fps at decoding subscribers (min)",
        f"{num(result.fps_min, '', 2)} {result.fps}",
        f"≥ {targets['fps_min']:g}",
        verdict[result.passed["fps_min"]],
    )
    table.add_row(
        "encoders / decoders in the server",
        f"{result.encoders_created} / {result.decoders_created}",
        "0 / 0",
        verdict[result.passed["codecs_created"]],
    )
    table.add_row(
        "join → first frame p50 / p95",
        f"{num(result.join_to_first_frame_p50_ms, ' ms')} / "
        f"{num(result.join_to_first_frame_p95_ms, ' ms')}",
        f"p95 < {targets['join_to_first_frame_p95_ms']:g} ms",
        verdict[result.passed["join_to_first_frame_p95_ms"]],
    )
    table.add_row(
        "floor switch audio p95",
        num(result.floor_switch_audio_p95_ms, " ms"),
        f"< {targets['floor_switch_audio_p95_ms']:g} ms",
        verdict[result.passed["floor_switch_audio_p95_ms"]],
    )
    table.add_row(
        "floor switch video p95",
        num(result.floor_switch_video_p95_ms, " ms"),
        f"< {targets['floor_switch_video_p95_ms']:g} ms",
        verdict[result.passed["floor_switch_video_p95_ms"]],
    )
    table.add_row(
        "program video at the server",
        f"{num(result.program_video_kbps, ' kb/s', 0)} {result.program_video_codec or ''} "
        f"(hall sent {result.program_video_sent_pps:.0f} packets/s, "
        f"{num(result.program_unprocessed_pct, ' %', 2)} of them not processed in the window)",
        "~1,200 kb/s",
        "",
    )
    table.add_row(
        "packet loss in the window: decoding / load-only",
        f"{num(result.decoding_loss_pct, ' %', 3)} / {num(result.load_only_loss_pct, ' %', 3)}",
        "",
        "",
    )
    table.add_row(
        "UDP datagrams dropped by full receive buffers (machine)",
        f"{result.udp_receive_buffer_drops:,}",
        "",
        "",
    )
    table.add_row(
        "load-only: program video packets/s (min)",
        num(result.load_only_video_pps_min),
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
