"""`diemcau simulate` against a real server in its own process: real WebSockets, real aiortc.

The operator's side is played over HTTP by the test (the rehearsal's server helper starts the
server exactly as `diemcau rehearse` does), so what is checked is what the rooms did to the session:
they joined, answered the roll-call with their headcounts, raised hands, and left when it ended.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.rehearsal.server import RehearsalServer
from app.simulate.plan import Behaviour, make_plan
from app.simulate.run import SimulateOptions, simulate
from app.simulate.summary import RoomsSummary
from tests.conftest import HANOI_CSV

ROOMS = 30


class Desk:
    def __init__(self, server: RehearsalServer) -> None:
        self.http = httpx.Client(base_url=server.base_url, timeout=30, trust_env=False)
        token = self.http.post(
            "/api/v1/auth/login", json={"username": server.username, "password": server.password}
        ).json()["access_token"]
        self.auth = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        response = self.http.request(method, f"/api/v1{path}", headers=headers, **kwargs)
        assert response.status_code < 400, response.text
        return response.json() if "json" in response.headers.get("content-type", "") else response

    def session(self, points_file: Path) -> int:
        self.call(
            "POST",
            "/points/import",
            content=points_file.read_bytes(),
            headers={"Content-Type": "text/csv"},
        )
        session = self.call("POST", "/sessions", json={"title": "Tổng duyệt quận Ba Đình"})
        self.call("POST", f"/sessions/{session['id']}/actions/open")
        return int(session["id"])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RehearsalServer]:
    with RehearsalServer(tmp_path, points=ROOMS) as running:
        yield running


@pytest.fixture
def desk(server: RehearsalServer) -> Iterator[Desk]:
    operator = Desk(server)
    yield operator
    operator.http.close()


@pytest.fixture
def points_file(tmp_path: Path) -> Path:
    lines = HANOI_CSV.read_bytes().splitlines(keepends=True)
    path = tmp_path / "ba-dinh.csv"
    path.write_bytes(b"".join(lines[: ROOMS + 1]))
    return path


def test_simulated_rooms_join_answer_raise_hands_and_leave_when_the_session_ends(
    server: RehearsalServer, desk: Desk, points_file: Path
) -> None:
    session_id = desk.session(points_file)
    behaviour = Behaviour(
        join_spread_s=2, hand_share=0.3, silent_share=0.2, answer_delay_s=(0.2, 1.0), seed=7
    )
    plan = make_plan([(f"{i}", "x") for i in range(ROOMS)], behaviour)
    silent = sum(p.silent for p in plan)
    hands = sum(p.hand_at_s is not None for p in plan)
    assert 0 < silent < ROOMS
    assert hands > 0
    options = SimulateOptions(
        server=server.base_url,
        session_id=session_id,
        points=points_file,
        username=server.username,
        password=server.password,
        processes=2,
        behaviour=Behaviour(**{**behaviour.__dict__, "hand_after_s": (0.5, 1.0)}),
    )
    result: list[RoomsSummary] = []
    thread = threading.Thread(target=lambda: result.append(simulate(options)), daemon=True)
    thread.start()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # The rooms are invited by simulate itself; a room that joins after the roll-call opened
        # finds the round in its welcome and answers then.
        page = desk.call("GET", f"/sessions/{session_id}/invitations")
        if page["total"] == ROOMS:
            break
        time.sleep(0.2)
    opened = desk.call("POST", f"/sessions/{session_id}/rollcalls", json={"deadline_s": 30})
    number = opened["round"]["round"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        detail = desk.call("GET", f"/sessions/{session_id}/rollcalls/{number}")
        if detail["round"]["counts"]["present"] == ROOMS - silent:
            break
        time.sleep(0.5)
    closed = desk.call("POST", f"/sessions/{session_id}/rollcalls/{number}/close")
    desk.call("POST", f"/sessions/{session_id}/actions/end")
    thread.join(60)
    assert not thread.is_alive(), "simulate did not return after the session ended"

    (summary,) = result
    assert summary.joined == ROOMS
    assert summary.ended == ROOMS
    assert summary.errors == 0, summary.error_kinds
    assert summary.hands == hands
    assert summary.hands_acked == hands
    counts = closed["round"]["counts"]
    assert (counts["present"], counts["absent"]) == (ROOMS - silent, silent)
    by_code = {r["point_code"]: r for r in closed["records"]}
    codes = [line.split(",", 1)[0] for line in points_file.read_text().splitlines()[1:]]
    for room_plan, code in zip(plan, codes, strict=True):
        record = by_code[code]
        if room_plan.silent:
            assert record["status"] == "absent"
        else:
            assert (record["status"], record["headcount"]) == ("present", room_plan.headcount)
    (round_,) = summary.rounds
    assert (round_.expected, round_.answered) == (ROOMS - silent, ROOMS - silent)


def test_the_command_refuses_a_wrong_password_and_changes_nothing(
    server: RehearsalServer, desk: Desk, points_file: Path
) -> None:
    session_id = desk.session(points_file)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--server",
            server.base_url,
            "--session",
            str(session_id),
            "--points",
            str(points_file),
            "--username",
            server.username,
        ],
        env={"DIEMCAU_PASSWORD": "not-the-password"},
    )
    assert result.exit_code == 1
    assert "login as" in result.output
    assert "refused" in result.output
    page = desk.call("GET", f"/sessions/{session_id}/invitations")
    assert page["total"] == 0


def test_the_command_runs_rooms_from_an_exported_links_file(
    server: RehearsalServer, desk: Desk, points_file: Path, tmp_path: Path
) -> None:
    session_id = desk.session(points_file)
    desk.call("POST", f"/sessions/{session_id}/invitations", json={"all": True})
    export = desk.call(
        "POST", f"/sessions/{session_id}/join-links", params={"format": "csv"}, json={}
    )
    links = tmp_path / "links.csv"
    links.write_bytes(export.content)
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--server",
            server.base_url,
            "--session",
            str(session_id),
            "--links",
            str(links),
            "--limit",
            "10",
            "--join-spread-s",
            "1",
            "--drop-share",
            "0",
            "--duration-s",
            "6",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["rooms"] == 10
    assert summary["joined"] == 10
    assert summary["errors"] == 0
