"""How the live side holds up: a join storm of N points, then session events fanned out to all of them.

One run starts the real server (`uvicorn.Server(server_config(settings))`) in its own process on a
fresh, migrated SQLite database, prepares a session through the HTTP API (import, invite, join links,
open), and drives N points as real WebSocket clients from K client processes. It measures, per point,
connect start → `welcome`; per (event, point), receive time − the event's `at` (the server's wall clock
when the event was written; one machine, one clock). In the same run, the same clients take the same
number of same-sized messages from a plain `websockets` server using its own `broadcast()`: the
baseline the fan-out is compared with. Server RSS comes from /proc, server-side fan-out time and event
loop lag from the server's /metrics (histograms, differenced over the measured phase).

Everything is bounded by timeouts; processes and the temporary directory are removed even on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from app.benchmarks import signaling_procs as procs

ROOT = Path(__file__).resolve().parents[2]
NATIONAL_CSV = ROOT / "examples" / "vietnam-communes-2025.csv"
HANOI_CSV = ROOT / "examples" / "hanoi-wards-2024.csv"
MAX_POINTS = 3321
ADMIN = "bench-admin"

# The targets, stated for N = 3,321 and applied to every N.
TARGETS: dict[str, float] = {
    "all_joined_s": 60.0,
    "join_p99_ms": 1000.0,
    "fanout_p99_ms": 100.0,
    "fanout_p99_vs_baseline": 1.5,
    "rss_per_point_kib": 64.0,
    "loop_lag_p99_ms": 50.0,
}


class BenchError(RuntimeError):
    """The benchmark could not run (the server did not start, a step of the setup failed)."""


@dataclass(frozen=True)
class SignalingOptions:
    points: int
    processes: int = 2
    events: int = 20
    event_interval_ms: int = 300
    batch: int = 0  # points per join batch; 0: all at once
    batch_interval_ms: int = 100
    join_timeout_s: float = 60.0
    profile_dir: Path | None = None
    server_gc_freeze: bool = False

    def command(self) -> str:
        return (
            f"diemcau bench signaling --points {self.points} --processes {self.processes} "
            f"--events {self.events} --event-interval-ms {self.event_interval_ms} "
            f"--batch {self.batch} --batch-interval-ms {self.batch_interval_ms} "
            f"--join-timeout-s {self.join_timeout_s:g}"
            + (" --server-gc-freeze" if self.server_gc_freeze else "")
        )


@dataclass
class SignalingResult:
    points: int
    joined: int
    processes: int
    source_file: str
    arrival: str
    all_joined_s: float | None
    join_p50_ms: float | None
    join_p99_ms: float | None
    join_max_ms: float | None
    join_failures: dict[str, int]
    events: int
    fanout_p50_ms: float | None
    fanout_p99_ms: float | None
    fanout_max_ms: float | None
    fanout_first_p50_ms: float | None
    fanout_received: int
    fanout_expected: int
    event_bytes: int
    server_fanout_mean_ms: float | None
    server_fanout_p99_ms: float | None
    server_cpu_per_message_us: float
    baseline_connections: int
    baseline_fanout_p50_ms: float | None
    baseline_fanout_p99_ms: float | None
    baseline_fanout_max_ms: float | None
    baseline_first_p50_ms: float | None
    baseline_received: int
    baseline_expected: int
    baseline_cpu_per_message_us: float
    rss_before_kib: int
    rss_joined_kib: int
    rss_per_point_kib: float
    loop_lag_p99_ms: float | None
    loop_lag_max_bucket_ms: float | None
    loop_lag_samples: int
    server_cpu_join_s: float
    server_cpu_fanout_s: float
    server_gc: dict[str, Any]
    server_point_connections: float | None
    closed_during_fanout: dict[str, int]
    other_load_cores: dict[str, float]
    patch_p50_ms: float | None
    targets: dict[str, float]
    passed: dict[str, bool]
    passed_all: bool
    machine: dict[str, Any]
    command: str
    argv: list[str]
    wall_s: float
    notes: list[str] = field(default_factory=list)


def as_dict(result: SignalingResult) -> dict[str, Any]:
    data = asdict(result)
    data["pass"] = data.pop("passed")
    return data


# ---- small measurements ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), ascending, +Inf last


def bucket_quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile of a Prometheus histogram, interpolated as `histogram_quantile` does."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


@dataclass
class Histogram:
    buckets: Buckets
    total: float
    count: float

    def minus(self, earlier: Histogram | None) -> Histogram:
        if earlier is None:
            return self
        before = dict(earlier.buckets)
        return Histogram(
            buckets=[(le, n - before.get(le, 0.0)) for le, n in self.buckets],
            total=self.total - earlier.total,
            count=self.count - earlier.count,
        )

    def highest_bucket(self) -> float | None:
        """Upper bound of the highest bucket that holds an observation (inf: above them all)."""
        below = 0.0
        highest = None
        for upper, count in self.buckets:
            if count > below:
                highest = upper
            below = count
        return highest


@dataclass
class Scrape:
    histograms: dict[str, Histogram]
    samples: dict[str, float]


def parse_metrics(text: str) -> Scrape:
    histograms: dict[str, Histogram] = {}
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.type == "histogram":
            buckets: Buckets = []
            total = count = 0.0
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets.append((float(sample.labels["le"]), sample.value))
                elif sample.name.endswith("_sum"):
                    total = sample.value
                elif sample.name.endswith("_count"):
                    count = sample.value
            histograms[family.name] = Histogram(sorted(buckets), total, count)
        else:
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
    return Scrape(histograms, samples)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many cores processes other than this benchmark's kept busy during a phase."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.started = (time.monotonic(), machine_busy_seconds(), self._ours())

    def _ours(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += cpu_seconds(pid)
        return total

    def cores(self) -> float:
        wall, busy, ours = self.started
        elapsed = time.monotonic() - wall
        if elapsed <= 0:
            return 0.0
        others = (machine_busy_seconds() - busy) - (self._ours() - ours)
        return round(max(0.0, others) / elapsed, 2)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
    versions: dict[str, str] = {}
    for package in (
        "uvicorn",
        "websockets",
        "fastapi",
        "starlette",
        "uvloop",
        "httptools",
        "pydantic",
        "sqlalchemy",
        "aiosqlite",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    versions["sqlite"] = sqlite3.sqlite_version
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


# ---- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while the run lasts, so that its cleanup runs."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Worker:
    process: SpawnProcess
    commands: Connection
    answers: Connection


class _Bench:
    def __init__(self, options: SignalingOptions, tmp: Path) -> None:
        self.options = options
        self.tmp = tmp
        self.ctx = multiprocessing.get_context("spawn")
        self.processes: list[SpawnProcess] = []
        self.workers: list[_Worker] = []
        self.baseline: _Worker | None = None
        self.server: SpawnProcess | None = None
        self.http: httpx.Client | None = None
        self.baseline_port = 0
        self.phase_dir = tmp / "phases"
        self.notes: list[str] = []

    # ---- processes ----

    def _spawn(self, name: str, target: Any, *args: Any) -> SpawnProcess:
        process = self.ctx.Process(target=target, args=args, name=name, daemon=True)
        process.start()
        self.processes.append(process)
        return process

    def _piped(self, name: str, target: Any, *args: Any) -> _Worker:
        commands_out, commands_in = self.ctx.Pipe(duplex=False)
        answers_out, answers_in = self.ctx.Pipe(duplex=False)
        process = self._spawn(name, target, *args, commands_out, answers_in)
        commands_out.close()
        answers_in.close()
        return _Worker(process, commands_in, answers_out)

    def _ask(
        self, workers: list[_Worker], commands: list[dict[str, Any]], timeout_s: float
    ) -> list[Any]:
        for worker, command in zip(workers, commands, strict=True):
            try:
                worker.commands.send(command)
            except OSError as exc:
                raise BenchError(f"{worker.process.name} is gone: {exc}") from None
        return [self._answer(worker, timeout_s) for worker in workers]

    def _answer(self, worker: _Worker, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if worker.answers.poll(0.2):
                try:
                    return worker.answers.recv()
                except EOFError:
                    break
            if not worker.process.is_alive():
                break
        raise BenchError(
            f"{worker.process.name} did not answer within {timeout_s:.0f} s "
            f"(exit code {worker.process.exitcode})"
        )

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        for worker in [*self.workers, *([self.baseline] if self.baseline else [])]:
            with contextlib.suppress(OSError, ValueError):
                worker.commands.send({"cmd": "quit"})
        deadline = time.monotonic() + 10
        for process in self.processes:
            process.join(max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(15)
            if process.is_alive():
                process.kill()
                process.join(5)

    def phase(self, name: str, *, start: bool) -> dict[str, Any]:
        """Start a measured phase in the server, or end it and read its GC pauses."""
        if self.server is None or self.server.pid is None:
            return {}
        os.kill(self.server.pid, signal.SIGUSR1 if start else signal.SIGUSR2)
        if start:
            time.sleep(0.1)
            return {}
        path = self.phase_dir / f"{name}.gc.json"
        deadline = time.monotonic() + 60
        while not path.exists():
            if time.monotonic() > deadline or not self.server.is_alive():
                self.notes.append(f"the server wrote no GC record for the {name} phase")
                return {}
            time.sleep(0.05)
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def load(self) -> OtherLoad:
        pids = [os.getpid(), *(p.pid for p in self.processes if p.pid is not None)]
        return OtherLoad(pids)

    def close_points(self) -> None:
        self._ask(self.workers, [{"cmd": "close"}] * len(self.workers), timeout_s=60)

    def stop_server(self) -> None:
        if self.server is not None and self.server.is_alive():
            self.server.terminate()  # SIGTERM: uvicorn shuts down gracefully
            self.server.join(20)
            if self.server.is_alive():
                self.server.kill()
                self.server.join(5)

    # ---- setup ----

    def source(self) -> tuple[Path, bytes]:
        points = self.options.points
        if points == 526:
            return HANOI_CSV, HANOI_CSV.read_bytes()
        lines = NATIONAL_CSV.read_bytes().splitlines(keepends=True)
        return NATIONAL_CSV, b"".join(lines[: points + 1])

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
            "DIEMCAU_WS_MAX_PER_ADDRESS": str(max(4000, self.options.points + 100)),
            "DIEMCAU_METRICS_ENABLED": "true",
        }
        profile = self.options.profile_dir
        self.phase_dir = profile.resolve() if profile else self.tmp / "phases"
        for name in procs.PHASES:  # records of an earlier run in the same profile directory
            (self.phase_dir / f"{name}.gc.json").unlink(missing_ok=True)
        self.server = self._spawn(
            "diemcau-bench-server",
            procs.serve_diemcau,
            env,
            str(self.phase_dir),
            profile is not None,
            self.options.server_gc_freeze,
        )
        # The client processes and the baseline server start while the server does.
        self.workers = [
            self._piped(f"diemcau-bench-client-{i}", procs.client_worker)
            for i in range(self.options.processes)
        ]
        self.baseline_port = free_port()
        self.baseline = self._piped(
            "diemcau-bench-baseline", procs.serve_baseline, self.baseline_port
        )
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
        self._answer(self.baseline, 60)  # ready
        return password, port

    def _call(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        assert self.http is not None
        response = self.http.request(method, path, **kwargs)
        if response.status_code != expect:
            raise BenchError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def prepare(
        self, password: str, title: str = "Benchmark: signaling"
    ) -> tuple[int, dict[str, str], list[tuple[str, str]]]:
        """Login, import, session, invite, join links, open: the operator's path, over HTTP.

        Returns the session, the admin's auth header and (point code, credential) per point."""
        token = self._call(
            "POST", "/api/v1/auth/login", json={"username": ADMIN, "password": password}
        )["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        _, data = self.source()
        report = self._call(
            "POST",
            "/api/v1/points/import",
            content=data,
            headers={**auth, "Content-Type": "text/csv"},
        )
        if report["created"] != self.options.points:
            raise BenchError(f"imported {report['created']} points, wanted {self.options.points}")
        session = self._call(
            "POST",
            "/api/v1/sessions",
            expect=201,
            json={"title": title, "hall_name": "Hội trường"},
            headers=auth,
        )
        session_id = int(session["id"])
        self._call(
            "POST", f"/api/v1/sessions/{session_id}/invitations", json={"all": True}, headers=auth
        )
        links = self._call(
            "POST", f"/api/v1/sessions/{session_id}/join-links", json={}, headers=auth
        )
        pairs = [(str(link["point_code"]), str(link["credential"])) for link in links["links"]]
        if len(pairs) != self.options.points:
            raise BenchError(f"minted {len(pairs)} join links")
        self._call("POST", f"/api/v1/sessions/{session_id}/actions/open", headers=auth)
        return session_id, auth, pairs

    def scrape(self) -> Scrape:
        assert self.http is not None
        response = self.http.get("/metrics")
        if response.status_code != 200:
            raise BenchError(f"/metrics: {response.status_code}")
        return parse_metrics(response.text)

    # ---- phases ----

    def join(
        self, ws_url: str, credentials: list[str]
    ) -> tuple[list[float], list[float], Counter[str], float]:
        options = self.options
        k = len(self.workers)
        batch = options.batch or len(credentials)
        interval_s = options.batch_interval_ms / 1000
        t0 = time.time() + 1.0
        shares: list[list[tuple[int, str]]] = [[] for _ in range(k)]
        for index, credential in enumerate(credentials):
            shares[index % k].append((index, credential))
        last_start = ((len(credentials) - 1) // batch) * interval_s
        answers = self._ask(
            self.workers,
            [
                {
                    "cmd": "join",
                    "url": ws_url,
                    "points": share,
                    "t0": t0,
                    "batch": batch,
                    "batch_interval_s": interval_s,
                    "timeout_s": options.join_timeout_s,
                }
                for share in shares
            ],
            timeout_s=1.0 + last_start + options.join_timeout_s + 30,
        )
        join_ms: list[float] = []
        welcomed: list[float] = []
        failures: Counter[str] = Counter()
        for answer in answers:
            join_ms.extend(answer["join_ms"])
            welcomed.extend(answer["welcomed_at"])
            failures.update(answer["failures"])
        return join_ms, welcomed, failures, t0

    def fan_out(self, session_id: int, auth: dict[str, str]) -> tuple[list[Any], list[float]]:
        options = self.options
        interval_s = options.event_interval_ms / 1000
        patch_ms: list[float] = []
        started = time.monotonic()
        for i in range(options.events):
            delay = started + i * interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            self._call(
                "PATCH",
                f"/api/v1/sessions/{session_id}",
                json={"description": f"Benchmark event {i + 1} of {options.events}"},
                headers=auth,
            )
            patch_ms.append((time.perf_counter() - sent) * 1000)
        answers = self._ask(
            self.workers,
            [{"cmd": "collect", "count": options.events, "timeout_s": 15}] * len(self.workers),
            timeout_s=60,
        )
        return answers, patch_ms

    def baseline_fan_out(self, size: int) -> tuple[list[Any], int, float]:
        assert self.baseline is not None
        options = self.options
        k = len(self.workers)
        counts = [len(range(i, options.points, k)) for i in range(k)]
        url = f"ws://127.0.0.1:{self.baseline_port}/"
        connected = self._ask(
            self.workers,
            [{"cmd": "baseline_join", "url": url, "count": n, "timeout_s": 60} for n in counts],
            timeout_s=120,
        )
        for answer in connected:
            if answer["failures"]:
                self.notes.append(f"baseline connect failures: {dict(answer['failures'])}")
        interval_s = options.event_interval_ms / 1000
        pid = self.baseline.process.pid or 0
        cpu_before = cpu_seconds(pid)
        self.baseline.commands.send(
            {"cmd": "broadcast", "count": options.events, "interval_s": interval_s, "size": size}
        )
        done = self._answer(self.baseline, options.events * interval_s + 60)
        cpu_s = cpu_seconds(pid) - cpu_before
        answers = self._ask(
            self.workers,
            [{"cmd": "baseline_collect", "count": options.events, "timeout_s": 15}] * k,
            timeout_s=60,
        )
        return answers, int(done["connections"]), cpu_s


async def _create_admin(url: str, password: str) -> None:
    from app.accounts import service
    from app.accounts.schemas import AccountCreate
    from app.auth.passwords import Passwords
    from models import Role
    from models.engine import create_engine, session_factory, unit_of_work

    engine = create_engine(url)
    try:
        async with unit_of_work(session_factory(engine)) as db:
            await service.create_account(
                db,
                AccountCreate(
                    username=ADMIN, display_name="Benchmark", role=Role.ADMIN, password=password
                ),
                passwords=Passwords(time_cost=1, memory_kib=1024),
                min_length=10,
            )
    finally:
        await engine.dispose()


@dataclass
class Deliveries:
    """What the clients received of one broadcast series."""

    latencies_ms: list[float]
    clients: int
    closes: Counter[str]
    sizes: list[int]
    first_ms: list[float]  # per event: the earliest receipt (the fixed part of the latency)

    @classmethod
    def of(cls, answers: list[Any]) -> Deliveries:
        latencies: list[float] = []
        first: dict[int, float] = {}
        clients = 0
        closes: Counter[str] = Counter()
        sizes: list[int] = []
        for answer in answers:
            for seq, latency in answer["latencies"]:
                latencies.append(latency)
                first[seq] = min(latency, first.get(seq, math.inf))
            clients += int(answer["clients"])
            closes.update(answer["closes"])
            sizes.extend(answer["sizes"])
        return cls(latencies, clients, closes, sizes, list(first.values()))


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def run(options: SignalingOptions) -> SignalingResult:
    if not 1 <= options.points <= MAX_POINTS:
        raise BenchError(f"--points must be 1..{MAX_POINTS} (the rows of {NATIONAL_CSV.name})")
    started = time.monotonic()
    machine = machine_info()
    tmp = Path(tempfile.mkdtemp(prefix="diemcau-bench-signaling-"))
    bench = _Bench(options, tmp)
    try:
        with _sigterm_unwinds():
            return _measure(bench, options, machine, started)
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(
    bench: _Bench, options: SignalingOptions, machine: dict[str, Any], started: float
) -> SignalingResult:
    password, port = bench.start()
    session_id, auth, pairs = bench.prepare(password)
    credentials = [credential for _, credential in pairs]
    pid = bench.server.pid if bench.server is not None else None
    if pid is None:
        raise BenchError("the server process has no pid")
    time.sleep(0.5)
    before = bench.scrape()
    rss_before = rss_kib(pid)
    cpu_before = cpu_seconds(pid)

    load = bench.load()
    bench.phase("join", start=True)
    join_ms, welcomed, failures, t0 = bench.join(f"ws://127.0.0.1:{port}/api/v1/ws", credentials)
    gc_join = bench.phase("join", start=False)
    others = {"join": load.cores()}
    time.sleep(1.0)
    rss_joined = rss_kib(pid)
    cpu_joined = cpu_seconds(pid)
    joined_scrape = bench.scrape()

    load = bench.load()
    bench.phase("fanout", start=True)
    answers, patch_ms = bench.fan_out(session_id, auth)
    gc_fanout = bench.phase("fanout", start=False)
    others["fanout"] = load.cores()
    cpu_after = cpu_seconds(pid)
    after = bench.scrape()
    ours = Deliveries.of(answers)
    bench.close_points()
    bench.stop_server()

    size = int(statistics.median(ours.sizes)) if ours.sizes else 200
    load = bench.load()
    baseline_answers, baseline_connections, baseline_cpu_s = bench.baseline_fan_out(size)
    others["baseline"] = load.cores()
    baseline = Deliveries.of(baseline_answers)
    if baseline.closes:
        bench.notes.append(f"baseline connections closed early: {dict(baseline.closes)}")

    fanout = after.histograms["diemcau_fanout_seconds"].minus(
        joined_scrape.histograms.get("diemcau_fanout_seconds")
    )
    lag = after.histograms["diemcau_event_loop_lag_seconds"].minus(
        before.histograms.get("diemcau_event_loop_lag_seconds")
    )
    lag_highest = lag.highest_bucket()
    if lag_highest is not None and math.isinf(lag_highest):
        finite = [le for le, _ in lag.buckets if not math.isinf(le)]
        bench.notes.append(f"event loop lag above {finite[-1] * 1000:.0f} ms was observed")
        lag_highest = None
    joined = len(join_ms)
    all_joined_s = (max(welcomed) - t0) if joined == options.points and welcomed else None
    fanout_p99 = percentile(ours.latencies_ms, 0.99)
    baseline_p99 = percentile(baseline.latencies_ms, 0.99)
    rss_per_point = (rss_joined - rss_before) / options.points
    join_p99 = percentile(join_ms, 0.99)
    lag_p99 = bucket_quantile(0.99, lag.buckets)
    fanout_expected = options.events * joined
    passed = {
        "all_joined_s": all_joined_s is not None and all_joined_s <= TARGETS["all_joined_s"],
        "join_p99_ms": join_p99 is not None and join_p99 < TARGETS["join_p99_ms"],
        "fanout_p99_ms": fanout_p99 is not None
        and fanout_p99 < TARGETS["fanout_p99_ms"]
        and len(ours.latencies_ms) == fanout_expected,
        "fanout_p99_vs_baseline": fanout_p99 is not None
        and baseline_p99 is not None
        and fanout_p99 <= TARGETS["fanout_p99_vs_baseline"] * baseline_p99,
        "rss_per_point_kib": rss_per_point < TARGETS["rss_per_point_kib"],
        "loop_lag_p99_ms": lag_p99 is not None and lag_p99 * 1000 < TARGETS["loop_lag_p99_ms"],
    }
    batch = options.batch or options.points
    arrival = (
        "all at once"
        if batch >= options.points
        else f"batches of {batch} every {options.batch_interval_ms} ms"
    )
    path, _ = bench.source()
    sent = max(1, len(ours.latencies_ms))
    baseline_sent = max(1, len(baseline.latencies_ms))
    return SignalingResult(
        points=options.points,
        joined=joined,
        processes=options.processes,
        source_file=f"{path.name} (first {options.points} rows)"
        if path == NATIONAL_CSV
        else path.name,
        arrival=arrival,
        all_joined_s=_round(all_joined_s, 3),
        join_p50_ms=_round(percentile(join_ms, 0.5)),
        join_p99_ms=_round(join_p99),
        join_max_ms=_round(max(join_ms) if join_ms else None),
        join_failures=dict(failures),
        events=options.events,
        fanout_p50_ms=_round(percentile(ours.latencies_ms, 0.5)),
        fanout_p99_ms=_round(fanout_p99),
        fanout_max_ms=_round(max(ours.latencies_ms, default=None)),
        fanout_first_p50_ms=_round(percentile(ours.first_ms, 0.5)),
        fanout_received=len(ours.latencies_ms),
        fanout_expected=fanout_expected,
        event_bytes=size,
        server_fanout_mean_ms=_ms(fanout.total / fanout.count) if fanout.count else None,
        server_fanout_p99_ms=_ms(bucket_quantile(0.99, fanout.buckets)),
        server_cpu_per_message_us=round((cpu_after - cpu_joined) / sent * 1e6, 1),
        baseline_connections=baseline_connections,
        baseline_fanout_p50_ms=_round(percentile(baseline.latencies_ms, 0.5)),
        baseline_fanout_p99_ms=_round(baseline_p99),
        baseline_fanout_max_ms=_round(max(baseline.latencies_ms, default=None)),
        baseline_first_p50_ms=_round(percentile(baseline.first_ms, 0.5)),
        baseline_received=len(baseline.latencies_ms),
        baseline_expected=options.events * baseline.clients,
        baseline_cpu_per_message_us=round(baseline_cpu_s / baseline_sent * 1e6, 1),
        rss_before_kib=rss_before,
        rss_joined_kib=rss_joined,
        rss_per_point_kib=round(rss_per_point, 2),
        loop_lag_p99_ms=_ms(lag_p99),
        loop_lag_max_bucket_ms=_ms(lag_highest),
        loop_lag_samples=int(lag.count),
        server_cpu_join_s=round(cpu_joined - cpu_before, 2),
        server_cpu_fanout_s=round(cpu_after - cpu_joined, 2),
        server_gc={"join": gc_join, "fanout": gc_fanout},
        server_point_connections=joined_scrape.samples.get("diemcau_ws_connections{role=point}"),
        closed_during_fanout=dict(ours.closes),
        other_load_cores=others,
        patch_p50_ms=_round(percentile(patch_ms, 0.5)),
        targets=dict(TARGETS),
        passed=passed,
        passed_all=all(passed.values()),
        machine=machine,
        command=options.command(),
        argv=list(sys.argv),
        wall_s=round(time.monotonic() - started, 1),
        notes=bench.notes,
    )


def render(result: SignalingResult) -> Table:
    """The result as a table for a terminal."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f} ms"

    verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]"}
    targets = result.targets
    machine = result.machine
    table = Table(
        "measure",
        "value",
        "target",
        "result",
        title=f"signaling: {result.joined}/{result.points} points joined ({result.arrival}), "
        f"{result.events} events; {machine['cores']} cores, Python {machine['python']}",
        caption=result.command,
    )
    all_joined = "-" if result.all_joined_s is None else f"{result.all_joined_s:.2f} s"
    table.add_row(
        "all joined",
        all_joined,
        f"≤ {targets['all_joined_s']:.0f} s",
        verdict[result.passed["all_joined_s"]],
    )
    table.add_row(
        "join p50 / p99",
        f"{ms(result.join_p50_ms)} / {ms(result.join_p99_ms)}",
        f"p99 < {targets['join_p99_ms']:.0f} ms",
        verdict[result.passed["join_p99_ms"]],
    )
    table.add_row(
        "fan-out p50 / p99",
        f"{ms(result.fanout_p50_ms)} / {ms(result.fanout_p99_ms)} "
        f"({result.fanout_received}/{result.fanout_expected} received)",
        f"p99 < {targets['fanout_p99_ms']:.0f} ms",
        verdict[result.passed["fanout_p99_ms"]],
    )
    table.add_row(
        "baseline p50 / p99",
        f"{ms(result.baseline_fanout_p50_ms)} / {ms(result.baseline_fanout_p99_ms)}",
        f"fan-out p99 ≤ {targets['fanout_p99_vs_baseline']}× this",
        verdict[result.passed["fanout_p99_vs_baseline"]],
    )
    table.add_row(
        "server fan-out mean / p99",
        f"{ms(result.server_fanout_mean_ms)} / {ms(result.server_fanout_p99_ms)}",
        "",
        "",
    )
    table.add_row(
        "RSS per point",
        f"{result.rss_per_point_kib:.1f} KiB",
        f"< {targets['rss_per_point_kib']:.0f} KiB",
        verdict[result.passed["rss_per_point_kib"]],
    )
    table.add_row(
        "loop lag p99",
        ms(result.loop_lag_p99_ms),
        f"< {targets['loop_lag_p99_ms']:.0f} ms",
        verdict[result.passed["loop_lag_p99_ms"]],
    )
    table.add_row(
        "CPU per message: server / baseline",
        f"{result.server_cpu_per_message_us:.0f} µs / {result.baseline_cpu_per_message_us:.0f} µs",
        "",
        "",
    )
    full = result.server_gc.get("fanout", {}).get("collections", {}).get("2")
    if full:
        table.add_row(
            "full GC during fan-out",
            f"{full['count']}×, longest {full['max_ms']:.0f} ms",
            "",
            "",
        )
    table.add_row(
        "server CPU join / fan-out",
        f"{result.server_cpu_join_s:.2f} s / {result.server_cpu_fanout_s:.2f} s",
        "",
        "",
    )
    others = ", ".join(f"{k} {v:.2f}" for k, v in result.other_load_cores.items())
    table.add_row("other load on the machine (cores)", others, "", "")
    if result.join_failures:
        table.add_row("join failures", str(result.join_failures), "", "")
    for note in result.notes:
        table.add_row("note", note, "", "")
    return table
