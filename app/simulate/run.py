"""`diemcau simulate`: a fleet of simulated rooms against a server that is already running.

For a hall team's rehearsal on their own server (a rehearsal session, since minting links from a
points file replaces the points' earlier links), and for our own tests. It runs until the session
ends (the server closes every room with 4404) or until `duration_s`, printing progress, then prints
what the rooms saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from rich.table import Table

from app.simulate.fleet import Fleet, FleetStatus
from app.simulate.links import LinksError, fetch_credentials, read_links, read_points
from app.simulate.plan import Behaviour, make_plan
from app.simulate.summary import RoomsSummary, summarize

WS_PATH = "/api/v1/ws"


class SimulateError(RuntimeError):
    """The simulation could not start (bad file, refused login, unreachable server)."""


@dataclass(frozen=True)
class SimulateOptions:
    server: str
    """The server's base URL, e.g. http://127.0.0.1:8000."""
    session_id: int
    points: Path | None = None
    links: Path | None = None
    username: str = ""
    password: str = ""
    limit: int = 0
    """Only the first `limit` rooms of the file (0: all)."""
    processes: int = 2
    duration_s: float = 0.0
    """0: until the session ends."""
    behaviour: Behaviour = field(default_factory=Behaviour)


def ws_url(server: str) -> str:
    """The WebSocket address on the same host: http→ws, https→wss."""
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SimulateError(f"--server must be an http(s) URL, got {server!r}")
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + WS_PATH, "", ""))


def credentials(options: SimulateOptions, http: httpx.Client) -> list[tuple[str, str]]:
    """The rooms' (code, credential): from a links file, or minted from a points file."""
    if (options.points is None) == (options.links is None):
        raise SimulateError("give either --points (with an operator login) or --links")
    try:
        if options.links is not None:
            rooms = read_links(options.links)
            return rooms[: options.limit] if options.limit else rooms
        assert options.points is not None
        points = read_points(options.points)
        if options.limit:
            points = points[: options.limit]
        if not options.username or not options.password:
            raise SimulateError("--points needs --username and a password (DIEMCAU_PASSWORD)")
        return fetch_credentials(
            http, options.session_id, options.username, options.password, [c for c, _ in points]
        )
    except LinksError as exc:
        raise SimulateError(str(exc)) from None
    except httpx.TransportError as exc:
        raise SimulateError(f"cannot reach {options.server}: {exc}") from None


def simulate(
    options: SimulateOptions, progress: Callable[[FleetStatus], None] | None = None
) -> RoomsSummary:
    if options.processes < 1:
        raise SimulateError("--processes must be 1 or more")
    url = ws_url(options.server)
    with httpx.Client(base_url=options.server, timeout=60, trust_env=False) as http:
        rooms = credentials(options, http)
    plans = make_plan(rooms, options.behaviour)
    with Fleet(plans, url, processes=options.processes) as fleet:
        fleet.start()
        limit = options.duration_s if options.duration_s > 0 else 24 * 3600.0
        last = [0.0]

        def report(status: FleetStatus) -> None:
            if progress is not None and time.monotonic() - last[0] >= 5:
                last[0] = time.monotonic()
                progress(status)

        fleet.wait(lambda s: s.finished == s.rooms, limit, report)
        fleet.stop()
        return summarize(fleet.report())


def as_dict(summary: RoomsSummary) -> dict[str, Any]:
    return asdict(summary)


def render(summary: RoomsSummary, title: str = "simulated rooms") -> Table:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f} ms"

    table = Table("measure", "value", title=title)
    table.add_row("rooms joined", f"{summary.joined:,} / {summary.rooms:,}")
    table.add_row(
        "join p50 / p95 / p99 / max",
        f"{ms(summary.join_p50_ms)} / {ms(summary.join_p95_ms)} / {ms(summary.join_p99_ms)} / "
        f"{ms(summary.join_max_ms)}",
    )
    table.add_row(
        "drops resumed",
        f"{summary.resumed} / {summary.drops} (rejoin p50 {ms(summary.resume_p50_ms)})",
    )
    table.add_row("hands raised (acknowledged)", f"{summary.hands} ({summary.hands_acked})")
    for r in summary.rounds:
        table.add_row(
            f"roll-call {r.round}: answered",
            f"{r.answered:,} / {r.expected:,} (+{r.silent_joined} silent rooms); ack p50 "
            f"{ms(r.ack_p50_ms)}, p99 {ms(r.ack_p99_ms)}; {r.resent} sent again after a drop",
        )
    if summary.media_rooms:
        table.add_row(
            "media rooms receiving the program",
            f"{summary.media_receiving} / {summary.media_rooms}; "
            f"{summary.program_frames_total:,} frames decoded "
            f"(fewest in a room: {summary.program_frames_min})",
        )
        table.add_row("media rooms that published", str(summary.media_published))
    table.add_row("rooms told the session ended", f"{summary.ended:,}")
    table.add_row("errors", str(summary.errors))
    for kind, count in summary.error_kinds.items():
        table.add_row("  error", f"{count}× {kind}")
    return table
