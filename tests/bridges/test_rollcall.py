"""The roll-call machine, one rule at a time, on the 526 Hanoi wards of the reference file.

Every accepted command is checked for the record it leaves and the effect it reports (the shell
stores effects as the audit trail and feeds the live tally from them); every refusal for its reason,
its details and that it changed nothing. Random walks with invariants are in
test_rollcall_stateful.py.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.errors import InvalidTransition
from bridges.rollcall import (
    Close,
    Closed,
    Command,
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

WARDS_CSV = Path(__file__).resolve().parents[2] / "examples" / "hanoi-wards-2024.csv"


@dataclass(frozen=True)
class Ward:
    point: int  # the connection point's id, 1..526 in file order
    code: str
    name: str
    district_code: str
    district_name: str


def _load_wards() -> tuple[Ward, ...]:
    with WARDS_CSV.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    return tuple(
        Ward(i, r["code"], r["name"], r["district_code"], r["district_name"])
        for i, r in enumerate(rows, start=1)
    )


WARDS = _load_wards()
BY_NAME = {w.name: w.point for w in WARDS}
LIMIT = 500  # the session's rollcall_max_headcount
LIMITS = {w.point: LIMIT for w in WARDS}
DISTRICT = {w.point: w.district_code for w in WARDS}
DISTRICT_NAME = {w.point: w.district_name for w in WARDS}

PHUC_XA = BY_NAME["Phường Phúc Xá"]  # Quận Ba Đình, 001
TRUC_BACH = BY_NAME["Phường Trúc Bạch"]  # 001
PHUC_TAN = BY_NAME["Phường Phúc Tân"]  # Quận Hoàn Kiếm, 002
HANG_BAC = BY_NAME["Phường Hàng Bạc"]  # 002
NHAT_TAN = BY_NAME["Phường Nhật Tân"]  # Quận Tây Hồ, 003
NOT_A_WARD = 9999

T0 = 1_764_900_000.0  # 08:00 on the day of the dialogue, seconds since the epoch
DEADLINE_S = 120.0


def test_the_reference_file_is_what_these_tests_assume() -> None:
    """The data is real: 526 wards in 30 districts; the ward names used below are unique (some
    names repeat across districts, so the tests name only ones that do not)."""
    assert len(WARDS) == 526
    assert len(set(DISTRICT.values())) == 30
    names = Counter(w.name for w in WARDS)
    for name in ("Phường Phúc Xá", "Phường Trúc Bạch", "Phường Phúc Tân", "Phường Hàng Bạc"):
        assert names[name] == 1
    assert names["Phường Nhật Tân"] == 1
    assert (DISTRICT[PHUC_XA], DISTRICT[PHUC_TAN], DISTRICT[NHAT_TAN]) == ("001", "002", "003")


# ---- helpers ------------------------------------------------------------------------------


def opened(
    limits: dict[int, int] | None = None, at: float = T0, deadline_s: float = DEADLINE_S
) -> RollcallState:
    state, _ = step(
        RollcallState(), Open(limits or LIMITS, deadline_s, "Điểm danh đầu phiên"), now=at
    )
    return state


def run(state: RollcallState, *entries: tuple[Command, float]) -> RollcallState:
    for command, at in entries:
        state, _ = step(state, command, now=at)
    return state


def snapshot(state: RollcallState) -> Any:
    """The whole state as plain values, so an in-place change of a shared dict would show."""
    return [
        (
            r.number,
            r.opened_at,
            r.deadline,
            r.message,
            sorted(r.limits.items()),
            r.phase,
            r.closed_at,
            sorted(r.records.items()),
        )
        for r in state.rounds
    ]


def refused(
    state: RollcallState, command: Command, now: float, reason: Refusal, phase: str | None = None
) -> RollcallRefused:
    """Steps a command that must be refused and checks the refusal changed nothing."""
    before = snapshot(state)
    with pytest.raises(RollcallRefused) as caught:
        step(state, command, now=now)
    error = caught.value
    assert error.reason is reason
    assert error.details["machine"] == "rollcall"
    assert error.details["command"] == command.name
    assert error.details["reason"] == reason.value
    if phase is not None:
        assert error.details["state"] == phase
    assert snapshot(state) == before
    return error


def record(state: RollcallState, point: int, number: int = 1) -> Record | None:
    round_ = state.round(number)
    assert round_ is not None
    return round_.records.get(point)


# ---- open ---------------------------------------------------------------------------------


def test_the_first_round_is_number_one_and_holds_every_invited_point() -> None:
    """Opening starts round 1 with its deadline counted from now and nobody answered yet."""
    state, effect = step(RollcallState(), Open(LIMITS, 120, "Điểm danh đầu phiên"), now=T0)
    assert effect == Opened(round=1, deadline=T0 + 120, invited=526)
    round_ = state.current
    assert round_ is not None
    assert (round_.number, round_.phase, round_.opened_at, round_.deadline) == (
        1,
        Phase.OPEN,
        T0,
        T0 + 120,
    )
    assert round_.message == "Điểm danh đầu phiên"
    assert round_.invited == frozenset(LIMITS)
    assert dict(round_.records) == {}
    assert round_.closed_at is None
    assert state.round(1) is round_
    assert state.round(2) is None


def test_the_round_after_a_closed_one_is_number_two() -> None:
    """Rounds are numbered in order; the one after the break is a new round, the first stays."""
    state = run(opened(), (Confirm(1, PHUC_XA, 30), T0 + 5), (Close(1), T0 + 200))
    state, effect = step(state, Open(LIMITS, 60, "Điểm danh sau giờ nghỉ"), now=T0 + 3600)
    assert effect == Opened(round=2, deadline=T0 + 3660, invited=526)
    assert [r.number for r in state.rounds] == [1, 2]
    assert [r.phase for r in state.rounds] == [Phase.CLOSED, Phase.OPEN]
    assert state.current is state.rounds[1]
    assert dict(state.rounds[1].records) == {}
    assert record(state, PHUC_XA) == Record(Status.PRESENT, 30, "", T0 + 5, T0 + 5)


def test_no_second_round_while_one_is_open() -> None:
    """At most one round is open at a time; the refusal names the open state."""
    state = opened()
    refused(state, Open(LIMITS, 60), T0 + 1, Refusal.ROUND_OPEN, phase="open")
    state = run(state, (Close(1), T0 + 2), (Open(LIMITS, 60), T0 + 3))
    refused(state, Open(LIMITS, 60), T0 + 4, Refusal.ROUND_OPEN, phase="open")


@pytest.mark.parametrize("deadline_s", [10, 10.0, 120, 3599.5, 3600])
def test_deadlines_from_ten_seconds_to_an_hour_are_accepted(deadline_s: float) -> None:
    """The bounds 10 s and 1 h are themselves allowed."""
    _, effect = step(RollcallState(), Open(LIMITS, deadline_s), now=T0)
    assert isinstance(effect, Opened)
    assert effect.deadline == T0 + deadline_s


@pytest.mark.parametrize("deadline_s", [9.999, 0, -120, 3600.001, 86_400, math.nan, math.inf])
def test_deadlines_outside_the_bounds_are_refused(deadline_s: float) -> None:
    """A deadline too short to answer, too long to wait, or not a number is bad_deadline."""
    refused(RollcallState(), Open(LIMITS, deadline_s), T0, Refusal.BAD_DEADLINE, phase="none")


def test_a_round_with_nobody_invited_is_refused() -> None:
    """An empty invitation list would close into an empty round; the state named is the last one."""
    refused(RollcallState(), Open({}, 120), T0, Refusal.NOBODY_INVITED, phase="none")
    closed = run(opened(), (Close(1), T0 + 1))
    refused(closed, Open({}, 120), T0 + 2, Refusal.NOBODY_INVITED, phase="closed")


def test_a_negative_room_limit_is_refused() -> None:
    """A capacity below zero would make every headcount out of range."""
    refused(
        RollcallState(), Open({PHUC_XA: 40, TRUC_BACH: -1}, 120), T0, Refusal.HEADCOUNT_OUT_OF_RANGE
    )


@pytest.mark.parametrize("message", ["Điểm danh\nđầu phiên", "Điểm danh\r", "đ" * 301, "x" * 301])
def test_the_message_is_one_line_of_at_most_300_characters(message: str) -> None:
    """The prompt is shown on one line of every point's screen."""
    refused(RollcallState(), Open(LIMITS, 120, message), T0, Refusal.TEXT_TOO_LONG)


