"""Adding up the rooms' logs: what the report says must follow from what the rooms saw."""

from __future__ import annotations

from typing import Any

from app.simulate.summary import quantile, summarize


def room(code: str, **fields: Any) -> dict[str, Any]:
    log: dict[str, Any] = {
        "code": code,
        "media": False,
        "silent": False,
        "joined": True,
        "join_ms": 10.0,
        "first_welcome_wall": 1.0,
        "attempts": 1,
        "connects": 1,
        "resumes": [],
        "errors": [],
        "ended": True,
        "rollcall": {},
        "hand": None,
        "call_on": [],
        "granted": [],
        "subscribe_ms": None,
        "program_frames": 0,
        "floor_frames": 0,
        "publish_ms": None,
        "published_at": None,
    }
    log.update(fields)
    return log


def test_quantile_is_nearest_rank() -> None:
    assert quantile([], 0.5) is None
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert quantile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert quantile([5.0], 1.0) == 5.0


def test_rooms_joins_resumes_and_errors_are_counted() -> None:
    rooms = [
        room("00001", join_ms=5.0),
        room("00004", join_ms=50.0, attempts=3, errors=["connection lost unexpectedly: 1006"]),
        room("00006", joined=False, join_ms=None, ended=False, errors=["join refused: 4403"]),
        room("00007", attempts=2, connects=2, resumes=[[True, 2, 40.0]]),
        room("00008", attempts=2, connects=2, resumes=[[False, 0, 60.0]], hand="ack"),
    ]
    summary = summarize(rooms)
    assert (summary.rooms, summary.joined, summary.ended) == (5, 4, 4)
    assert summary.join_max_ms == 50.0
    assert summary.retried_joins == 1
    assert (summary.drops, summary.resumed) == (2, 1)
    assert (summary.hands, summary.hands_acked) == (1, 1)
    assert summary.errors == 2
    assert summary.error_kinds == {
        "connection lost unexpectedly: ####": 1,
        "join refused: ####": 1,
    }


def test_a_round_expects_every_joined_room_that_is_not_silent() -> None:
    answered = {"outcome": "ack", "ack_ms": 8.0, "opened_seen": 100.0, "acked": 104.0}
    rooms = [
        room("00001", rollcall={"1": answered}),
        room("00004", rollcall={"1": {**answered, "ack_ms": 20.0, "acked": 109.0, "sends": 2}}),
        room("00006", rollcall={"1": {"outcome": "timeout", "opened_seen": 100.0}}),
        room("00007", silent=True),
        room("00008", joined=False, join_ms=None),
    ]
    (only,) = summarize(rooms).rounds
    assert (only.round, only.expected, only.answered, only.silent_joined) == (1, 3, 2, 1)
    assert only.ack_p99_ms == 20.0
    assert only.resent == 1
    assert only.answer_max_s == 9.0


def test_media_rooms_frames_and_publishers() -> None:
    rooms = [
        room("00001", media=True, subscribe_ms=300.0, program_frames=500, publish_ms=200.0),
        room("00004", media=True, subscribe_ms=310.0, program_frames=450),
        room("00006", media=True),
        room("00007"),
    ]
    summary = summarize(rooms)
    assert (summary.media_rooms, summary.media_receiving, summary.media_published) == (3, 2, 1)
    assert summary.program_frames_min == 450
    assert summary.program_frames_total == 950
