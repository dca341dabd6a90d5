"""Our embedded media plane side by side with Janus VideoRoom, in one run.

For each load N, one server after the other (ours, then Janus), with the same publisher (the media
benchmark's hall: VP8 640x360 30 fps pinned at ~1.2 Mb/s with a band of noise, plus Opus) and the
same subscriber clients (`sfu_procs`: aiortc peers counting RTP packets before any decoder, one of
them decoding): the server's CPU is read from /proc over a window with the publisher alone, then
over a window with N subscribers receiving. The difference over N is the server's CPU per
subscriber (the publisher's own cost is the same for both and cancels out); subscribers per core
is its inverse. Delivery is checked, not assumed: each subscriber's packets in the window against
what the publisher sent, and one decoding subscriber's frame rate, so a server that drops packets
cannot look cheap.

Ours runs as the media benchmark runs it (`media_procs.serve_media`, the backend the service
builds; `--workers 0`: the forwarder on one loop). Janus runs in its best configuration here,
`event_loops` shared loops (see `sfu_janus`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.table import Table

from app.benchmarks import media_procs as procs
from app.benchmarks import sfu_procs
from app.benchmarks.media import HALL, HALL_BITRATE, BenchError, _Hub, _Proc, tree_cpu_seconds
from app.benchmarks.sfu_janus import JanusClient, JanusError, JanusServer, janus_version
from app.benchmarks.signaling import _sigterm_unwinds, machine_info

__all__ = ["TARGETS", "BenchError", "SfuOptions", "SfuResult", "as_dict", "render", "run"]

TARGETS: dict[str, float] = {"ours_to_janus_subscribers_per_core": 0.5}
SERVERS = ("diemcau", "janus")
PUBLISHER_SETTLE_S = 3.0
OFFER_BATCH = 5


@dataclass(frozen=True)
class SfuOptions:
    subscribers: tuple[int, ...] = (50, 100)
    decoding: int = 1
    window_s: float = 10.0
    baseline_s: float = 5.0
    settle_s: float = 3.0
    processes: int = 2
    """Subscriber processes (the clients share the machine with the server)."""
    event_loops: int = 2
    workers: int = 0

    def command(self) -> str:
        return (
            f"diemcau bench janus --subscribers {','.join(map(str, self.subscribers))} "
            f"--decoding {self.decoding} --window-s {self.window_s:g} "
            f"--processes {self.processes} --event-loops {self.event_loops} "
            f"--workers {self.workers}"
        )


@dataclass
class ServerFigures:
    server: str
    subscribers: int
    connected: int
    join_s: float
    baseline_cores: float
    """The server's CPU (cores) with the publisher alone."""
    loaded_cores: float
    cpu_per_subscriber_pct: float | None
    subscribers_per_core: float | None
    publisher_video_pps: float
    video_pps_p50: float
    """Per load-only subscriber, video packets per second in the window (median)."""
    delivered_pct_min: float | None
    """The least any load-only subscriber got of what the publisher sent (video, in the window)."""
    decoded_fps: float | None
    lost_packets: int
    failures: list[str] = field(default_factory=list)


@dataclass
class SfuResult:
    runs: list[ServerFigures]
    ratios: dict[str, float | None]
    """Per N: our subscribers per core over Janus's."""
    ratio: float | None
    """At the largest N."""
    janus_version: str | None
    event_loops: int
    targets: dict[str, float]
    passed: dict[str, bool]
    passed_all: bool
    machine: dict[str, Any]
    command: str
    argv: list[str]
    wall_s: float
    notes: list[str] = field(default_factory=list)


def as_dict(result: SfuResult) -> dict[str, Any]:
    data = asdict(result)
    data["pass"] = data.pop("passed")
    return data


# ---- pure helpers ------------------------------------------------------------------------------


def per_subscriber(
    baseline_cores: float, loaded_cores: float, n: int
) -> tuple[float | None, float | None]:
    """(CPU % of a core per subscriber, subscribers per core) from the marginal cost."""
    if n <= 0:
        return None, None
    pct = (loaded_cores - baseline_cores) / n * 100
    if pct <= 0:
        return None, None
    return round(pct, 3), round(100 / pct, 1)