def test_a_300_character_message_is_kept_as_given() -> None:
    """300 characters is still allowed, diacritics count once each."""
    message = ("Đề nghị các điểm cầu xác nhận số người dự. " * 10)[:300]
    assert len(message) == 300
    state, _ = step(RollcallState(), Open(LIMITS, 120, message), now=T0)
    assert state.rounds[0].message == message


def test_the_invited_set_is_fixed_when_the_round_opens() -> None:
    """A point invited later joins the next round: the caller's dict is copied, not shared."""
    limits = {PHUC_XA: 40, TRUC_BACH: 60}
    state, _ = step(RollcallState(), Open(limits, 120), now=T0)
    limits[PHUC_TAN] = 500
    limits[PHUC_XA] = 1
    assert dict(state.rounds[0].limits) == {PHUC_XA: 40, TRUC_BACH: 60}
    refused(state, Confirm(1, PHUC_TAN, 5), T0 + 1, Refusal.NOT_INVITED)
    step(state, Confirm(1, PHUC_XA, 40), now=T0 + 1)


# ---- confirm ------------------------------------------------------------------------------


def test_an_answer_before_the_deadline_is_present() -> None:
    """The first answer records the headcount, the note and the point's own time."""
    state, effect = step(opened(), Confirm(1, PHUC_XA, 37, "Đủ thành phần"), now=T0 + 30)
    expected = Record(Status.PRESENT, 37, "Đủ thành phần", confirmed_at=T0 + 30, changed_at=T0 + 30)
    assert effect == Confirmed(round=1, point=PHUC_XA, before=None, after=expected, first=True)
    assert record(state, PHUC_XA) == expected
    assert expected.changed_by_staff is False
    assert expected.reason == ""
    assert state.rounds[0].status_of(PHUC_XA) is Status.PRESENT
    assert state.rounds[0].status_of(TRUC_BACH) is None


