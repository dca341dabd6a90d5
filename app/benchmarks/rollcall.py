"""How fast and how safely a roll-call fills up: N points confirm within a window while the operator
watches the tally.

One run starts the real server (`diemcau serve`, its own process) on a fresh migrated SQLite
database (WAL, `synchronous=FULL`), prepares a session over the HTTP API (import, invite all, join
links, open), opens round 1 over HTTP, connects the N points (real WebSocket clients in `--processes`
processes) and one operator (a staff WebSocket, its own process). From a common start, every point
confirms once at a uniformly random moment in `--window-s` seconds with its own key and headcount,
and waits for its `ack` (the same message again after a drop or `unavailable`).

Measured: send → `ack` per point (`ack_p50/p99_ms`), and send → the operator's receipt of the first
`rollcall.tally` whose `seq` covers the point's `rollcall.confirmed` event (`tally_lag_p50/p99_ms`).
Afterwards, with the server stopped, the database file itself: one stored confirmation per
acknowledged point (`db_rows`) and `PRAGMA integrity_check`. `lost` counts points never acknowledged.
Bounded by timeouts; every process and the temporary directory go, on success, error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import multiprocessing
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from app.benchmarks import rollcall_procs
from app.benchmarks.signaling import (
    ADMIN,
    HANOI_CSV,
    MAX_POINTS,
    NATIONAL_CSV,
    BenchError,
    _create_admin,
    cpu_seconds,
    free_port,
    machine_info,
    percentile,
)

__all__ = ["TARGETS", "BenchError", "RollcallOptions", "RollcallResult", "as_dict", "render", "run"]

# The targets (issue 6, "Performance"), stated for N = 3,321 on SQLite.
TARGETS: dict[str, float] = {"ack_p99_ms": 300.0, "tally_lag_p99_ms": 1000.0, "lost": 0}


@dataclass(frozen=True)
class RollcallOptions:
    points: int
    window_s: float = 10.0
    processes: int = 2
    timeout_s: float = 120.0

    def command(self) -> str:
        return (
            f"diemcau bench rollcall --points {self.points} --window-s {self.window_s:g} "
            f"--processes {self.processes}"
        )


@dataclass
class RollcallResult:
    points: int
    joined: int
    acked: int
    lost: int
    retries: int
    errors: dict[str, int]
    window_s: float
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    ack_max_ms: float | None
    tally_lag_p50_ms: float | None
    tally_lag_p99_ms: float | None
    tally_lag_max_ms: float | None
    tallies_received: int
    final_counts: dict[str, int]
    headcount_sent: int
    tally_consistent: bool
    db_rows: int
    integrity_check: str
    server_cpu_s: float
    source_file: str
    command: str
    targets: dict[str, float]
    passed: dict[str, bool]
    machine: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0


def as_dict(result: RollcallResult) -> dict[str, Any]:
    return asdict(result)


def tally_lags(
    sent: dict[str, float],
    event_seq: dict[str, int],
    tallies: list[tuple[float, int, dict[str, int]]],
) -> list[float]:
    """Per point, seconds from its send to the first tally (by arrival) current to its event's
    seq; a point whose event never showed, or no tally covered, is left out (counted elsewhere)."""
    ordered = sorted(tallies, key=lambda t: t[0])
    # The earliest arrival covering a seq: a running maximum of seqs over arrivals.
    arrivals: list[float] = []
    covered: list[int] = []
    best = -1
    for at, seq, _ in ordered:
        if seq > best:
            best = seq
            arrivals.append(at)
            covered.append(seq)
    lags: list[float] = []
    for code, seq in event_seq.items():
        if code not in sent:
            continue
        index = bisect.bisect_left(covered, seq)
        if index < len(covered):
            lags.append(arrivals[index] - sent[code])
    return lags


def _source(points: int) -> tuple[str, bytes]:
    if points == 526:
        return HANOI_CSV.name, HANOI_CSV.read_bytes()
    lines = NATIONAL_CSV.read_bytes().splitlines(keepends=True)
    return f"{NATIONAL_CSV.name} (first {points} rows)", b"".join(lines[: points + 1])


class _Run:
    def __init__(self, options: RollcallOptions, tmp: Path) -> None:
        self.options = options
        self.tmp = tmp
        self.ctx = multiprocessing.get_context("spawn")
        self.server: subprocess.Popen[bytes] | None = None
        self.processes: list[tuple[SpawnProcess, Connection, Connection]] = []
        self.database = tmp / "bench.sqlite3"

    def spawn(self, target: Any) -> tuple[SpawnProcess, Connection, Connection]:
        commands_out, commands_in = self.ctx.Pipe(duplex=False)
        answers_out, answers_in = self.ctx.Pipe(duplex=False)
        process = self.ctx.Process(target=target, args=(commands_out, answers_in), daemon=True)
        process.start()
        commands_out.close()
        answers_in.close()
        entry = (process, commands_in, answers_out)
        self.processes.append(entry)
        return entry

    @staticmethod
    def answer(entry: tuple[SpawnProcess, Connection, Connection], timeout_s: float) -> Any:
        process, _, answers = entry
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if answers.poll(0.2):
                return answers.recv()
            if not process.is_alive():
                break
        raise BenchError(f"{process.name} did not answer within {timeout_s:.0f} s")

    def start_server(self) -> int:
        from migrations import runner

        url = f"sqlite+aiosqlite:///{self.database}"
        runner.upgrade(url)
        self.password = secrets.token_urlsafe(18)
        asyncio.run(_create_admin(url, self.password))
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DIEMCAU_")},
            "DIEMCAU_VAR_DIR": str(self.tmp / "var"),
            "DIEMCAU_DATABASE_URL": url,
            "DIEMCAU_HOST": "127.0.0.1",
            "DIEMCAU_PORT": str(port),
            "DIEMCAU_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DIEMCAU_SECRET_KEY": secrets.token_urlsafe(48),
            "DIEMCAU_LOG_LEVEL": "WARNING",
            "DIEMCAU_ARGON2_TIME_COST": "1",
            "DIEMCAU_ARGON2_MEMORY_KIB": "1024",
            "DIEMCAU_WS_MAX_PER_ADDRESS": str(self.options.points + 100),
            "DIEMCAU_MEDIA_WORKERS": "0",
        }
        with (self.tmp / "server.log").open("wb") as log:
            self.server = subprocess.Popen(  # noqa: S603 - our own entry point, fixed arguments
                [str(Path(sys.executable).with_name("diemcau")), "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        with httpx.Client(trust_env=False) as http:
            while time.monotonic() < deadline:
                if self.server.poll() is not None:
                    raise BenchError(f"the server exited with code {self.server.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        return port
                time.sleep(0.1)
        raise BenchError("the server did not answer /healthz within 60 s")

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(5)

    def close(self) -> None:
        self.stop_server()
        for process, commands, _ in self.processes:
            with contextlib.suppress(OSError, ValueError):
                commands.close()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


def _call(http: httpx.Client, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
    response = http.request(method, path, **kw)
    if response.status_code != expect:
        raise BenchError(f"{method} {path}: {response.status_code} {response.text[:300]}")
    return response.json()


def _ms(seconds: list[float], q: float) -> float | None:
    value = percentile(seconds, q)
    return None if value is None else round(value * 1000, 2)


def run(options: RollcallOptions) -> RollcallResult:
    if not 1 <= options.points <= MAX_POINTS:
        raise BenchError(f"--points must be 1 to {MAX_POINTS}")
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="diemcau-bench-rollcall-"))
    bench = _Run(options, tmp)
    try:
        return _measure(bench, options, started)
    finally:
        bench.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(bench: _Run, options: RollcallOptions, started: float) -> RollcallResult:
    port = bench.start_server()
    base = f"http://127.0.0.1:{port}"
    source, data = _source(options.points)
    with httpx.Client(base_url=base, timeout=60, trust_env=False) as http:
        token = _call(
            http, "POST", "/api/v1/auth/login", json={"username": ADMIN, "password": bench.password}
        )["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        report = _call(
            http,
            "POST",
            "/api/v1/points/import",
            content=data,
            headers={**auth, "Content-Type": "text/csv"},
        )
        if report["created"] != options.points:
            raise BenchError(f"imported {report['created']} points, wanted {options.points}")
        session = _call(
            http,
            "POST",
            "/api/v1/sessions",
            expect=201,
            json={"title": "Benchmark: điểm danh", "hall_name": "Hội trường"},
            headers=auth,
        )
        session_id = int(session["id"])
        _call(
            http,
            "POST",
            f"/api/v1/sessions/{session_id}/invitations",
            json={"all": True},
            headers=auth,
        )
        links = _call(
            http, "POST", f"/api/v1/sessions/{session_id}/join-links", json={}, headers=auth
        )
        pairs = [(str(x["point_code"]), str(x["credential"])) for x in links["links"]]
        _call(http, "POST", f"/api/v1/sessions/{session_id}/actions/open", headers=auth)

        ws_url = f"ws://127.0.0.1:{port}/api/v1/ws"
        operator = bench.spawn(rollcall_procs.operator_worker)
        operator[1].send({"url": ws_url, "token": token, "session_id": session_id})
        bench.answer(operator, 60)
        workers = [bench.spawn(rollcall_procs.point_worker) for _ in range(options.processes)]
        for i, worker in enumerate(workers):
            worker[1].send({"url": ws_url, "points": pairs[i :: options.processes], "seed": i})
        joined = 0
        for worker in workers:
            answer = bench.answer(worker, 120)
            joined += int(answer["joined"])
        if joined != options.points:
            raise BenchError(f"{joined} of {options.points} points joined")
        _call(
            http,
            "POST",
            f"/api/v1/sessions/{session_id}/rollcalls",
            expect=201,
            json={"deadline_s": 600, "message": "Điểm danh (benchmark)"},
            headers=auth,
        )
        assert bench.server is not None
        cpu_before = cpu_seconds(bench.server.pid)
        t0 = time.time() + 1.0
        deadline = t0 + options.window_s + options.timeout_s
        for worker in workers:
            worker[1].send({"t0": t0, "window_s": options.window_s, "deadline": deadline})
        results: list[dict[str, Any]] = []
        for worker in workers:
            results.extend(
                bench.answer(worker, options.window_s + options.timeout_s + 30)["points"]
            )
        server_cpu = cpu_seconds(bench.server.pid) - cpu_before
        time.sleep(1.0)  # the last tally reaches the operator
        operator[1].send({"stop": True})
        seen = bench.answer(operator, 30)
    bench.stop_server()

    acked = [r for r in results if r["acked"] is not None]
    ack_s = [r["acked"] - r["sent"] for r in acked]
    errors: dict[str, int] = {}
    for r in results:
        if r["error"]:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    tallies = [(float(at), int(seq), counts) for at, seq, counts in seen["tallies"]]
    sent = {r["code"]: float(r["sent"]) for r in acked}
    lags = tally_lags(sent, {k: int(v) for k, v in seen["confirmed"].items()}, tallies)
    final = max(tallies, key=lambda t: t[1])[2] if tallies else {}
    headcount_sent = sum(int(r["headcount"]) for r in acked)
    consistent = (
        final.get("present", -1) + final.get("late", 0) == len(acked)
        and final.get("headcount") == headcount_sent
        and len(lags) == len(acked)
    )
    with contextlib.closing(sqlite3.connect(bench.database)) as db:
        rows = int(db.execute("SELECT count(*) FROM rollcall_confirmations").fetchone()[0])
        integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
    values: dict[str, float | None] = {
        "ack_p99_ms": _ms(ack_s, 0.99),
        "tally_lag_p99_ms": _ms(lags, 0.99),
        "lost": options.points - len(acked),
    }
    passed = {
        name: values[name] is not None and float(values[name] or 0) <= target
        if name != "lost"
        else values[name] == 0
        for name, target in TARGETS.items()
    }
    return RollcallResult(
        points=options.points,
        joined=joined,
        acked=len(acked),
        lost=options.points - len(acked),
        retries=sum(int(r["retries"]) for r in results),
        errors=errors,
        window_s=options.window_s,
        ack_p50_ms=_ms(ack_s, 0.5),
        ack_p99_ms=values["ack_p99_ms"],
        ack_max_ms=_ms(ack_s, 1.0),
        tally_lag_p50_ms=_ms(lags, 0.5),
        tally_lag_p99_ms=values["tally_lag_p99_ms"],
        tally_lag_max_ms=_ms(lags, 1.0),
        tallies_received=len(tallies),
        final_counts=final,
        headcount_sent=headcount_sent,
        tally_consistent=consistent,
        db_rows=rows,
        integrity_check=integrity,
        server_cpu_s=round(server_cpu, 2),
        source_file=source,
        command=options.command(),
        targets=TARGETS,
        passed=passed,
        machine=machine_info(),
        wall_s=round(time.monotonic() - started, 1),
    )


def render(result: RollcallResult) -> Table:
    table = Table(title=f"roll-call: {result.points} points confirm within {result.window_s:g} s")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target")
    for name, value, target in (
        ("acked", result.acked, ""),
        ("lost", result.lost, "0 " + ("✓" if result.passed["lost"] else "✗")),
        ("retries", result.retries, ""),
        (
            "ack p50 / p99 / max (ms)",
            f"{result.ack_p50_ms} / {result.ack_p99_ms} / {result.ack_max_ms}",
            "p99 < 300 " + ("✓" if result.passed["ack_p99_ms"] else "✗"),
        ),
        (
            "tally lag p50 / p99 / max (ms)",
            f"{result.tally_lag_p50_ms} / {result.tally_lag_p99_ms} / {result.tally_lag_max_ms}",
            "p99 < 1000 " + ("✓" if result.passed["tally_lag_p99_ms"] else "✗"),
        ),
        ("tallies received", result.tallies_received, ""),
        ("tally consistent", result.tally_consistent, ""),
        ("rows stored / integrity", f"{result.db_rows} / {result.integrity_check}", ""),
        ("server CPU in the window (s)", result.server_cpu_s, ""),
    ):
        table.add_row(name, str(value), target)
    return table
