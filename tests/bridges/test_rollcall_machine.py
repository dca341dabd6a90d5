"""The roll-call rules, one case each: the statuses a room can end a round in, and every refusal."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from bridges.rollcall import (
    Close,
    Closed,
    Confirm,
    Confirmed,
    Correct,
    Excuse,
    Marked,
    Open,
    Opened,
    Phase,
    Record,
    Refusal,
    RollcallRefused,
    RollcallState,
    Status,
    changes_of,
    replay,
    step,
    tally,
)

LIMIT = 500
POINTS = range(1, 527)  # the Hanoi wards
LIMITS = dict.fromkeys(POINTS, LIMIT)
AREAS = {p: f"{(p - 1) % 30 + 1:03d}" for p in POINTS}  # 30 districts


def opened(at: float = 0.0, deadline_s: float = 120.0) -> RollcallState:
    state, effect = step(RollcallState(), Open(LIMITS, deadline_s, "Điểm danh"), now=at)
    assert effect == Opened(round=1, deadline=at + deadline_s, invited=526)
    return state


def refused(state: RollcallState, command: object, now: float, reason: Refusal) -> None:
    with pytest.raises(RollcallRefused) as caught:
        step(state, command, now=now)  # type: ignore[arg-type]
    assert caught.value.reason is reason
    assert caught.value.details["machine"] == "rollcall"
    assert caught.value.details["reason"] == reason.value


# ---- open ---------------------------------------------------------------------------------


def test_rounds_are_numbered_and_one_is_open_at_a_time() -> None:
    state = opened()
    assert state.current is not None
    assert state.current.number == 1
    refused(state, Open(LIMITS, 60), 1, Refusal.ROUND_OPEN)
    state, _ = step(state, Close(1), now=2)
    assert state.current is None
    state, effect = step(state, Open(LIMITS, 60, "Sau giờ nghỉ"), now=3)
    assert isinstance(effect, Opened)
    assert effect.round == 2
    assert [r.number for r in state.rounds] == [1, 2]


@pytest.mark.parametrize("deadline_s", [0, 9.99, 3600.01, -5])
def test_deadline_bounds(deadline_s: float) -> None:
    refused(RollcallState(), Open(LIMITS, deadline_s), 0, Refusal.BAD_DEADLINE)


def test_open_needs_points_and_a_one_line_message() -> None:
    refused(RollcallState(), Open({}, 60), 0, Refusal.NOBODY_INVITED)
    refused(RollcallState(), Open(LIMITS, 60, "dòng một\ndòng hai"), 0, Refusal.TEXT_TOO_LONG)
    refused(RollcallState(), Open(LIMITS, 60, "x" * 301), 0, Refusal.TEXT_TOO_LONG)
    refused(RollcallState(), Open({1: -1}, 60), 0, Refusal.HEADCOUNT_OUT_OF_RANGE)


# ---- confirm ------------------------------------------------------------------------------


def test_present_up_to_the_deadline_then_late() -> None:
    state = opened(at=100)
    state, effect = step(state, Confirm(1, 1, 25, "Đủ thành phần"), now=220)  # at the deadline
    assert isinstance(effect, Confirmed)
    assert effect.after.status is Status.PRESENT
    assert effect.first is True
    assert effect.before is None
    state, effect = step(state, Confirm(1, 2, 3), now=220.001)
    assert isinstance(effect, Confirmed)
    assert effect.after.status is Status.LATE
    round_ = state.rounds[0]
    assert round_.status_of(1) is Status.PRESENT
    assert round_.status_of(2) is Status.LATE
    assert round_.status_of(3) is None


def test_a_changed_headcount_keeps_the_status_first_earned() -> None:
    state = opened(at=0)
    state, _ = step(state, Confirm(1, 1, 10), now=5)
    state, effect = step(state, Confirm(1, 1, 12, "thêm 2 người"), now=500)
    assert isinstance(effect, Confirmed)
    assert effect.first is False
    assert effect.after.status is Status.PRESENT
    assert effect.after.confirmed_at == 5
    assert effect.after.headcount == 12
    assert effect.before == Record(Status.PRESENT, 10, "", 5, 5)
    refused(state, Confirm(1, 1, 12, "thêm 2 người"), 501, Refusal.UNCHANGED)


def test_headcount_bounds_are_the_rooms() -> None:
    state, _ = step(RollcallState(), Open({1: 40, 2: 0}, 60), now=0)
    step(state, Confirm(1, 1, 0), now=1)
    step(state, Confirm(1, 1, 40), now=1)
    refused(state, Confirm(1, 1, 41), 1, Refusal.HEADCOUNT_OUT_OF_RANGE)
    refused(state, Confirm(1, 1, -1), 1, Refusal.HEADCOUNT_OUT_OF_RANGE)
    step(state, Confirm(1, 2, 0), now=1)
    refused(state, Confirm(1, 2, 1), 1, Refusal.HEADCOUNT_OUT_OF_RANGE)


def test_who_and_when_may_confirm() -> None:
    state = opened()
    refused(state, Confirm(1, 9999, 1), 1, Refusal.NOT_INVITED)
    refused(state, Confirm(2, 1, 1), 1, Refusal.NO_SUCH_ROUND)
    refused(state, Confirm(1, 1, 1, "a\nb"), 1, Refusal.TEXT_TOO_LONG)
    refused(state, Confirm(1, 1, 1, "x" * 201), 1, Refusal.TEXT_TOO_LONG)
    closed, _ = step(state, Close(1), now=2)
    refused(closed, Confirm(1, 1, 1), 3, Refusal.ROUND_CLOSED)


# ---- marks --------------------------------------------------------------------------------


def test_excuse_and_correct_need_a_reason() -> None:
    state = opened()
    refused(state, Excuse(1, 1, ""), 1, Refusal.REASON_NEEDED)
    refused(state, Excuse(1, 1, "   "), 1, Refusal.REASON_NEEDED)
    refused(state, Correct(1, 1, Status.PRESENT, 3, ""), 1, Refusal.REASON_NEEDED)
    refused(state, Excuse(1, 9999, "x"), 1, Refusal.NOT_INVITED)
    refused(state, Excuse(3, 1, "x"), 1, Refusal.NO_SUCH_ROUND)


def test_marks_work_open_and_closed_and_are_the_staffs() -> None:
    state = opened()
    state, effect = step(state, Excuse(1, 1, "Mất điện cả phường"), now=1)
    assert isinstance(effect, Marked)
    assert effect.after.status is Status.EXCUSED
    assert effect.after.changed_by_staff is True
    assert effect.after.reason == "Mất điện cả phường"
    refused(state, Excuse(1, 1, "lần nữa"), 2, Refusal.UNCHANGED)
    state, _ = step(state, Close(1), now=3)
    state, effect = step(state, Correct(1, 2, Status.PRESENT, 40, "Báo qua điện thoại"), now=4)
    assert isinstance(effect, Marked)
    assert effect.before == Record(Status.ABSENT, None, changed_at=3)
    assert state.rounds[0].records[2].headcount == 40
    assert state.rounds[0].phase is Phase.CLOSED


def test_a_correction_checks_the_headcount_against_the_status() -> None:
    state = opened()
    refused(state, Correct(1, 1, Status.PRESENT, None, "x"), 1, Refusal.HEADCOUNT_NEEDED)
    refused(state, Correct(1, 1, Status.LATE, 501, "x"), 1, Refusal.HEADCOUNT_OUT_OF_RANGE)
    refused(state, Correct(1, 1, Status.ABSENT, 3, "x"), 1, Refusal.HEADCOUNT_OUT_OF_RANGE)
    refused(state, Correct(1, 1, Status.EXCUSED, 0, "x"), 1, Refusal.HEADCOUNT_OUT_OF_RANGE)
    state, effect = step(state, Correct(1, 1, Status.ABSENT, None, "Không có ai"), now=1)
    assert isinstance(effect, Marked)
    assert effect.after.status is Status.ABSENT


def test_a_point_answering_after_an_excuse_is_present_or_late_by_its_time() -> None:
    state = opened(at=0, deadline_s=60)
    state, _ = step(state, Excuse(1, 1, "Báo vắng trước"), now=1)
    state, effect = step(state, Confirm(1, 1, 8), now=70)
    assert isinstance(effect, Confirmed)
    assert effect.after.status is Status.LATE
    assert effect.first is True
    assert effect.after.changed_by_staff is False


# ---- close, replay, tally -----------------------------------------------------------------


def test_close_makes_every_unanswered_point_absent() -> None:
    state = opened()
    state, _ = step(state, Confirm(1, 5, 1), now=1)
    state, _ = step(state, Excuse(1, 3, "x"), now=1)
    state, effect = step(state, Close(1), now=2)
    assert isinstance(effect, Closed)
    assert effect.absent == tuple(p for p in POINTS if p not in (3, 5))
    assert list(effect.absent) == sorted(effect.absent)
    round_ = state.rounds[0]
    assert set(round_.records) == set(POINTS)
    refused(state, Close(1), 3, Refusal.ROUND_CLOSED)
    refused(state, Close(2), 3, Refusal.NO_SUCH_ROUND)


def test_refusals_change_nothing() -> None:
    state = opened()
    state, _ = step(state, Confirm(1, 1, 10), now=1)
    before = state
    for command in (Confirm(1, 1, 10), Confirm(1, 2, 501), Excuse(1, 2, ""), Close(5)):
        with pytest.raises(RollcallRefused):
            step(state, command, now=2)
    assert state == before
    assert state.rounds[0].records == MappingProxyType({1: Record(Status.PRESENT, 10, "", 1, 1)})


def test_replay_rebuilds_the_same_state() -> None:
    entries = [
        (Open(LIMITS, 60, "Điểm danh"), 0.0),
        (Confirm(1, 1, 10), 1.0),
        (Confirm(1, 2, 3, "ghi chú"), 70.0),
        (Excuse(1, 3, "Mất điện"), 71.0),
        (Close(1), 80.0),
        (Correct(1, 4, Status.PRESENT, 6, "Báo muộn qua điện thoại"), 90.0),
        (Open(LIMITS, 120), 100.0),
    ]
    state = RollcallState()
    for command, at in entries:
        state, _ = step(state, command, now=at)
    assert replay(entries) == state


def test_tally_counts_overall_and_per_district() -> None:
    state = opened(at=0, deadline_s=60)
    state, _ = step(state, Confirm(1, 1, 10), now=1)  # district 001
    state, _ = step(state, Confirm(1, 31, 20), now=70)  # 001, late
    state, _ = step(state, Confirm(1, 2, 5), now=2)  # 002
    state, _ = step(state, Excuse(1, 3, "x"), now=3)  # 003
    total, areas = tally(state.rounds[0], AREAS)
    assert total.as_dict() == {
        "present": 2,
        "late": 1,
        "absent": 0,
        "excused": 1,
        "waiting": 522,
        "headcount": 35,
        "expected": 526,
    }
    assert areas["001"].as_dict() == {
        "present": 1,
        "late": 1,
        "absent": 0,
        "excused": 0,
        "waiting": 16,
        "headcount": 30,
        "expected": 18,
    }
    assert sum(a.expected for a in areas.values()) == 526
    state, _ = step(state, Close(1), now=80)
    total, _ = tally(state.rounds[0], AREAS)
    assert (total.waiting, total.absent) == (0, 522)


def test_changes_of_every_effect() -> None:
    state, opened_effect = step(RollcallState(), Open({1: 10, 2: 10}, 60), now=0)
    assert changes_of(opened_effect) == []
    state, confirmed = step(state, Confirm(1, 1, 4), now=1)
    assert changes_of(confirmed) == [(1, None, Record(Status.PRESENT, 4, "", 1, 1))]
    state, marked = step(state, Correct(1, 1, Status.LATE, 5, "sửa"), now=2)
    ((point, before, after),) = changes_of(marked)
    assert (point, before, after.status, after.headcount) == (1, confirmed.after, Status.LATE, 5)  # type: ignore[union-attr]
    state, closed = step(state, Close(1), now=3)
    assert changes_of(closed) == [(2, None, Record(Status.ABSENT, None, changed_at=3))]
