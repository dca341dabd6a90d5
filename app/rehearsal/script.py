"""The scripted conference: prepare, join storm, roll-call, five floor passes, roll-call, end.

Each step is what the hall team does on the day, through the same doors: the operator's steps
over the HTTP API (import, invite, join links, open, go live, roll-calls, end), the moderator's
floor passes and the hall's program over the live protocol, and the rooms as `app.simulate` plays
them. The report puts the rooms' own measurements next to what the server recorded, and counts
every error any side saw, the server's log included: a rehearsal passes only with none.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from app.benchmarks.floor_procs import REQUEST_TIMEOUT_S, chair_worker
from app.benchmarks.signaling import machine_info
from app.rehearsal import server_metrics
from app.rehearsal.server import RehearsalServer, ServerError
from app.rehearsal.staff import hall_worker
from app.simulate.fleet import Fleet, FleetError, FleetStatus
from app.simulate.links import LinksError, read_points
from app.simulate.plan import MEDIA_WIDTH, Behaviour, PlanError, RoomPlan, make_plan
from app.simulate.run import ws_url
from app.simulate.summary import RoomsSummary, quantile, summarize

CHUNK = 5_000
COMMIT_HISTOGRAM = "diemcau_rollcall_commit_seconds"
LAG_HISTOGRAM = "diemcau_event_loop_lag_seconds"
FANOUT_HISTOGRAM = "diemcau_fanout_seconds"


class RehearsalError(RuntimeError):
    """The rehearsal could not run to its end (the server, a step of the script, a process)."""


@dataclass(frozen=True)
class RehearseOptions:
    points: Path
    media_points: int = 20
    database_url: str | None = None
    processes: int = 2
    media_workers: int | None = None
    """The server's media processes; None as `diemcau serve` (one per core)."""
    passes: int = 5
    pass_interval_s: float = 8.0
    join_spread_s: float | None = None
    """None: a storm scaled to the size, 1 s per 100 rooms (5–60 s)."""
    rollcall_deadline_s: float = 120.0
    join_timeout_s: float = 300.0
    behaviour: Behaviour = field(default_factory=lambda: Behaviour(answer_delay_s=(1.0, 8.0)))
    limit: int = 0

    def spread_s(self, rooms: int) -> float:
        if self.join_spread_s is not None:
            return self.join_spread_s
        return float(min(60, max(5, rooms // 100)))

    def command(self) -> str:
        parts = [f"diemcau rehearse --points {self.points}", f"--media-points {self.media_points}"]
        if self.limit:
            parts.append(f"--limit {self.limit}")
        if self.database_url and not self.database_url.startswith("sqlite"):
            parts.append("--database-url <postgresql>")
        if self.processes != 2:
            parts.append(f"--processes {self.processes}")
        if self.media_workers is not None:
            parts.append(f"--media-workers {self.media_workers}")
        if self.passes != 5 or self.pass_interval_s != 8.0:
            parts.append(f"--passes {self.passes} --pass-interval-s {self.pass_interval_s:g}")
        if self.join_spread_s is not None:
            parts.append(f"--join-spread-s {self.join_spread_s:g}")
        b = self.behaviour
        if (b.drop_share, b.hand_share, b.silent_share) != (0.02, 0.02, 0.02):
            parts.append(
                f"--drop-share {b.drop_share:g} --hand-share {b.hand_share:g} "
                f"--silent-share {b.silent_share:g}"
            )
        if b.seed != 1:
            parts.append(f"--seed {b.seed}")
        return " ".join(parts)


@dataclass
class RollcallStep:
    round: int
    expected: int
    answered: int
    complete_s: float | None
    """From the operator's open to the last expected answer acknowledged (None: not all came)."""
    counted: int
    """Rooms present or late in the server's closed round."""
    mismatched: int
    """Rooms whose acknowledged answer the closed round does not show (status or headcount)."""
    absent: int
    headcount: int
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    """From the send that was answered (a room that dropped counts from its resend)."""
    resent: int
    """Answers a room had to send again after its connection dropped."""
    server_commit_p99_ms: float | None
    """The server's part of an ack's wait (stepped → committed), as the upper bound of the
    `diemcau_rollcall_commit_seconds` bucket holding the 99th percentile."""


@dataclass
class FloorStep:
    point_code: str
    outcome: str
    ack_ms: float | None
    event_p50_ms: float | None
    event_p99_ms: float | None
    event_reached: int
    event_replayed: int
    """Rooms that were away at the pass and got the event replayed on resume (their latency,
    which is the drop's, is not in the percentiles)."""
    first_frame_ms: float | None


@dataclass
class RehearsalReport:
    source_file: str
    points: int
    media_points: int
    database: str
    join_spread_s: float
    prepare_s: float
    all_joined_s: float | None
    rooms: RoomsSummary
    rollcalls: list[RollcallStep]
    floor: list[FloorStep]
    floor_switches_seen: int
    floor_fanout_max_ms: float | None
    """The server's longest fan-out of one event during the floor passes (the call-ons to every
    room), as the upper bound of its `diemcau_fanout_seconds` bucket: what of `event_p99_ms` was the
    server's."""
    floor_server_loop_lag_p99_ms: float | None
    hall_frames: int
    hall_publish_ms: float | None
    server_cpu_s: float
    """CPU time of the server's processes (the API and its media workers) over the rehearsal."""
    server_peak_rss_mib: float
    """Their peak resident memory, added up."""
    clients_loop_lag_p99_ms: float | None
    """How late the room processes' loops woke up: their stamps include this much of their own
    delay, on a machine they share with the server."""
    clients_loop_lag_max_ms: float | None
    server_loop_lag_p99_ms: float | None
    """How late the server's 100 ms timer fired, 99th percentile over the rehearsal, as the upper
    bound of its `diemcau_event_loop_lag_seconds` bucket."""
    server_errors: list[str]
    errors: list[str]
    passed: dict[str, bool]
    passed_all: bool
    phases_s: dict[str, float]
    machine: dict[str, Any]
    command: str
    argv: list[str]
    wall_s: float
    notes: list[str] = field(default_factory=list)


def as_dict(report: RehearsalReport) -> dict[str, Any]:
    return asdict(report)


# ---- helper processes (hall, moderator) ------------------------------------------------------


@dataclass
class _Staff:
    process: SpawnProcess
    commands: Connection
    answers: Connection

    def ask(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        try:
            self.commands.send(command)
        except OSError as exc:
            raise RehearsalError(f"{self.process.name} is gone: {exc}") from None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.answers.poll(0.2):
                answer: dict[str, Any] = self.answers.recv()
                if "error" in answer:
                    raise RehearsalError(f"{self.process.name}: {answer['error']}")
                return answer
            if not self.process.is_alive():
                break
        raise RehearsalError(f"{self.process.name} did not answer within {timeout_s:.0f} s")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.commands.send({"cmd": "quit"})
        self.process.join(15)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _start_staff(name: str, target: Any) -> _Staff:
    context = multiprocessing.get_context("spawn")
    commands_out, commands_in = context.Pipe(duplex=False)
    answers_out, answers_in = context.Pipe(duplex=False)
    process = context.Process(
        target=target, args=(commands_out, answers_in), name=name, daemon=True
    )
    process.start()
    commands_out.close()
    answers_in.close()
    return _Staff(process, commands_in, answers_out)


# ---- the operator's HTTP steps ---------------------------------------------------------------


class _Desk:
    """The operator at the control desk, over the HTTP API."""

    def __init__(self, http: httpx.Client, username: str, password: str) -> None:
        self.http = http
        response = http.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        self._check(response, "login")
        self.auth = {"Authorization": f"Bearer {response.json()['access_token']}"}
        self.token = str(response.json()["access_token"])

    def call(self, method: str, path: str, step: str, **kwargs: Any) -> Any:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        try:
            response = self.http.request(method, f"/api/v1{path}", headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise RehearsalError(f"{step}: {type(exc).__name__}: {exc}") from None
        self._check(response, step)
        return response.json()

    def histograms(self) -> dict[str, server_metrics.Buckets]:
        """The server's histograms now (`/metrics`)."""
        try:
            response = self.http.get("/metrics")
        except httpx.HTTPError as exc:
            raise RehearsalError(f"read /metrics: {type(exc).__name__}: {exc}") from None
        self._check(response, "read /metrics")
        return server_metrics.histograms(response.text)

    @staticmethod
    def _check(response: httpx.Response, step: str) -> None:
        if response.status_code >= 400:
            raise RehearsalError(f"{step}: HTTP {response.status_code} {response.text[:300]}")

    def prepare(self, data: bytes, codes: list[str], title: str) -> tuple[int, dict[str, str]]:
        report = self.call(
            "POST",
            "/points/import",
            "import the points",
            content=data,
            headers={**self.auth, "Content-Type": "text/csv"},
        )
        if report.get("errors"):
            raise RehearsalError(f"the points file has errors: {report['errors'][:3]}")
        session = self.call(
            "POST",
            "/sessions",
            "create the session",
            json={"title": title, "hall_name": "Hội trường (tổng duyệt)"},
        )
        session_id = int(session["id"])
        credentials: dict[str, str] = {}
        for start in range(0, len(codes), CHUNK):
            chunk = codes[start : start + CHUNK]
            self.call(
                "POST",
                f"/sessions/{session_id}/invitations",
                "invite",
                json={"point_codes": chunk},
            )
            links = self.call(
                "POST",
                f"/sessions/{session_id}/join-links",
                "mint join links",
                json={"point_codes": chunk},
            )
            credentials.update({str(x["point_code"]): str(x["credential"]) for x in links["links"]})
        self.action(session_id, "open")
        return session_id, credentials

    def action(self, session_id: int, command: str) -> None:
        self.call("POST", f"/sessions/{session_id}/actions/{command}", f"session {command}")


# ---- the script ------------------------------------------------------------------------------


Progress = Callable[[str], None]


def run(options: RehearseOptions, progress: Progress | None = None) -> RehearsalReport:
    say = progress or (lambda _line: None)
    started = time.monotonic()
    try:
        rows = read_points(options.points)
    except LinksError as exc:
        raise RehearsalError(str(exc)) from None
    if options.limit:
        rows = rows[: options.limit]
    if len(rows) < 2:
        raise RehearsalError("a rehearsal needs at least 2 points")
    if options.passes < 1:
        raise RehearsalError("--passes must be 1 or more")
    if options.media_points and options.media_points < min(2, len(rows)):
        raise RehearsalError("--media-points must be 0 or 2 or more (the floor moves between them)")
    behaviour = Behaviour(
        **{
            **asdict(options.behaviour),
            "media_points": options.media_points,
            "join_spread_s": options.spread_s(len(rows)),
        }
    )
    try:
        behaviour.check(len(rows))
    except PlanError as exc:
        raise RehearsalError(str(exc)) from None
    data = _file_bytes(options.points, len(rows))
    tmp = Path(tempfile.mkdtemp(prefix="diemcau-rehearsal-"))
    staff: list[_Staff] = []
    try:
        with RehearsalServer(
            tmp, options.database_url, len(rows), media_workers=options.media_workers
        ) as server:
            say(f"server on {server.base_url} ({'SQLite' if server.embedded else 'database'})")
            return _conduct(options, behaviour, rows, data, server, staff, say, started)
    except ServerError as exc:
        raise RehearsalError(str(exc)) from None
    finally:
        for member in staff:
            member.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _file_bytes(path: Path, rows: int) -> bytes:
    """The file as uploaded: whole, or its header and first `rows` rows (with --limit)."""
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    return data if len(lines) <= rows + 1 else b"".join(lines[: rows + 1])


def _conduct(
    options: RehearseOptions,
    behaviour: Behaviour,
    rows: list[tuple[str, str]],
    data: bytes,
    server: RehearsalServer,
    staff: list[_Staff],
    say: Progress,
    started: float,
) -> RehearsalReport:
    errors: list[str] = []
    notes: list[str] = []
    phases: dict[str, float] = {}
    mark = started

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 2)
        mark = now

    http = httpx.Client(base_url=server.base_url, timeout=120, trust_env=False)
    try:
        desk = _Desk(http, server.username, server.password)
        lag_before = desk.histograms().get(LAG_HISTOGRAM, {})
        codes = [code for code, _ in rows]
        session_id, credentials = desk.prepare(
            data, codes, f"Tổng duyệt: {options.points.name} ({len(rows)} điểm cầu)"
        )
        prepare_s = round(time.monotonic() - started, 2)
        phase("prepare")
        say(f"session {session_id} open with {len(credentials):,} join links ({prepare_s:.1f} s)")
        url = ws_url(server.base_url)
        staff_hello = {"url": url, "token": desk.token, "session_id": session_id}
        hall = _start_staff("diemcau-rehearsal-hall", hall_worker)
        staff.append(hall)
        chair = _start_staff("diemcau-rehearsal-moderator", chair_worker)
        staff.append(chair)
        hall_answer = hall.ask({"cmd": "connect", **staff_hello}, 90)
        chair.ask({"cmd": "connect", **staff_hello}, 60)
        say("hall publishing the program; moderator connected")

        plans = make_plan([(code, credentials[code]) for code in codes], behaviour)
        with Fleet(plans, url, processes=options.processes) as fleet:
            report = _with_rooms(
                options, behaviour, plans, fleet, desk, session_id, chair, hall, say, phase, notes
            )
            rollcalls, floor, floor_server, hall_report, all_joined_s = report
            server_cpu_s, server_peak_mib = server.usage()
            server_lag = server_metrics.between(
                lag_before, desk.histograms().get(LAG_HISTOGRAM, {})
            )
            fleet.stop()
            rooms = fleet.report()
            lags = fleet.lags_ms
        phase("end")
    finally:
        http.close()

    summary = summarize(rooms)
    errors.extend(f"room {room['code']}: {error}" for room in rooms for error in room["errors"])
    joined = summary.joined
    if joined < len(rows):
        errors.append(f"{len(rows) - joined} room(s) never joined")
    for rc in rollcalls:
        if rc.answered < rc.expected:
            errors.append(f"roll-call {rc.round}: {rc.expected - rc.answered} answer(s) missing")
        if rc.mismatched:
            errors.append(f"roll-call {rc.round}: {rc.mismatched} answer(s) not counted")
    for k, step in enumerate(floor, start=1):
        if step.outcome != "ack":
            errors.append(f"floor pass {k} to {step.point_code}: {step.outcome}")
        elif step.event_reached < joined:
            errors.append(f"floor pass {k}: event reached {step.event_reached}/{joined} rooms")
        if options.media_points and step.first_frame_ms is None:
            errors.append(f"floor pass {k}: {step.point_code}'s picture never reached the hall")
    if options.media_points and summary.media_receiving < summary.media_rooms:
        errors.append(
            f"{summary.media_rooms - summary.media_receiving} media room(s) received no program"
        )
    if options.media_points and (summary.program_frames_min or 0) == 0:
        errors.append("a media room decoded no program frame")
    if summary.ended < joined:
        errors.append(f"{joined - summary.ended} room(s) were not told the session ended")
    server_errors = server.logged_errors()
    errors.extend(f"server: {line}" for line in server_errors)

    switches = sum(1 for step in floor if step.first_frame_ms is not None)
    passed = {
        "every_point_joined": joined == len(rows),
        "every_answer_counted": all(
            s.answered == s.expected and s.mismatched == 0 for s in rollcalls
        ),
        "floor_switches": (switches if options.media_points else len(floor)) == options.passes
        and all(s.outcome == "ack" for s in floor),
        "zero_errors": not errors,
    }
    return RehearsalReport(
        source_file=options.points.name,
        points=len(rows),
        media_points=options.media_points,
        database="SQLite (embedded)" if server.embedded else _redact(server.database_url),
        join_spread_s=behaviour.join_spread_s,
        prepare_s=prepare_s,
        all_joined_s=all_joined_s,
        rooms=summary,
        rollcalls=rollcalls,
        floor=floor,
        floor_switches_seen=switches,
        floor_fanout_max_ms=floor_server.get("fanout_max_ms"),
        floor_server_loop_lag_p99_ms=floor_server.get("loop_lag_p99_ms"),
        hall_frames=int(hall_report.get("frames", 0)),
        hall_publish_ms=_round(hall_answer.get("publish_ms")),
        server_cpu_s=round(server_cpu_s, 1),
        server_peak_rss_mib=round(server_peak_mib, 1),
        clients_loop_lag_p99_ms=quantile(lags, 0.99),
        clients_loop_lag_max_ms=quantile(lags, 1.0),
        server_loop_lag_p99_ms=server_metrics.bound_ms(server_lag, 0.99),
        server_errors=server_errors[:20],
        errors=errors[:200],
        passed=passed,
        passed_all=all(passed.values()),
        phases_s=phases,
        machine=machine_info(),
        command=options.command(),
        argv=list(sys.argv),
        wall_s=round(time.monotonic() - started, 1),
        notes=notes,
    )


def _with_rooms(
    options: RehearseOptions,
    behaviour: Behaviour,
    plans: list[RoomPlan],
    fleet: Fleet,
    desk: _Desk,
    session_id: int,
    chair: _Staff,
    hall: _Staff,
    say: Progress,
    phase: Callable[[str], None],
    notes: list[str],
) -> tuple[
    list[RollcallStep], list[FloorStep], dict[str, float | None], dict[str, Any], float | None
]:
    """The conference proper, while the rooms live."""
    last = [0.0]

    def show(status: FleetStatus) -> None:
        if time.monotonic() - last[0] >= 5:
            last[0] = time.monotonic()
            say(status.line())

    t0 = fleet.start()
    say(f"join storm: {len(plans):,} rooms over {behaviour.join_spread_s:g} s")
    joined_all, status = fleet.wait(
        lambda s: s.joined == s.rooms, behaviour.join_spread_s + options.join_timeout_s, show
    )
    all_joined_s = round(time.time() - t0, 2) if joined_all else None
    if not joined_all:
        notes.append(f"only {status.joined}/{status.rooms} rooms joined in time")
    media_rooms = [plan for plan in plans if plan.media]
    if media_rooms:
        fleet.wait(lambda s: s.subscribed >= len(media_rooms), 90, show)
    phase("join")
    say(status.line())
    desk.action(session_id, "go-live")

    rollcalls = [_rollcall(options, plans, fleet, desk, session_id, 1, say)]
    phase("rollcall_1")

    speakers = media_rooms or [p for p in plans if not p.silent and p.drop_at_s is None]
    called = [speakers[k % len(speakers)] for k in range(options.passes)]
    say(f"floor: {options.passes} passes, one every {options.pass_interval_s:g} s")
    server_before = desk.histograms()
    ran = chair.ask(
        {
            "cmd": "run",
            "codes": [plan.code for plan in called],
            "interval_s": options.pass_interval_s,
        },
        options.passes * (options.pass_interval_s + REQUEST_TIMEOUT_S) + 60,
    )
    passes: list[dict[str, Any]] = ran["passes"]
    time.sleep(options.pass_interval_s)
    hall_report: dict[str, Any] = {}
    if media_rooms:
        hall_report = hall.ask(
            {
                "cmd": "report",
                "passes": [
                    (p["sent_mono"], MEDIA_WIDTH, plan.media_height)
                    for p, plan in zip(passes, called, strict=False)
                ],
                "settle_s": 0,
            },
            60,
        )
    server_after = desk.histograms()
    floor_server = {
        "fanout_max_ms": server_metrics.bound_ms(
            server_metrics.between(
                server_before.get(FANOUT_HISTOGRAM, {}), server_after.get(FANOUT_HISTOGRAM, {})
            ),
            1.0,
        ),
        "loop_lag_p99_ms": server_metrics.bound_ms(
            server_metrics.between(
                server_before.get(LAG_HISTOGRAM, {}), server_after.get(LAG_HISTOGRAM, {})
            ),
            0.99,
        ),
    }
    rooms_now = fleet.report()
    floor = _floor_steps(passes, rooms_now, hall_report.get("first_frame_ms", []))
    phase("floor")
    for k, step in enumerate(floor, start=1):
        say(
            f"pass {k} → {step.point_code}: {step.outcome}, event p99 "
            f"{step.event_p99_ms} ms, first frame at the hall {step.first_frame_ms} ms"
        )

    rollcalls.append(_rollcall(options, plans, fleet, desk, session_id, 2, say))
    phase("rollcall_2")

    desk.action(session_id, "end")
    say("session ended; waiting for every room to be told")
    fleet.wait(lambda s: s.finished == s.rooms, 60, show)
    return rollcalls, floor, floor_server, hall_report, all_joined_s


def _rollcall(
    options: RehearseOptions,
    plans: list[RoomPlan],
    fleet: Fleet,
    desk: _Desk,
    session_id: int,
    expected_round: int,
    say: Progress,
) -> RollcallStep:
    commits_before = desk.histograms().get(COMMIT_HISTOGRAM, {})
    opened = time.time()
    detail = desk.call(
        "POST",
        f"/sessions/{session_id}/rollcalls",
        f"open roll-call {expected_round}",
        json={
            "deadline_s": options.rollcall_deadline_s,
            "message": f"Điểm danh lần {expected_round}",
        },
    )
    number = int(detail["round"]["round"])
    key = str(number)
    target = sum(1 for p in plans if not p.silent)
    say(f"roll-call {number} open: {target:,} rooms should answer")
    complete, _ = fleet.wait(
        lambda s: s.answered.get(key, 0) >= target,
        options.rollcall_deadline_s,
        lambda s: None,
        every_s=0.25,
    )
    complete_s = round(time.time() - opened, 2) if complete else None
    closed = desk.call(
        "POST",
        f"/sessions/{session_id}/rollcalls/{number}/close",
        f"close roll-call {number}",
    )
    records = {r["point_code"]: r for r in closed["records"]}
    commits = server_metrics.between(commits_before, desk.histograms().get(COMMIT_HISTOGRAM, {}))
    counts = closed["round"]["counts"]
    rooms = fleet.report()
    acked = [room for room in rooms if room["rollcall"].get(key, {}).get("outcome") == "ack"]
    plan_of = {p.code: p for p in plans}
    mismatched = sum(
        1
        for room in acked
        if records.get(room["code"], {}).get("status") not in ("present", "late")
        or records.get(room["code"], {}).get("headcount") != plan_of[room["code"]].headcount
    )
    ack_ms = [float(room["rollcall"][key]["ack_ms"]) for room in acked]
    step = RollcallStep(
        round=number,
        expected=target,
        answered=len(acked),
        complete_s=complete_s,
        counted=int(counts["present"]) + int(counts["late"]),
        mismatched=mismatched,
        absent=int(counts["absent"]),
        headcount=int(counts["headcount"]),
        ack_p50_ms=quantile(ack_ms, 0.5),
        ack_p99_ms=quantile(ack_ms, 0.99),
        resent=sum(1 for room in acked if int(room["rollcall"][key].get("sends", 1)) > 1),
        server_commit_p99_ms=server_metrics.bound_ms(commits, 0.99),
    )
    say(
        f"roll-call {number} closed: {step.answered:,}/{step.expected:,} answered in "
        f"{step.complete_s} s, {step.counted:,} counted, {step.absent} absent, "
        f"{step.headcount:,} people"
    )
    return step


def _floor_steps(
    passes: list[dict[str, Any]], rooms: list[dict[str, Any]], first_frames: list[Any]
) -> list[FloorStep]:
    arrivals: dict[int, list[float]] = {}
    replays: dict[int, int] = {}
    for room in rooms:
        for seq, received, replayed in room["call_on"]:
            if replayed:
                replays[int(seq)] = replays.get(int(seq), 0) + 1
            else:
                arrivals.setdefault(int(seq), []).append(float(received))
    steps: list[FloorStep] = []
    for k, record in enumerate(passes):
        seq = record.get("seq")
        latencies = (
            [(at - float(record["sent_wall"])) * 1000 for at in arrivals.get(int(seq), [])]
            if seq is not None
            else []
        )
        frame = first_frames[k] if k < len(first_frames) else None
        steps.append(
            FloorStep(
                point_code=str(record["code"]),
                outcome=str(record["outcome"]),
                ack_ms=_round(record.get("ack_ms")),
                event_p50_ms=quantile(latencies, 0.5),
                event_p99_ms=quantile(latencies, 0.99),
                event_reached=len(latencies) + (replays.get(int(seq), 0) if seq is not None else 0),
                event_replayed=replays.get(int(seq), 0) if seq is not None else 0,
                first_frame_ms=_round(frame),
            )
        )
    return steps


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def _redact(url: str) -> str:
    """The database URL without its password."""
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url


# ---- the report ------------------------------------------------------------------------------


def render(report: RehearsalReport) -> Table:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f} ms"

    verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]"}
    rooms = report.rooms
    machine = report.machine
    table = Table(
        "step",
        "what happened",
        "",
        title=f"rehearsal: {report.source_file}, {report.points:,} points "
        f"({report.media_points} with media), {report.database}; {machine['cores']} cores, "
        f"{machine['cpu']}",
        caption=f"{report.command} — {report.wall_s:.0f} s",
    )
    table.add_row("prepare (import, invite, links, open)", f"{report.prepare_s:.1f} s", "")
    table.add_row(
        f"join storm over {report.join_spread_s:g} s",
        f"{rooms.joined:,}/{rooms.rooms:,} joined, all in "
        f"{'-' if report.all_joined_s is None else f'{report.all_joined_s:.1f} s'}; join p50 "
        f"{ms(rooms.join_p50_ms)}, p99 {ms(rooms.join_p99_ms)}, max {ms(rooms.join_max_ms)}",
        verdict[report.passed["every_point_joined"]],
    )
    table.add_row(
        "drops and resumes",
        f"{rooms.resumed}/{rooms.drops} resumed (rejoin p50 {ms(rooms.resume_p50_ms)}); "
        f"{rooms.hands_acked}/{rooms.hands} hands raised",
        "",
    )
    for rc in report.rollcalls:
        table.add_row(
            f"roll-call {rc.round}",
            f"{rc.answered:,}/{rc.expected:,} answered in "
            f"{'-' if rc.complete_s is None else f'{rc.complete_s:.1f} s'}, "
            f"{rc.counted:,} counted ({rc.mismatched} not as answered), {rc.absent} absent "
            f"(silent rooms), {rc.headcount:,} people; ack p50 {ms(rc.ack_p50_ms)}, "
            f"p99 {ms(rc.ack_p99_ms)} (server's commit p99 ≤ {ms(rc.server_commit_p99_ms)}); "
            f"{rc.resent} sent again after a drop",
            verdict[rc.answered == rc.expected and rc.mismatched == 0],
        )
    for k, step in enumerate(report.floor, start=1):
        table.add_row(
            f"floor pass {k} → {step.point_code}",
            f"{step.outcome}, ack {ms(step.ack_ms)}; event at {step.event_reached:,} rooms "
            f"({step.event_replayed} on resume) p50 {ms(step.event_p50_ms)}, p99 "
            f"{ms(step.event_p99_ms)}; speaker's first frame at the hall "
            f"{ms(step.first_frame_ms)}",
            "",
        )
    table.add_row(
        "floor switches seen at the hall",
        f"{report.floor_switches_seen}/{len(report.floor)}; the server's longest fan-out of an "
        f"event meanwhile ≤ {ms(report.floor_fanout_max_ms)}, its loop lag p99 ≤ "
        f"{ms(report.floor_server_loop_lag_p99_ms)}",
        verdict[report.passed["floor_switches"]],
    )
    if report.media_points:
        table.add_row(
            "program at the media rooms",
            f"{rooms.media_receiving}/{rooms.media_rooms} receiving, "
            f"{rooms.program_frames_total:,} frames decoded (fewest in a room: "
            f"{rooms.program_frames_min}); {rooms.media_published} rooms published",
            "",
        )
    table.add_row("rooms told the session ended", f"{rooms.ended:,}", "")
    table.add_row(
        "server CPU / peak memory / loop lag; room processes' loop lag",
        f"{report.server_cpu_s:,.1f} s / {report.server_peak_rss_mib:,.0f} MiB / p99 ≤ "
        f"{ms(report.server_loop_lag_p99_ms)}; p99 {ms(report.clients_loop_lag_p99_ms)}, max "
        f"{ms(report.clients_loop_lag_max_ms)}",
        "",
    )
    table.add_row(
        "errors seen",
        str(len(report.errors)) + "".join(f"\n{e}" for e in report.errors[:10]),
        verdict[report.passed["zero_errors"]],
    )
    for note in report.notes:
        table.add_row("note", note, "")
    table.add_row(
        "phases",
        ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.phases_s.items()),
        "",
    )
    return table


__all__ = [
    "FleetError",
    "RehearsalError",
    "RehearsalReport",
    "RehearseOptions",
    "as_dict",
    "render",
    "run",
]