def test_an_answer_exactly_at_the_deadline_is_present_and_just_after_is_late() -> None:
    """'At or before the deadline' is present; the first instant after it is late."""
    state = opened(at=T0, deadline_s=60)
    state, at_deadline = step(state, Confirm(1, PHUC_XA, 10), now=T0 + 60)
    state, after = step(state, Confirm(1, TRUC_BACH, 10), now=T0 + 60.001)
    assert isinstance(at_deadline, Confirmed)
    assert isinstance(after, Confirmed)
    assert at_deadline.after.status is Status.PRESENT
    assert after.after.status is Status.LATE
    assert after.first is True


def test_a_late_answer_long_after_the_deadline_is_still_late_until_close() -> None:
    """Until the operator closes, a point can still answer; it is late, not absent."""
    state = run(opened(), (Confirm(1, PHUC_XA, 12), T0 + 3000))
    assert record(state, PHUC_XA) == Record(Status.LATE, 12, "", T0 + 3000, T0 + 3000)


@pytest.mark.parametrize(
    ("command", "reason", "phase"),
    [
        (Confirm(1, NOT_A_WARD, 5), Refusal.NOT_INVITED, "open"),
        (Confirm(2, PHUC_XA, 5), Refusal.NO_SUCH_ROUND, "none"),
        (Confirm(0, PHUC_XA, 5), Refusal.NO_SUCH_ROUND, "none"),
        (Confirm(-1, PHUC_XA, 5), Refusal.NO_SUCH_ROUND, "none"),
        (Confirm(1, PHUC_XA, -1), Refusal.HEADCOUNT_OUT_OF_RANGE, "open"),
        (Confirm(1, PHUC_XA, LIMIT + 1), Refusal.HEADCOUNT_OUT_OF_RANGE, "open"),
        (Confirm(1, PHUC_XA, 5, "Đủ\nthành phần"), Refusal.TEXT_TOO_LONG, "open"),
        (Confirm(1, PHUC_XA, 5, "Đủ\rthành phần"), Refusal.TEXT_TOO_LONG, "open"),
        (Confirm(1, PHUC_XA, 5, "ư" * 201), Refusal.TEXT_TOO_LONG, "open"),
    ],
)
def test_confirmations_that_are_refused(command: Confirm, reason: Refusal, phase: str) -> None:
    """Each guard of confirm, with the state the refusal names."""
    refused(opened(), command, T0 + 1, reason, phase=phase)


def test_a_confirmation_with_no_round_at_all_is_no_such_round() -> None:
    """A point answering before any round was opened."""
    refused(RollcallState(), Confirm(1, PHUC_XA, 5), T0, Refusal.NO_SUCH_ROUND, phase="none")


def test_a_point_not_invited_to_this_round_cannot_answer() -> None:
    """Invited is per round: a ward of another district, not in this round's list, is refused."""
    state = opened({w.point: LIMIT for w in WARDS if w.district_code == "001"})
    refused(state, Confirm(1, PHUC_TAN, 5), T0 + 1, Refusal.NOT_INVITED)
    step(state, Confirm(1, PHUC_XA, 5), now=T0 + 1)


@pytest.mark.parametrize("headcount", [0, 1, 39, 40])
def test_headcounts_from_zero_to_the_rooms_capacity_are_accepted(headcount: int) -> None:
    """0 (a room that connected but nobody sat) and the capacity itself are both allowed."""
    state = opened({PHUC_XA: 40, TRUC_BACH: LIMIT})
    state, _ = step(state, Confirm(1, PHUC_XA, headcount), now=T0 + 1)
    rec = record(state, PHUC_XA)
    assert rec is not None
    assert rec.headcount == headcount


@pytest.mark.parametrize("headcount", [-1, 41, LIMIT])
def test_headcounts_outside_the_rooms_bound_are_refused(headcount: int) -> None:
    """The bound is the room's own capacity (40 here), not the session's 500."""
    state = opened({PHUC_XA: 40, TRUC_BACH: LIMIT})
    refused(state, Confirm(1, PHUC_XA, headcount), T0 + 1, Refusal.HEADCOUNT_OUT_OF_RANGE)


def test_a_room_of_capacity_zero_can_only_answer_zero() -> None:
    """The bound is inclusive at both ends, even when both ends are 0."""
    state = opened({PHUC_XA: 0})
    refused(state, Confirm(1, PHUC_XA, 1), T0 + 1, Refusal.HEADCOUNT_OUT_OF_RANGE)
    state, _ = step(state, Confirm(1, PHUC_XA, 0), now=T0 + 1)
    assert record(state, PHUC_XA) == Record(Status.PRESENT, 0, "", T0 + 1, T0 + 1)


def test_a_changed_headcount_keeps_present_even_after_the_deadline() -> None:
    """The status is earned by the first answer; a later change of headcount is not 'late'."""
    state = run(opened(), (Confirm(1, PHUC_XA, 30, "Đang đón thêm"), T0 + 10))
    first = record(state, PHUC_XA)
    state, effect = step(state, Confirm(1, PHUC_XA, 42, "Đủ thành phần"), now=T0 + 900)
    assert isinstance(effect, Confirmed)
    assert effect.first is False
    assert effect.before == first
    assert effect.after == Record(
        Status.PRESENT, 42, "Đủ thành phần", confirmed_at=T0 + 10, changed_at=T0 + 900
    )
    assert record(state, PHUC_XA) == effect.after


