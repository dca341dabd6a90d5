"""Roll-call rounds of one session, as a pure state machine.

Attendance is what the minutes of a dialogue conference record: which points were there, how many
people sat in each room, who came late and who was excused. The hall opens a round with a deadline;
each invited point confirms with its headcount; a confirmation after the deadline (but before the
hall closes the round) is `late`; closing makes every point that did not answer `absent`; the
operator may mark a point `excused` or correct a record, always with a reason. A closed round is
never reopened: the next one is a new round. Several rounds per session (the start, after the
break, the end); at most one open at a time.

No I/O and no clock: the shell passes `now` and the invited points, stores every effect (the
session log is the audit trail) and owns durability and idempotency (a retried confirmation is
answered from its stored result before it reaches this machine). Refusals raise RollcallRefused,
an InvalidTransition naming machine, state and command, and change nothing; malformed arguments
(a negative headcount, a reason that is empty) are refused the same way, since they come from
people, not from code.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TypeAlias

from app.errors import InvalidTransition

MACHINE = "rollcall"
NOTE_MAX = 200
REASON_MAX = 200
MESSAGE_MAX = 300
DEADLINE_MIN_S = 10.0
DEADLINE_MAX_S = 3600.0


class Status(enum.StrEnum):
    PRESENT = "present"
    LATE = "late"
    ABSENT = "absent"
    EXCUSED = "excused"


class Phase(enum.StrEnum):
    NONE = "none"  # no round yet (or the round named does not exist)
    OPEN = "open"
    CLOSED = "closed"


class Refusal(enum.StrEnum):
    ROUND_OPEN = "round_open"  # open while another round is open
    NO_SUCH_ROUND = "no_such_round"
    ROUND_CLOSED = "round_closed"  # a point confirming after close
    NOT_INVITED = "not_invited"
    HEADCOUNT_OUT_OF_RANGE = "headcount_out_of_range"
    HEADCOUNT_NEEDED = "headcount_needed"
    REASON_NEEDED = "reason_needed"
    TEXT_TOO_LONG = "text_too_long"
    BAD_DEADLINE = "bad_deadline"
    NOBODY_INVITED = "nobody_invited"
    UNCHANGED = "unchanged"


class RollcallRefused(InvalidTransition):
    def __init__(self, phase: Phase, command: str, reason: Refusal) -> None:
        super().__init__(MACHINE, phase.value, command)
        self.message = f"{self.message} ({reason.value})"
        self.args = (self.message,)
        self.details["reason"] = reason.value
        self.reason = reason


@dataclass(frozen=True)
class Record:
    """One point in one round. `confirmed_at` is the point's own answer (None if it never
    answered); `changed_by_staff` and `reason` tell an operator's mark from the point's word."""

    status: Status
    headcount: int | None
    note: str = ""
    confirmed_at: float | None = None
    changed_at: float = 0.0
    reason: str = ""
    changed_by_staff: bool = False


@dataclass(frozen=True)
class Round:
    number: int
    opened_at: float
    deadline: float
    message: str
    # Every invited point and its headcount bound (the room's capacity, else the session's limit).
    limits: Mapping[int, int]
    phase: Phase = Phase.OPEN
    closed_at: float | None = None
    records: Mapping[int, Record] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def invited(self) -> frozenset[int]:
        return frozenset(self.limits)

    def status_of(self, point: int) -> Status | None:
        record = self.records.get(point)
        return None if record is None else record.status


@dataclass(frozen=True)
class RollcallState:
    rounds: tuple[Round, ...] = ()

    @property
    def current(self) -> Round | None:
        """The open round, if any."""
        if self.rounds and self.rounds[-1].phase is Phase.OPEN:
            return self.rounds[-1]
        return None

    def round(self, number: int) -> Round | None:
        if 1 <= number <= len(self.rounds):
            return self.rounds[number - 1]
        return None


# ---- commands -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Open:
    name = "open"
    limits: Mapping[int, int]
    deadline_s: float
    message: str = ""


@dataclass(frozen=True)
class Confirm:
    name = "confirm"
    round: int
    point: int
    headcount: int
    note: str = ""


@dataclass(frozen=True)
class Excuse:
    name = "excuse"
    round: int
    point: int
    reason: str


@dataclass(frozen=True)
class Correct:
    name = "correct"
    round: int
    point: int
    status: Status
    headcount: int | None
    reason: str


@dataclass(frozen=True)
class Close:
    name = "close"
    round: int


Command: TypeAlias = Open | Confirm | Excuse | Correct | Close


# ---- effects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    round: int
    deadline: float
    invited: int


@dataclass(frozen=True)
class Confirmed:
    """A point's answer; `first` is False when it changes an answer already given."""

    round: int
    point: int
    before: Record | None
    after: Record
    first: bool