def ratio_of(ours: float | None, janus: float | None) -> float | None:
    if ours is None or janus is None or janus <= 0:
        return None
    return round(ours / janus, 2)


def split(names: list[str], parts: int) -> list[list[str]]:
    return [chunk for chunk in (names[k::parts] for k in range(parts)) if chunk]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_options(options: SfuOptions) -> None:
    if not options.subscribers or any(not 1 <= n <= 500 for n in options.subscribers):
        raise BenchError("--subscribers must be a list of numbers 1..500")
    if not 0 <= options.decoding <= min(options.subscribers):
        raise BenchError("--decoding must be 0..the smallest --subscribers")
    if options.window_s < 2 or options.baseline_s < 1:
        raise BenchError("--window-s must be 2 or more")
    if not 1 <= options.processes <= 8:
        raise BenchError("--processes must be 1..8")
    if not 1 <= options.event_loops <= 16:
        raise BenchError("--event-loops must be 1..16")


# ---- the run -----------------------------------------------------------------------------------


def run(options: SfuOptions) -> SfuResult:
    check_options(options)
    version = janus_version()
    if version is None:
        raise BenchError("Janus is not installed (apt-get install janus): nothing to compare with")
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        raise BenchError("gcc is needed for the Janus loopback shim (apt-get install gcc)")
    started = time.monotonic()
    machine = machine_info()
    machine["versions"]["janus"] = version
    for package in ("aiortc", "aioice", "av", "pylibsrtp"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            machine["versions"][package] = metadata.version(package)
    tmp = Path(tempfile.mkdtemp(prefix="diemcau-bench-janus-"))
    runs: list[ServerFigures] = []
    notes: list[str] = []
    try:
        with _sigterm_unwinds():
            for n in options.subscribers:
                for server in SERVERS:
                    runs.append(_phase(server, n, options, tmp / f"{server}-{n}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratios: dict[str, float | None] = {}
    for n in options.subscribers:
        by = {r.server: r for r in runs if r.subscribers == n}
        ratios[str(n)] = ratio_of(
            by["diemcau"].subscribers_per_core, by["janus"].subscribers_per_core
        )
    largest = str(max(options.subscribers))
    ratio = ratios[largest]
    delivered = all(
        r.connected == r.subscribers
        and r.delivered_pct_min is not None
        and r.delivered_pct_min >= 95
        for r in runs
    )
    if not delivered:
        notes.append("a server did not deliver 95% of the publisher's packets to every subscriber")
    passed = {
        "ours_to_janus_subscribers_per_core": ratio is not None
        and ratio >= TARGETS["ours_to_janus_subscribers_per_core"]
        and delivered
    }
    return SfuResult(
        runs=runs,
        ratios=ratios,
        ratio=ratio,
        janus_version=version,
        event_loops=options.event_loops,
        targets=dict(TARGETS),
        passed=passed,
        passed_all=all(passed.values()),
        machine=machine,
        command=options.command(),
        argv=list(sys.argv),
        wall_s=round(time.monotonic() - started, 1),
        notes=notes,
    )


def _stop(hub: _Hub, proc: _Proc) -> None:
    with contextlib.suppress(OSError, ValueError):
        proc.commands.send({"cmd": "quit"})
    proc.process.join(15)
    if proc.process.is_alive():
        proc.process.terminate()
        proc.process.join(10)
    if proc.process.is_alive():
        proc.process.kill()
        proc.process.join(5)
    proc.gone = True
    hub.procs.remove(proc)


def _phase(server: str, n: int, options: SfuOptions, folder: Path) -> ServerFigures:
    hub = _Hub()
    janus: JanusServer | None = None
    client: JanusClient | None = None
    try:
        publisher = hub.spawn(
            f"bench-janus-publisher-{server}", procs.publisher_worker, HALL_BITRATE
        )
        subscribers = [
            hub.spawn(f"bench-janus-subscribers-{server}-{k}", sfu_procs.subscriber_worker)
            for k in range(options.processes)
        ]
        if server == "diemcau":
            hub.server = hub.spawn(
                "bench-janus-diemcau", procs.serve_media, options.workers, daemon=False
            )
        hub.ready(60)
        offer = hub.request(publisher, {"cmd": "offer", "spec": {**HALL, "codec": "VP8"}}, 60)
        feed = 0
        if hub.server is not None:
            answer = hub.request(
                hub.server,
                {
                    "cmd": "publish",
                    "participant": HALL["name"],
                    "sdp": offer["sdp"],
                    "role": "hall",
                },
                60,
            )["sdp"]
            hub.request(hub.server, {"cmd": "route", "routes": {"program": HALL["name"]}}, 30)
            pid = hub.server.pid
        else:
            port = free_port()
            low = 20000 + (port % 200) * 100
            janus = JanusServer(folder, port, options.event_loops, (low, low + 2000))
            janus.start()
            client = JanusClient(janus.url)
            handle = client.attach()
            client.create_room(handle)
            feed, answer = client.publish(handle, offer["sdp"])
            pid = janus.pid
        hub.request(publisher, {"cmd": "accept", "name": HALL["name"], "sdp": answer}, 60)
        hub.sleep(PUBLISHER_SETTLE_S)

        cpu0, at0 = tree_cpu_seconds(pid), time.monotonic()
        hub.sleep(options.baseline_s)
        baseline = (tree_cpu_seconds(pid) - cpu0) / (time.monotonic() - at0)

        names = [f"sub-{k:03d}" for k in range(n)]
        shares = split(names, len(subscribers))
        decoding = names[: options.decoding]
        joined_at = time.monotonic()
        if hub.server is not None:
            connected, failures = _join_ours(hub, subscribers, shares, decoding)
        else:
            assert client is not None
            connected, failures = _join_janus(hub, client, feed, subscribers, shares, decoding)
        join_s = time.monotonic() - joined_at
        hub.sleep(options.settle_s)

        sent0 = _sent_video(hub, publisher)
        cpu0, at0 = tree_cpu_seconds(pid), time.monotonic()
        hub.sleep(options.window_s)
        cpu1, at1 = tree_cpu_seconds(pid), time.monotonic()
        sent1 = _sent_video(hub, publisher)
        loaded = (cpu1 - cpu0) / (at1 - at0)
        windows = hub.gather(
            [
                (proc, hub.send(proc, {"cmd": "window", "since": at0, "until": at1}))
                for proc in subscribers
            ],
            60,
        )
        counted = {name: c for w in windows for name, c in w["counted"].items()}
        decoded = [frames for w in windows for frames in w["decoded"].values()]
        sent = max(1, sent1 - sent0)
        video = [c["video"] for c in counted.values()]
        pct, per_core = per_subscriber(baseline, loaded, n)
        hub.gather([(proc, hub.send(proc, {"cmd": "close"})) for proc in subscribers], 60)
        return ServerFigures(
            server=server,
            subscribers=n,
            connected=connected,
            join_s=round(join_s, 2),
            baseline_cores=round(baseline, 3),
            loaded_cores=round(loaded, 3),
            cpu_per_subscriber_pct=pct,
            subscribers_per_core=per_core,
            publisher_video_pps=round(sent / (at1 - at0), 1),
            video_pps_p50=round(statistics.median(video) / (at1 - at0), 1) if video else 0.0,
            delivered_pct_min=round(min(video) / sent * 100, 1) if video else None,
            decoded_fps=round(statistics.median(decoded) / (at1 - at0), 1) if decoded else None,
            lost_packets=sum(int(c["lost"]) for c in counted.values()),
            failures=failures,
        )
    except JanusError as exc:
        raise BenchError(str(exc)) from None
    finally:
        if client is not None:
            client.close()
        if janus is not None:
            janus.stop()
        hub.close()


def _join_ours(
    hub: _Hub, subscribers: list[_Proc], shares: list[list[str]], decoding: list[str]
) -> tuple[int, list[str]]:
    assert hub.server is not None
    offers = hub.gather(
        [
            (proc, hub.send(proc, {"cmd": "offer", "names": share, "decoding": decoding}))
            for proc, share in zip(subscribers, shares, strict=False)
        ],
        120,
    )
    connected = 0
    failures: list[str] = []
    asked = []
    for proc, answer in zip(subscribers, offers, strict=False):
        # A few at a time: with every offer sent at once, the server's replies fill its pipe
        # while this process is still writing offers into the other one.
        answers: dict[str, str] = {}
        items = list(answer["offers"].items())
        for start in range(0, len(items), OFFER_BATCH):
            batch = items[start : start + OFFER_BATCH]
            rids = [
                hub.send(
                    hub.server,
                    {"cmd": "subscribe", "participant": name, "sdp": sdp, "slots": ["program"]},
                )
                for name, sdp in batch
            ]
            replies = hub.gather([(hub.server, rid) for rid in rids], 120)
            answers.update({name: r["sdp"] for (name, _), r in zip(batch, replies, strict=True)})
        asked.append((proc, hub.send(proc, {"cmd": "accept", "answers": answers})))
    for result in hub.gather(asked, 120):
        connected += int(result["connected"])
        failures.extend(result["failed"])
    return connected, failures


def _join_janus(
    hub: _Hub,
    client: JanusClient,
    feed: int,
    subscribers: list[_Proc],
    shares: list[list[str]],
    decoding: list[str],
) -> tuple[int, list[str]]:
    handles: dict[str, int] = {}
    offers: list[dict[str, str]] = []
    for share in shares:
        mine: dict[str, str] = {}
        for name in share:
            handles[name] = client.attach()
            mine[name] = client.subscribe(handles[name], feed)
        offers.append(mine)
    answers = hub.gather(
        [
            (proc, hub.send(proc, {"cmd": "answer", "offers": mine, "decoding": decoding}))
            for proc, mine in zip(subscribers, offers, strict=False)
        ],
        120,
    )
    for answer in answers:
        for name, sdp in answer["answers"].items():
            client.start(handles[name], sdp)
    connected = 0
    failures: list[str] = []
    for result in hub.gather(
        [
            (proc, hub.send(proc, {"cmd": "wait", "names": share}))
            for proc, share in zip(subscribers, shares, strict=False)
        ],
        120,
    ):
        connected += int(result["connected"])
        failures.extend(result["failed"])
    return connected, failures


def _sent_video(hub: _Hub, publisher: _Proc) -> int:
    packets = hub.request(publisher, {"cmd": "sent"}, 30)["packets"]
    return int(packets.get(HALL["name"], {}).get("video", 0))


# ---- the table -----------------------------------------------------------------------------------


def render(result: SfuResult) -> Table:
    def num(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:,.2f}{unit}"

    machine = result.machine
    table = Table(
        "server",
        "N",
        "connected",
        "server CPU: publisher alone → with N (cores)",
        "CPU per subscriber",
        "subscribers per core",
        "video pkt/s per subscriber (publisher)",
        "least delivered",
        "decoded fps",
        title=f"side by side: diemcau's embedded plane and Janus {result.janus_version} "
        f"(event_loops {result.event_loops}); {machine['cores']} cores, {machine['cpu']}",
        caption=result.command,
    )
    for r in result.runs:
        table.add_row(
            r.server,
            str(r.subscribers),
            f"{r.connected}/{r.subscribers}",
            f"{r.baseline_cores:.3f} → {r.loaded_cores:.3f}",
            num(r.cpu_per_subscriber_pct, " %"),
            num(r.subscribers_per_core),
            f"{r.video_pps_p50:.0f} ({r.publisher_video_pps:.0f})",
            num(r.delivered_pct_min, " %"),
            num(r.decoded_fps),
        )
    verdict = "[green]pass[/green]" if result.passed_all else "[red]FAIL[/red]"
    ratios = ", ".join(f"N={n}: {num(v)}" for n, v in result.ratios.items())
    table.add_row(
        "ours / Janus",
        "",
        "",
        "",
        "",
        ratios,
        "",
        f"target ≥ {TARGETS['ours_to_janus_subscribers_per_core']}",
        verdict,
    )
    for note in result.notes:
        table.add_row("note", "", "", note, "", "", "", "", "")
    return table