def test_a_late_point_changing_its_headcount_stays_late() -> None:
    """Late is kept the same way present is."""
    state = run(opened(), (Confirm(1, HANG_BAC, 8), T0 + 500))
    state, effect = step(state, Confirm(1, HANG_BAC, 9), now=T0 + 600)
    assert isinstance(effect, Confirmed)
    assert (effect.after.status, effect.after.confirmed_at, effect.first) == (
        Status.LATE,
        T0 + 500,
        False,
    )


def test_the_same_answer_again_is_unchanged() -> None:
    """A repeated answer (same headcount, same note) is refused, even past the deadline."""
    state = run(opened(), (Confirm(1, PHUC_XA, 30, "Đủ"), T0 + 10))
    refused(state, Confirm(1, PHUC_XA, 30, "Đủ"), T0 + 11, Refusal.UNCHANGED)
    refused(state, Confirm(1, PHUC_XA, 30, "Đủ"), T0 + 900, Refusal.UNCHANGED)


def test_a_new_note_with_the_same_headcount_is_a_change() -> None:
    """The note is part of the answer: changing only it is accepted."""
    state = run(opened(), (Confirm(1, PHUC_XA, 30), T0 + 10))
    state, effect = step(state, Confirm(1, PHUC_XA, 30, "Thiếu đại biểu HĐND"), now=T0 + 20)
    assert isinstance(effect, Confirmed)
    assert effect.after.note == "Thiếu đại biểu HĐND"
    assert effect.after.headcount == 30


def test_a_200_character_note_is_accepted() -> None:
    """The note bound is inclusive."""
    state, _ = step(opened(), Confirm(1, PHUC_XA, 3, "ơ" * 200), now=T0 + 1)
    rec = record(state, PHUC_XA)
    assert rec is not None
    assert rec.note == "ơ" * 200


# ---- excuse and correct -------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", " ", "   ", "\t"])
@pytest.mark.parametrize(
    "make",
    [
        lambda reason: Excuse(1, PHUC_XA, reason),
        lambda reason: Correct(1, PHUC_XA, Status.PRESENT, 20, reason),
        lambda reason: Correct(1, PHUC_XA, Status.ABSENT, None, reason),
    ],
    ids=["excuse", "correct-present", "correct-absent"],
)
def test_marks_need_a_reason(make: Any, reason: str) -> None:
    """Every mark is audited with a why; a blank one is no reason."""
    refused(opened(), make(reason), T0 + 1, Refusal.REASON_NEEDED)


@pytest.mark.parametrize("reason", ["Mất điện\ncả phường", "r" * 201])
def test_a_reason_is_one_line_of_at_most_200_characters(reason: str) -> None:
    """The reason goes into the minutes on one line."""
    refused(opened(), Excuse(1, PHUC_XA, reason), T0 + 1, Refusal.TEXT_TOO_LONG)


def test_marks_on_rounds_or_points_that_do_not_exist() -> None:
    """The round and the point are checked before the reason."""
    state = opened()
    refused(state, Excuse(2, PHUC_XA, "Mất điện"), T0 + 1, Refusal.NO_SUCH_ROUND, phase="none")
    refused(state, Excuse(1, NOT_A_WARD, "Mất điện"), T0 + 1, Refusal.NOT_INVITED)
    refused(state, Correct(1, NOT_A_WARD, Status.PRESENT, 3, "x"), T0 + 1, Refusal.NOT_INVITED)


def test_an_excuse_in_an_open_round_is_the_staffs_mark_with_its_reason() -> None:
    """The record says who decided (staff) and why; the effect carries before and after."""
    state, effect = step(opened(), Excuse(1, NHAT_TAN, "Mất điện cả phường"), now=T0 + 5)
    expected = Record(
        Status.EXCUSED,
        None,
        changed_at=T0 + 5,
        reason="Mất điện cả phường",
        changed_by_staff=True,
    )
    assert effect == Marked(round=1, point=NHAT_TAN, before=None, after=expected)
    assert record(state, NHAT_TAN) == expected


def test_an_excuse_in_a_closed_round_replaces_absent() -> None:
    """Marks work after close: an absent ward that had phoned in is excused for the minutes."""
    state = run(opened(), (Close(1), T0 + 200))
    absent = record(state, NHAT_TAN)
    assert absent == Record(Status.ABSENT, None, changed_at=T0 + 200)
    state, effect = step(state, Excuse(1, NHAT_TAN, "Báo vắng bằng văn bản"), now=T0 + 300)
    assert isinstance(effect, Marked)
    assert effect.before == absent
    assert record(state, NHAT_TAN) == Record(
        Status.EXCUSED,
        None,
        changed_at=T0 + 300,
        reason="Báo vắng bằng văn bản",
        changed_by_staff=True,
    )
    assert state.rounds[0].phase is Phase.CLOSED


def test_a_correction_in_a_closed_round_sets_status_and_headcount() -> None:
    """A ward whose tablet failed reports by phone; the operator records it as late with 25."""
    state = run(opened(), (Close(1), T0 + 200))
    state, effect = step(
        state, Correct(1, HANG_BAC, Status.LATE, 25, "Báo qua điện thoại"), now=T0 + 260
    )
    assert isinstance(effect, Marked)
    assert record(state, HANG_BAC) == Record(
        Status.LATE, 25, changed_at=T0 + 260, reason="Báo qua điện thoại", changed_by_staff=True
    )