@dataclass(frozen=True)
class Marked:
    """An operator's excuse or correction of one record."""

    round: int
    point: int
    before: Record | None
    after: Record


@dataclass(frozen=True)
class Closed:
    round: int
    at: float
    absent: tuple[int, ...]


Effect: TypeAlias = Opened | Confirmed | Marked | Closed


def _text(value: str, limit: int, phase: Phase, command: str) -> str:
    if len(value) > limit or "\n" in value or "\r" in value:
        raise RollcallRefused(phase, command, Refusal.TEXT_TOO_LONG)
    return value


def _copy(records: Mapping[int, Record]) -> dict[int, Record]:
    """A round's records to change. Once per answer, so it must be the C-level dict copy: `dict()`
    of a mappingproxy goes key by key and cost 250 µs at 3,321 points, a quarter of a second of
    the server's loop per hundred answers (found by the national rehearsal)."""
    if isinstance(records, MappingProxyType | dict):
        return records.copy()
    return dict(records)


def _with(round_: Round, point: int, record: Record) -> Round:
    records = _copy(round_.records)
    records[point] = record
    return replace(round_, records=MappingProxyType(records))


def _replace_round(state: RollcallState, round_: Round) -> RollcallState:
    rounds = list(state.rounds)
    rounds[round_.number - 1] = round_
    return RollcallState(tuple(rounds))


def _target(state: RollcallState, number: int, command: str) -> Round:
    round_ = state.round(number)
    if round_ is None:
        raise RollcallRefused(Phase.NONE, command, Refusal.NO_SUCH_ROUND)
    return round_


def _check_headcount(round_: Round, point: int, headcount: int | None, command: str) -> None:
    if headcount is None:
        raise RollcallRefused(round_.phase, command, Refusal.HEADCOUNT_NEEDED)
    if not 0 <= headcount <= round_.limits[point]:
        raise RollcallRefused(round_.phase, command, Refusal.HEADCOUNT_OUT_OF_RANGE)


def step(state: RollcallState, command: Command, *, now: float) -> tuple[RollcallState, Effect]:
    """The state after one command and what it did; RollcallRefused changes nothing."""
    if isinstance(command, Open):
        return _open(state, command, now)
    if isinstance(command, Confirm):
        return _confirm(state, command, now)
    if isinstance(command, Excuse | Correct):
        return _mark(state, command, now)
    return _close(state, command, now)


def _open(state: RollcallState, command: Open, now: float) -> tuple[RollcallState, Effect]:
    phase = state.rounds[-1].phase if state.rounds else Phase.NONE
    if state.current is not None:
        raise RollcallRefused(phase, command.name, Refusal.ROUND_OPEN)
    if not DEADLINE_MIN_S <= command.deadline_s <= DEADLINE_MAX_S:
        raise RollcallRefused(phase, command.name, Refusal.BAD_DEADLINE)
    if not command.limits:
        raise RollcallRefused(phase, command.name, Refusal.NOBODY_INVITED)
    if any(limit < 0 for limit in command.limits.values()):
        raise RollcallRefused(phase, command.name, Refusal.HEADCOUNT_OUT_OF_RANGE)
    message = _text(command.message, MESSAGE_MAX, phase, command.name)
    round_ = Round(
        number=len(state.rounds) + 1,
        opened_at=now,
        deadline=now + command.deadline_s,
        message=message,
        limits=MappingProxyType(dict(command.limits)),
    )
    effect = Opened(round=round_.number, deadline=round_.deadline, invited=len(round_.limits))
    return RollcallState((*state.rounds, round_)), effect


def _confirm(state: RollcallState, command: Confirm, now: float) -> tuple[RollcallState, Effect]:
    round_ = _target(state, command.round, command.name)
    if round_.phase is not Phase.OPEN:
        raise RollcallRefused(round_.phase, command.name, Refusal.ROUND_CLOSED)
    if command.point not in round_.limits:
        raise RollcallRefused(round_.phase, command.name, Refusal.NOT_INVITED)
    _check_headcount(round_, command.point, command.headcount, command.name)
    note = _text(command.note, NOTE_MAX, round_.phase, command.name)
    before = round_.records.get(command.point)
    answered = before is not None and before.confirmed_at is not None
    if answered and before is not None and before.status in (Status.PRESENT, Status.LATE):
        # A point changing its headcount keeps the status its first answer earned.
        status = before.status
        confirmed_at = before.confirmed_at
    else:
        status = Status.PRESENT if now <= round_.deadline else Status.LATE
        confirmed_at = now
    after = Record(
        status=status,
        headcount=command.headcount,
        note=note,
        confirmed_at=confirmed_at,
        changed_at=now,
    )
    # Only the point's own earlier answer makes a repeat "unchanged": an operator's mark with the
    # same values (phoned in) is not the point's word, which is recorded when it comes.
    if (
        answered
        and before is not None
        and (before.status, before.headcount, before.note)
        == (
            after.status,
            after.headcount,
            after.note,
        )
    ):
        raise RollcallRefused(round_.phase, command.name, Refusal.UNCHANGED)
    effect = Confirmed(
        round=round_.number, point=command.point, before=before, after=after, first=not answered
    )
    return _replace_round(state, _with(round_, command.point, after)), effect


