"""Roll-call over the real WebSocket: open, confirm with keys, the live tally, marks, close, restart."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.conftest import HANOI_POINTS, Client, Live


def key() -> str:
    return uuid.uuid4().hex


async def rc(client: Client, action: str, **fields: Any) -> dict[str, Any]:
    return await client.request(
        {"type": "rollcall", "id": f"rc-{action}-{key()[:6]}", "action": action, **fields}
    )


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["type"] == "ack", reply
    result: dict[str, Any] = reply["result"]
    return result


def refused(reply: dict[str, Any], code: str) -> dict[str, Any]:
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    return reply


@pytest.mark.parametrize("live_db", ["sqlite", "postgresql"], indirect=True)
async def test_a_round_from_open_to_close(
    live_server: Live, live_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = live_server
    codes = sorted(live.credentials)
    operator = await live.hello_staff()
    observer = await live.hello_staff(live.tokens["observer"])
    first = await live.hello_point(live.credentials[codes[0]])
    second = await live.hello_point(live.credentials[codes[1]])
    late = await live.hello_point(live.credentials[codes[2]])
    assert first.welcome["rollcall"] is None

    opened = ok(await rc(operator, "open", deadline_s=60, message="Điểm danh đầu phiên"))
    assert opened["round"] == 1
    assert opened["invited"] == HANOI_POINTS
    # Points are prompted: the opening reaches them, with the message.
    event = await first.until("event", where=lambda m: m["event"] == "rollcall.opened")
    assert event["payload"]["message"] == "Điểm danh đầu phiên"
    assert event["payload"]["invited"] == HANOI_POINTS

    k1 = key()
    answer = ok(
        await rc(first, "confirm", round=1, headcount=25, note="Có đại biểu phường", key=k1)
    )
    assert answer["status"] == "present"
    assert answer["headcount"] == 25
    assert answer["replayed"] is False
    # A retry of the same answer is answered from the store, not applied twice.
    again = ok(await rc(first, "confirm", round=1, headcount=25, note="Có đại biểu phường", key=k1))
    assert again["replayed"] is True
    assert again["confirmed_at"] == answer["confirmed_at"]
    # The same key with another headcount is a client bug.
    refused(await rc(first, "confirm", round=1, headcount=26, key=k1), "idempotency_conflict")

    # The operator's tally follows as deltas; its event says who answered.
    tally = await operator.until("rollcall.tally", where=lambda m: m["counts"]["present"] >= 1)
    assert tally["counts"]["headcount"] == 25
    assert tally["counts"]["waiting"] == HANOI_POINTS - 1
    assert len(tally["areas"]) == 1
    assert tally["areas"][0]["name"] == "Quận Ba Đình"
    confirmed = await operator.until("event", where=lambda m: m["event"] == "rollcall.confirmed")
    assert confirmed["payload"]["point_code"] == codes[0]
    assert confirmed["actor"] == f"point:{codes[0]}"
    await observer.until("rollcall.tally")

    ok(await rc(second, "confirm", round=1, headcount=0, key=key()))
    # Time passes the deadline: the next answer is late.
    real_time = __import__("time").time
    monkeypatch.setattr("signaling.rollcall.time.time", lambda: real_time() + 61)
    assert ok(await rc(late, "confirm", round=1, headcount=12, key=key()))["status"] == "late"
    monkeypatch.undo()

    excused = ok(
        await rc(operator, "excuse", round=1, point_code=codes[3], reason="Mất điện cả phường")
    )
    assert excused["status"] == "excused"
    assert excused["reason"] == "Mất điện cả phường"
    refused(
        await rc(operator, "excuse", round=1, point_code=codes[4], reason=" "), "invalid_transition"
    )

    closed = ok(await rc(operator, "close", round=1))
    counts = closed["counts"]
    assert counts == {
        "present": 2,
        "late": 1,
        "absent": HANOI_POINTS - 4,
        "excused": 1,
        "waiting": 0,
        "headcount": 37,
        "expected": HANOI_POINTS,
    }
    event = await second.until("event", where=lambda m: m["event"] == "rollcall.closed")
    assert event["payload"]["counts"]["absent"] == HANOI_POINTS - 4
    # The server's part of each wait is measured: the open, four answers and marks, the close;
    # a replayed answer and refused commands commit nothing.
    metrics = await live.metrics()
    assert metrics["diemcau_rollcall_commit_seconds_count"] == 6
    # Nobody answers a closed round; the next round is a new one.
    refused(await rc(first, "confirm", round=1, headcount=3, key=key()), "invalid_transition")
    # A point only ever sees the opening and the closing, never another room's answer.
    assert not [
        m for m in first.seen if m.get("event") in ("rollcall.confirmed", "rollcall.marked")
    ]
    assert not [m for m in first.seen if m.get("type") == "rollcall.tally"]

    # A correction after close, always with a reason, is audited.
    corrected = ok(
        await rc(
            operator,
            "correct",
            round=1,
            point_code=codes[5],
            status="present",
            headcount=40,
            reason="Điểm cầu báo qua điện thoại",
        )
    )
    assert corrected["status"] == "present"
    marked = await operator.until("event", where=lambda m: m["event"] == "rollcall.marked")
    assert marked["payload"]["before"] == {"status": "absent", "headcount": None}

    # A point joining now sees the latest round and its own record.
    rejoined = await live.hello_point(live.credentials[codes[2]])
    assert rejoined.welcome["rollcall"]["round"] == 1
    assert rejoined.welcome["rollcall"]["mine"]["status"] == "late"
    assert rejoined.welcome["rollcall"]["counts"] is None


async def test_rollcall_commands_are_checked_and_change_nothing(start_live: Any) -> None:
    live = await start_live()
    codes = sorted(live.credentials)
    point = await live.hello_point(live.credentials[codes[0]])
    moderator = await live.hello_staff(live.tokens["moderator"])
    observer = await live.hello_staff(live.tokens["observer"])
    operator = await live.hello_staff()

    refused(await rc(point, "open", deadline_s=60), "forbidden")
    refused(await rc(moderator, "open", deadline_s=60), "forbidden")
    refused(await rc(observer, "open", deadline_s=60), "forbidden")
    refused(await rc(operator, "confirm", round=1, headcount=1, key=key()), "forbidden")
    refused(await rc(point, "confirm", round=1, headcount=1, key=key()), "invalid_transition")
    assert live.state.signaling.rollcalls[live.session_id].state.rounds == ()

    ok(await rc(operator, "open", deadline_s=60))
    refused(await rc(operator, "open", deadline_s=60), "invalid_transition")  # one open at a time
    refused(await rc(point, "close", round=1), "forbidden")
    refused(await rc(point, "excuse", round=1, point_code=codes[1], reason="x"), "forbidden")
    refused(await rc(point, "confirm", round=1, headcount=1), "validation_error")  # no key
    refused(await rc(point, "confirm", round=1, headcount=501, key=key()), "invalid_transition")
    refused(await rc(point, "confirm", round=2, headcount=1, key=key()), "invalid_transition")
    refused(await rc(point, "confirm", round=1, headcount=-1, key=key()), "validation_error")
    refused(await rc(point, "confirm", round=1, headcount="many", key=key()), "validation_error")
    refused(await rc(point, "confirm", round=1, headcount=1, key="short"), "validation_error")
    refused(
        await rc(operator, "excuse", round=1, point_code="99999", reason="x"), "validation_error"
    )
    refused(
        await rc(operator, "correct", round=1, point_code=codes[1], reason="x"), "validation_error"
    )
    desk = live.state.signaling.rollcalls[live.session_id]
    assert desk.state.rounds[0].records == {}
    assert desk.tallies[1].total.waiting == HANOI_POINTS

    # Another session's round numbers mean this session's rounds: a second session has none.
    other_id, other_credentials = await live.new_session("Phiên khác", {"all": True})
    other = await live.hello_point(other_credentials[codes[0]])
    refused(await rc(other, "confirm", round=1, headcount=1, key=key()), "invalid_transition")
    assert live.state.signaling.rollcalls[other_id].state.rounds == ()


async def test_a_round_survives_a_restart(start_live: Any) -> None:
    live = await start_live()
    codes = sorted(live.credentials)
    operator = await live.hello_staff()
    point = await live.hello_point(live.credentials[codes[0]])
    ok(await rc(operator, "open", deadline_s=120, message="Sau giờ nghỉ"))
    k = key()
    first = ok(await rc(point, "confirm", round=1, headcount=18, key=k))

    restarted = await start_live(prepare=False)  # a new process on the same database
    await restarted.login_all()
    restarted.session_id = live.session_id
    again = await restarted.hello_point(live.credentials[codes[0]])
    assert again.welcome["rollcall"]["mine"]["headcount"] == 18
    retried = ok(await rc(again, "confirm", round=1, headcount=18, key=k))
    assert retried["replayed"] is True
    assert retried["confirmed_at"] == first["confirmed_at"]
    desk = restarted.state.signaling.rollcalls[live.session_id]
    assert desk.tallies[1].total.present == 1
    assert desk.tallies[1].total.headcount == 18


async def test_a_failed_commit_answers_unavailable_and_keeps_nothing(
    live_server: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = live_server
    codes = sorted(live.credentials)
    operator = await live.hello_staff()
    point = await live.hello_point(live.credentials[codes[0]])
    ok(await rc(operator, "open", deadline_s=60))
    desk = live.state.signaling.rollcalls[live.session_id]
    real_write = desk._write

    async def broken(batch: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(desk, "_write", broken)
    k = key()
    refused(await rc(point, "confirm", round=1, headcount=9, key=k), "unavailable")
    # Memory holds nothing the database lost: the round is rebuilt without the answer.
    assert desk.state.rounds[0].records == {}
    assert desk.tallies[1].total.waiting == HANOI_POINTS
    assert desk.keys == {}

    monkeypatch.setattr(desk, "_write", real_write)
    again = ok(await rc(point, "confirm", round=1, headcount=9, key=k))
    assert again["replayed"] is False
    assert again["status"] == "present"
    assert desk.tallies[1].total.present == 1


async def test_ending_the_session_closes_the_open_round(live_server: Live) -> None:
    live = live_server
    codes = sorted(live.credentials)
    operator = await live.hello_staff()
    point = await live.hello_point(live.credentials[codes[0]])
    ok(await rc(operator, "open", deadline_s=60))
    ok(await rc(point, "confirm", round=1, headcount=7, key=key()))
    ended = await live.action(live.session_id, "end")
    assert ended["status"] == "ended"
    event = await operator.until("event", where=lambda m: m["event"] == "rollcall.closed")
    assert event["actor"] == "system"
    assert event["payload"]["counts"]["present"] == 1
    assert event["payload"]["counts"]["absent"] == HANOI_POINTS - 1
    rounds = (
        await live.http.get(f"/api/v1/sessions/{live.session_id}/rollcalls", headers=live.op)
    ).json()["rounds"]
    assert rounds[0]["phase"] == "closed"