@pytest.mark.parametrize("status", [Status.PRESENT, Status.LATE])
@pytest.mark.parametrize(
    ("headcount", "reason"),
    [
        (None, Refusal.HEADCOUNT_NEEDED),
        (-1, Refusal.HEADCOUNT_OUT_OF_RANGE),
        (LIMIT + 1, Refusal.HEADCOUNT_OUT_OF_RANGE),
    ],
)
def test_a_correction_to_present_or_late_needs_a_headcount_in_range(
    status: Status, headcount: int | None, reason: Refusal
) -> None:
    """People were there, so they are counted, within the room's bound."""
    refused(opened(), Correct(1, PHUC_XA, status, headcount, "Sửa"), T0 + 1, reason)


@pytest.mark.parametrize("status", [Status.PRESENT, Status.LATE])
@pytest.mark.parametrize("headcount", [0, LIMIT])
def test_a_correction_to_present_or_late_at_the_bounds_is_accepted(
    status: Status, headcount: int
) -> None:
    """Both ends of the range are allowed for a correction as for an answer."""
    state, _ = step(opened(), Correct(1, PHUC_XA, status, headcount, "Sửa"), now=T0 + 1)
    rec = record(state, PHUC_XA)
    assert rec is not None
    assert (rec.status, rec.headcount) == (status, headcount)


@pytest.mark.parametrize("status", [Status.ABSENT, Status.EXCUSED])
@pytest.mark.parametrize("headcount", [0, 5])
def test_a_correction_to_absent_or_excused_refuses_a_headcount(
    status: Status, headcount: int
) -> None:
    """Nobody is counted in a room that was not there, not even 0."""
    refused(
        opened(),
        Correct(1, PHUC_XA, status, headcount, "Sửa"),
        T0 + 1,
        Refusal.HEADCOUNT_OUT_OF_RANGE,
    )


def test_a_mark_to_the_same_status_and_headcount_is_unchanged() -> None:
    """Marking what is already recorded is refused, whatever the new reason says."""
    state = run(
        opened(),
        (Excuse(1, PHUC_XA, "Mất điện"), T0 + 1),
        (Confirm(1, TRUC_BACH, 20), T0 + 2),
        (Close(1), T0 + 200),
    )
    refused(state, Excuse(1, PHUC_XA, "Lý do khác"), T0 + 201, Refusal.UNCHANGED, phase="closed")
    refused(
        state, Correct(1, PHUC_XA, Status.EXCUSED, None, "Lý do khác"), T0 + 201, Refusal.UNCHANGED
    )
    refused(
        state, Correct(1, TRUC_BACH, Status.PRESENT, 20, "Xác nhận"), T0 + 201, Refusal.UNCHANGED
    )
    refused(
        state, Correct(1, PHUC_TAN, Status.ABSENT, None, "Xác nhận"), T0 + 201, Refusal.UNCHANGED
    )
    # The same status with another headcount is a change.
    state, _ = step(state, Correct(1, TRUC_BACH, Status.PRESENT, 21, "Đếm lại"), now=T0 + 202)
    rec = record(state, TRUC_BACH)
    assert rec is not None
    assert (rec.status, rec.headcount, rec.changed_by_staff) == (Status.PRESENT, 21, True)


def test_a_correction_keeps_the_points_own_answer_time_and_note() -> None:
    """The minutes still show when and what the point answered, beside the staff's mark."""
    state = run(opened(), (Confirm(1, PHUC_XA, 30, "Đủ thành phần"), T0 + 10))
    state, effect = step(
        state, Correct(1, PHUC_XA, Status.PRESENT, 28, "Hai người về sớm"), now=T0 + 50
    )
    assert isinstance(effect, Marked)
    assert effect.after == Record(
        Status.PRESENT,
        28,
        "Đủ thành phần",
        confirmed_at=T0 + 10,
        changed_at=T0 + 50,
        reason="Hai người về sớm",
        changed_by_staff=True,
    )


@pytest.mark.parametrize(
    ("answer_at", "status"), [(T0 + 30, Status.PRESENT), (T0 + 130, Status.LATE)]
)
def test_a_point_answering_after_an_excuse_is_present_or_late_by_its_time(
    answer_at: float, status: Status
) -> None:
    """An excuse is the staff's guess; the point's own answer replaces it, timed as any answer."""
    state = run(opened(), (Excuse(1, PHUC_TAN, "Chưa kết nối được"), T0 + 5))
    state, effect = step(state, Confirm(1, PHUC_TAN, 15), now=answer_at)
    assert isinstance(effect, Confirmed)
    assert effect.first is True
    assert effect.before is not None
    assert effect.before.status is Status.EXCUSED
    assert effect.after == Record(status, 15, "", confirmed_at=answer_at, changed_at=answer_at)
    assert effect.after.changed_by_staff is False


def test_a_point_corrected_to_absent_answering_again_is_timed_anew() -> None:
    """Absent is not a status an answer keeps: the next answer is present or late by its time."""
    state = run(
        opened(),
        (Confirm(1, PHUC_XA, 30), T0 + 10),
        (Correct(1, PHUC_XA, Status.ABSENT, None, "Không thấy hình"), T0 + 60),
    )
    state, effect = step(state, Confirm(1, PHUC_XA, 30), now=T0 + 200)
    assert isinstance(effect, Confirmed)
    assert (effect.after.status, effect.after.confirmed_at, effect.first) == (
        Status.LATE,
        T0 + 200,
        False,
    )