def _mark(
    state: RollcallState, command: Excuse | Correct, now: float
) -> tuple[RollcallState, Effect]:
    round_ = _target(state, command.round, command.name)
    if command.point not in round_.limits:
        raise RollcallRefused(round_.phase, command.name, Refusal.NOT_INVITED)
    reason = _text(command.reason, REASON_MAX, round_.phase, command.name).strip()
    if not reason:
        raise RollcallRefused(round_.phase, command.name, Refusal.REASON_NEEDED)
    before = round_.records.get(command.point)
    if isinstance(command, Excuse):
        status, headcount = Status.EXCUSED, None
    else:
        status, headcount = command.status, command.headcount
        if status in (Status.PRESENT, Status.LATE):
            _check_headcount(round_, command.point, headcount, command.name)
        elif headcount is not None:
            # Absent or excused rooms have nobody to count.
            raise RollcallRefused(round_.phase, command.name, Refusal.HEADCOUNT_OUT_OF_RANGE)
    if before is not None and (before.status, before.headcount) == (status, headcount):
        raise RollcallRefused(round_.phase, command.name, Refusal.UNCHANGED)
    after = Record(
        status=status,
        headcount=headcount,
        note=before.note if before is not None else "",
        confirmed_at=before.confirmed_at if before is not None else None,
        changed_at=now,
        reason=reason,
        changed_by_staff=True,
    )
    effect = Marked(round=round_.number, point=command.point, before=before, after=after)
    return _replace_round(state, _with(round_, command.point, after)), effect


def _close(state: RollcallState, command: Close, now: float) -> tuple[RollcallState, Effect]:
    round_ = _target(state, command.round, command.name)
    if round_.phase is not Phase.OPEN:
        raise RollcallRefused(round_.phase, command.name, Refusal.ROUND_CLOSED)
    absent = tuple(sorted(p for p in round_.limits if p not in round_.records))
    records = _copy(round_.records)
    for point in absent:
        records[point] = Record(status=Status.ABSENT, headcount=None, changed_at=now)
    closed = replace(round_, phase=Phase.CLOSED, closed_at=now, records=MappingProxyType(records))
    return _replace_round(state, closed), Closed(round=round_.number, at=now, absent=absent)


def replay(entries: Iterable[tuple[Command, float]]) -> RollcallState:
    """Rebuild from the logged commands and their times (each was accepted when it ran)."""
    state = RollcallState()
    for command, at in entries:
        state, _ = step(state, command, now=at)
    return state


# ---- the tally ----------------------------------------------------------------------------


@dataclass
class Counts:
    """Per status plus `waiting` (invited, no record yet), and the headcount of present and late."""

    present: int = 0
    late: int = 0
    absent: int = 0
    excused: int = 0
    waiting: int = 0
    headcount: int = 0
    expected: int = 0  # invited points

    def add(self, record: Record | None, sign: int = 1) -> None:
        if record is None:
            self.waiting += sign
            return
        setattr(self, record.status.value, getattr(self, record.status.value) + sign)
        if record.headcount is not None:
            self.headcount += sign * record.headcount

    def as_dict(self) -> dict[str, int]:
        return {
            "present": self.present,
            "late": self.late,
            "absent": self.absent,
            "excused": self.excused,
            "waiting": self.waiting,
            "headcount": self.headcount,
            "expected": self.expected,
        }


def tally(round_: Round, area_of: Mapping[int, str]) -> tuple[Counts, dict[str, Counts]]:
    """The whole round counted, overall and per area (district or province code, "" if none)."""
    total = Counts()
    areas: dict[str, Counts] = {}
    for point in round_.limits:
        record = round_.records.get(point)
        area = areas.setdefault(area_of.get(point, ""), Counts())
        for counts in (total, area):
            counts.expected += 1
            counts.add(record)
    return total, areas


def changes_of(effect: Effect) -> list[tuple[int, Record | None, Record]]:
    """The records an effect changed, (point, before, after), for a tally delta."""
    if isinstance(effect, Confirmed | Marked):
        return [(effect.point, effect.before, effect.after)]
    if isinstance(effect, Closed):
        return [
            (point, None, Record(status=Status.ABSENT, headcount=None, changed_at=effect.at))
            for point in effect.absent
        ]
    return []