def test_a_first_answer_matching_an_operators_correction_is_recorded() -> None:
    """A ward phones in 'present, 25'; the operator records it; then its tablet works and it
    confirms 25 itself, in time. That is the point's first answer: it should be accepted and
    recorded as the point's word (confirmed_at set, no longer the staff's mark), not refused as a
    repeat of an answer it never gave."""
    state = run(
        opened(),
        (Correct(1, HANG_BAC, Status.PRESENT, 25, "Báo qua điện thoại"), T0 + 20),
    )
    state, effect = step(state, Confirm(1, HANG_BAC, 25), now=T0 + 40)
    assert isinstance(effect, Confirmed)
    assert effect.first is True
    assert effect.after == Record(Status.PRESENT, 25, "", confirmed_at=T0 + 40, changed_at=T0 + 40)


# ---- close --------------------------------------------------------------------------------


def test_close_makes_every_unanswered_point_absent_and_lists_them_sorted() -> None:
    """Answered, excused and corrected records stay; only the silent become absent."""
    state = run(
        opened(),
        (Confirm(1, NHAT_TAN, 12), T0 + 10),
        (Confirm(1, PHUC_XA, 30), T0 + 130),
        (Excuse(1, HANG_BAC, "Mất điện"), T0 + 140),
        (Correct(1, PHUC_TAN, Status.ABSENT, None, "Không có ai"), T0 + 150),
    )
    kept = dict(state.rounds[0].records)
    state, effect = step(state, Close(1), now=T0 + 300)
    silent = sorted(set(LIMITS) - {NHAT_TAN, PHUC_XA, HANG_BAC, PHUC_TAN})
    assert effect == Closed(round=1, at=T0 + 300, absent=tuple(silent))
    round_ = state.rounds[0]
    assert (round_.phase, round_.closed_at) == (Phase.CLOSED, T0 + 300)
    assert state.current is None
    assert set(round_.records) == set(LIMITS)
    for point in silent:
        assert round_.records[point] == Record(Status.ABSENT, None, changed_at=T0 + 300)
    for point, rec in kept.items():
        assert round_.records[point] == rec


def test_closing_a_round_everyone_answered_lists_nobody() -> None:
    """A full house closes with an empty absent list."""
    limits = {PHUC_XA: 40, TRUC_BACH: 40}
    state = run(
        opened(limits), (Confirm(1, PHUC_XA, 1), T0 + 1), (Confirm(1, TRUC_BACH, 2), T0 + 2)
    )
    _, effect = step(state, Close(1), now=T0 + 3)
    assert effect == Closed(round=1, at=T0 + 3, absent=())


def test_the_absent_list_is_sorted_whatever_order_the_points_were_invited_in() -> None:
    """The shell may list invited points in any order (by district, by name); the effect is sorted."""
    limits = {NHAT_TAN: 40, PHUC_XA: 40, HANG_BAC: 40, TRUC_BACH: 40}
    state = run(opened(limits), (Confirm(1, HANG_BAC, 3), T0 + 1))
    _, effect = step(state, Close(1), now=T0 + 2)
    assert effect == Closed(
        round=1, at=T0 + 2, absent=tuple(sorted({NHAT_TAN, PHUC_XA, TRUC_BACH}))
    )


def test_a_closed_round_is_never_reopened() -> None:
    """Closing twice is round_closed; so is a point answering after the close."""
    state = run(opened(), (Close(1), T0 + 200))
    refused(state, Close(1), T0 + 201, Refusal.ROUND_CLOSED, phase="closed")
    refused(state, Confirm(1, PHUC_XA, 30), T0 + 201, Refusal.ROUND_CLOSED, phase="closed")
    refused(state, Close(2), T0 + 201, Refusal.NO_SUCH_ROUND, phase="none")
    refused(RollcallState(), Close(1), T0, Refusal.NO_SUCH_ROUND, phase="none")


def test_an_earlier_round_is_still_marked_while_the_next_is_open() -> None:
    """Marks go to the round named; answers only to the open one."""
    state = run(opened(), (Close(1), T0 + 200), (Open(LIMITS, 60), T0 + 3600))
    refused(state, Confirm(1, PHUC_XA, 5), T0 + 3601, Refusal.ROUND_CLOSED)
    state, _ = step(state, Excuse(1, PHUC_XA, "Họp đột xuất"), now=T0 + 3602)
    assert state.rounds[0].status_of(PHUC_XA) is Status.EXCUSED
    assert state.rounds[1].status_of(PHUC_XA) is None
    refused(state, Close(1), T0 + 3603, Refusal.ROUND_CLOSED)
    state, _ = step(state, Close(2), now=T0 + 3700)
    assert state.rounds[1].status_of(PHUC_XA) is Status.ABSENT


# ---- refusals in general ------------------------------------------------------------------


def test_refusals_are_typed_invalid_transitions_and_change_nothing() -> None:
    """The edge turns InvalidTransition into a 409 with the machine, state, command and reason."""
    state = run(
        opened(),
        (Confirm(1, PHUC_XA, 30), T0 + 10),
        (Excuse(1, HANG_BAC, "Mất điện"), T0 + 11),
    )
    before = snapshot(state)
    commands: list[tuple[Command, Refusal]] = [
        (Open(LIMITS, 60), Refusal.ROUND_OPEN),
        (Confirm(1, PHUC_XA, 30), Refusal.UNCHANGED),
        (Confirm(1, TRUC_BACH, 501), Refusal.HEADCOUNT_OUT_OF_RANGE),
        (Excuse(1, HANG_BAC, "Lại mất điện"), Refusal.UNCHANGED),
        (Correct(1, PHUC_XA, Status.ABSENT, 0, "x"), Refusal.HEADCOUNT_OUT_OF_RANGE),
        (Excuse(1, PHUC_TAN, " "), Refusal.REASON_NEEDED),
        (Close(7), Refusal.NO_SUCH_ROUND),
    ]
    for command, reason in commands:
        error = refused(state, command, T0 + 20, reason)
        assert isinstance(error, InvalidTransition)
        assert error.code == "invalid_transition"
        assert error.status == 409
        assert set(error.details) == {"machine", "state", "command", "reason"}
        assert reason.value in str(error)
    assert snapshot(state) == before


def test_an_accepted_step_leaves_the_state_it_was_given_untouched() -> None:
    """Pure: the shell may keep the old state (to answer a retry) while the new one is stored."""
    state = run(opened(), (Confirm(1, PHUC_XA, 30), T0 + 10))
    before = snapshot(state)
    run(
        state,
        (Confirm(1, PHUC_XA, 31), T0 + 20),
        (Excuse(1, HANG_BAC, "Mất điện"), T0 + 21),
        (Close(1), T0 + 300),
    )
    assert snapshot(state) == before


# ---- replay -------------------------------------------------------------------------------


def session_log() -> list[tuple[Command, float]]:
    """A morning: three rounds, most wards answering, some late, some excused or corrected."""
    log: list[tuple[Command, float]] = [(Open(LIMITS, 120, "Điểm danh đầu phiên"), T0)]
    for ward in WARDS:
        if ward.point % 7 == 0:
            continue  # never answers
        at = T0 + 1 + (ward.point % 200)  # points 100..199 mod 200 answer late
        log.append((Confirm(1, ward.point, 10 + ward.point % 90, "Đủ thành phần"), at))
    log += [
        (Confirm(1, PHUC_XA, 99), T0 + 250),  # a change of headcount keeps present
        (Excuse(1, 7, "Mất điện cả phường"), T0 + 260),
        (Close(1), T0 + 300),
        (Correct(1, 14, Status.LATE, 40, "Báo qua điện thoại"), T0 + 320),
        (Open(LIMITS, 60, "Điểm danh sau giờ nghỉ"), T0 + 5400),
    ]
    log += [(Confirm(2, w.point, 20), T0 + 5410 + w.point / 10) for w in WARDS[:300]]
    log += [(Close(2), T0 + 5500), (Open(dict(list(LIMITS.items())[:100]), 30), T0 + 9000)]
    return log


def test_replay_of_the_accepted_commands_gives_the_same_state() -> None:
    """After a restart the machine is rebuilt from the log; it must be the state that was lost."""
    log = session_log()
    state = RollcallState()
    for command, at in log:
        state, _ = step(state, command, now=at)
    rebuilt = replay(log)
    assert rebuilt == state
    assert snapshot(rebuilt) == snapshot(state)
    assert [r.phase for r in rebuilt.rounds] == [Phase.CLOSED, Phase.CLOSED, Phase.OPEN]
    assert record(rebuilt, PHUC_XA) == Record(Status.PRESENT, 99, "", T0 + 2, T0 + 250)


def test_replay_uses_the_logged_times_not_the_order_of_arrival() -> None:
    """Late stays late on replay: the status depends on the time stored with the command."""
    log: list[tuple[Command, float]] = [(Open(LIMITS, 60), T0), (Confirm(1, PHUC_XA, 5), T0 + 61)]
    assert replay(log).rounds[0].status_of(PHUC_XA) is Status.LATE


def test_replay_of_nothing_is_the_empty_state_and_a_bad_log_is_refused() -> None:
    """A log holding a command that could not have been accepted is an error, not skipped."""
    assert replay([]) == RollcallState()
    with pytest.raises(RollcallRefused) as caught:
        replay([(Open(LIMITS, 60), T0), (Open(LIMITS, 60), T0 + 1)])
    assert caught.value.reason is Refusal.ROUND_OPEN


# ---- tally --------------------------------------------------------------------------------


def test_the_tally_counts_each_status_waiting_and_the_headcount_of_those_there() -> None:
    """Overall and per district, with the headcount of present and late only."""
    state = run(
        opened(),
        (Confirm(1, PHUC_XA, 30), T0 + 10),  # 001 present
        (Confirm(1, TRUC_BACH, 45), T0 + 200),  # 001 late
        (Confirm(1, PHUC_TAN, 20), T0 + 20),  # 002 present
        (Excuse(1, HANG_BAC, "Mất điện"), T0 + 21),  # 002 excused
        (Correct(1, NHAT_TAN, Status.ABSENT, None, "Không có ai"), T0 + 22),  # 003 absent
    )
    total, areas = tally(state.rounds[0], DISTRICT)
    assert total.as_dict() == {
        "present": 2,
        "late": 1,
        "absent": 1,
        "excused": 1,
        "waiting": 521,
        "headcount": 95,
        "expected": 526,
    }
    in_001 = sum(1 for d in DISTRICT.values() if d == "001")
    in_002 = sum(1 for d in DISTRICT.values() if d == "002")
    in_003 = sum(1 for d in DISTRICT.values() if d == "003")
    assert areas["001"].as_dict() == {
        "present": 1,
        "late": 1,
        "absent": 0,
        "excused": 0,
        "waiting": in_001 - 2,
        "headcount": 75,
        "expected": in_001,
    }
    assert areas["002"].as_dict() == {
        "present": 1,
        "late": 0,
        "absent": 0,
        "excused": 1,
        "waiting": in_002 - 2,
        "headcount": 20,
        "expected": in_002,
    }
    assert (areas["003"].absent, areas["003"].headcount, areas["003"].waiting) == (
        0 + 1,
        0,
        in_003 - 1,
    )
    assert set(areas) == set(DISTRICT.values())
    for key in total.as_dict():
        assert sum(a.as_dict()[key] for a in areas.values()) == total.as_dict()[key]


def test_the_tally_after_close_has_nobody_waiting() -> None:
    """Closing turns waiting into absent; counts still add up to the invited."""
    state = run(opened(), (Confirm(1, PHUC_XA, 30), T0 + 10), (Close(1), T0 + 300))
    total, _ = tally(state.rounds[0], DISTRICT)
    assert (total.present, total.waiting, total.absent, total.headcount, total.expected) == (
        1,
        0,
        525,
        30,
        526,
    )


def test_an_excuse_removes_the_headcount_from_the_tally() -> None:
    """A room corrected from present to excused no longer counts its people."""
    state = run(opened(), (Confirm(1, PHUC_XA, 30), T0 + 10), (Confirm(1, PHUC_TAN, 7), T0 + 11))
    assert tally(state.rounds[0], DISTRICT)[0].headcount == 37
    state = run(state, (Excuse(1, PHUC_XA, "Nhầm điểm cầu"), T0 + 12))
    total, areas = tally(state.rounds[0], DISTRICT)
    assert (total.headcount, total.present, total.excused) == (7, 1, 1)
    assert areas["001"].headcount == 0


def test_the_tally_by_district_name_and_points_without_an_area() -> None:
    """Areas are whatever the shell keys them by (names with diacritics here); "" when unknown."""
    limits = {PHUC_XA: 40, PHUC_TAN: 40, NOT_A_WARD: 40}
    state = run(
        opened(limits),
        (Confirm(1, PHUC_XA, 12), T0 + 1),
        (Confirm(1, NOT_A_WARD, 3), T0 + 2),
    )
    total, areas = tally(state.rounds[0], DISTRICT_NAME)
    assert set(areas) == {"Quận Ba Đình", "Quận Hoàn Kiếm", ""}
    assert (areas["Quận Ba Đình"].present, areas["Quận Ba Đình"].headcount) == (1, 12)
    assert (areas["Quận Hoàn Kiếm"].waiting, areas["Quận Hoàn Kiếm"].expected) == (1, 1)
    assert (areas[""].present, areas[""].headcount) == (1, 3)
    assert (total.expected, total.headcount) == (3, 15)


# ---- changes_of ---------------------------------------------------------------------------


def test_changes_of_each_effect() -> None:
    """What the live tally applies: nothing for an open, one record for an answer or a mark, the
    absent records for a close, each exactly as the state holds it afterwards."""
    limits = {PHUC_XA: 40, TRUC_BACH: 40, PHUC_TAN: 40}
    state, effect = step(RollcallState(), Open(limits, 60), now=T0)
    assert changes_of(effect) == []
    state, effect = step(state, Confirm(1, PHUC_XA, 30), now=T0 + 1)
    assert changes_of(effect) == [(PHUC_XA, None, record(state, PHUC_XA))]
    before = record(state, PHUC_XA)
    state, effect = step(state, Confirm(1, PHUC_XA, 31), now=T0 + 2)
    assert changes_of(effect) == [(PHUC_XA, before, record(state, PHUC_XA))]
    state, effect = step(state, Excuse(1, TRUC_BACH, "Mất điện"), now=T0 + 3)
    assert changes_of(effect) == [(TRUC_BACH, None, record(state, TRUC_BACH))]
    state, effect = step(state, Close(1), now=T0 + 100)
    assert changes_of(effect) == [(PHUC_TAN, None, record(state, PHUC_TAN))]
    before = record(state, PHUC_TAN)
    state, effect = step(state, Correct(1, PHUC_TAN, Status.LATE, 9, "Báo muộn"), now=T0 + 101)
    assert changes_of(effect) == [(PHUC_TAN, before, record(state, PHUC_TAN))]


def test_books_kept_from_effects_alone_match_the_state() -> None:
    """A listener that only sees effects (the console, the live tally) holds the same records."""
    books: dict[int, dict[int, Record]] = {}
    state = RollcallState()
    for command, at in session_log():
        state, effect = step(state, command, now=at)
        if isinstance(effect, Opened):
            books[effect.round] = {}
        for point, before, after in changes_of(effect):
            round_number = effect.round  # type: ignore[union-attr]
            assert books[round_number].get(point) == before
            books[round_number][point] = after
    assert books == {r.number: dict(r.records) for r in state.rounds}
    assert len(books[1]) == 526
