"""Random walks through the roll-call machine, checked against a model and the issue's invariants.

Commands are drawn with round numbers and points that are often valid and often not, on a rising
clock that jumps before, onto and past deadlines. An independent model (plain dicts, the rules of
docs/rollcall.md written out again) predicts every refusal and every record and effect an accepted
command must produce; books kept from `changes_of` alone must agree with the state, since the live
tally listens to effects only; and the issue's invariants are checked after every step: a closed
round covers exactly its invited points, one status each, the tally adds up, at most one round is
open and rounds are numbered 1..n.

One case gets its own rule (`point_answers_what_the_operator_recorded`): a ward whose count an
operator recorded (phoned in) then confirms the same count itself. That is the point's first answer
and is accepted as its own word; the walks found the machine refusing it `unchanged` (fixed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bridges.rollcall import (
    Close,
    Closed,
    Command,
    Confirm,
    Confirmed,
    Correct,
    Effect,
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

POINTS = list(range(1, 13))
NEVER_INVITED = 99
# Points 1-11 in three Hanoi districts; point 12 has no area (the tally files it under "").
AREAS = {
    p: "Quận Ba Đình" if p <= 4 else "Quận Hoàn Kiếm" if p <= 8 else "Quận Tây Hồ"
    for p in POINTS[:11]
}
THERE = (Status.PRESENT, Status.LATE)
# Kinds of command, repeated for weight: answers come far more often than anything else.
KINDS = ["confirm"] * 6 + ["excuse", "correct", "correct"] + ["close", "open"]
# With no round open, an open is drawn every other time so walks spend their steps in rounds.
KINDS_WITH_NO_ROUND_OPEN = ["open"] * len(KINDS) + KINDS
DEADLINES = [10.0, 30.0, 30.0, 60.0, 3600.0]  # both bounds included
# One defect at a time for an open, each refused; "ok" weighted so most opens get through.
OPEN_DEFECTS = ["ok"] * 9 + ["short", "long", "two_lines", "too_long", "nobody", "negative"]
MESSAGES = ["", "Điểm danh đầu phiên", "Điểm danh sau giờ nghỉ", "m" * 300]
NOTES = ["", "Đủ thành phần", "Thiếu đại biểu", "a\r\nb", "ư" * 200, "ư" * 201]
# Blank, padded (kept stripped), two lines, too long; the good ones weighted so marks get through.
REASONS = [
    "",
    "   ",
    "Mất điện",
    "Mất điện",
    "Báo qua điện thoại",
    "  Báo qua điện thoại ",
    "Mất điện\ncả phường",
    "r" * 201,
]


def one_line(text: str, limit: int) -> bool:
    return len(text) <= limit and "\n" not in text and "\r" not in text


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


@dataclass
class ModelRound:
    """The model's own round: what the docs say the machine must hold."""

    limits: dict[int, int]
    opened_at: float
    deadline: float
    message: str
    closed_at: float | None = None
    records: dict[int, Record] = field(default_factory=dict)


@dataclass(frozen=True)
class StaffMatched:
    """The model's outcome when a point's first answer matches an operator's mark: accepted as
    `effect` (counted apart, so the generators can be shown to reach it)."""

    effect: Confirmed


Outcome = Refusal | Effect | StaffMatched


class RollcallWalk(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = RollcallState()
        self.now = 1_764_900_000.0
        self.model: list[ModelRound] = []
        self.books: dict[int, dict[int, Record]] = {}  # from effects alone
        self.log: list[tuple[Command, float]] = []
        self.refusals: set[Refusal] = set()
        self.staff_matched = 0  # how often a first answer matched a staff mark

    # --- the model -----------------------------------------------------------------------------

    def expect(self, command: Command, now: float) -> Outcome:
        """The refusal, or the exact effect, the rules call for; written without the machine."""
        if isinstance(command, Open):
            if self.model and self.model[-1].closed_at is None:
                return Refusal.ROUND_OPEN
            if not 10 <= command.deadline_s <= 3600:
                return Refusal.BAD_DEADLINE
            if not command.limits:
                return Refusal.NOBODY_INVITED
            if min(command.limits.values()) < 0:
                return Refusal.HEADCOUNT_OUT_OF_RANGE
            if not one_line(command.message, 300):
                return Refusal.TEXT_TOO_LONG
            return Opened(len(self.model) + 1, now + command.deadline_s, len(command.limits))
        if not 1 <= command.round <= len(self.model):
            return Refusal.NO_SUCH_ROUND
        round_ = self.model[command.round - 1]
        closed = round_.closed_at is not None
        if isinstance(command, Close):
            if closed:
                return Refusal.ROUND_CLOSED
            absent = tuple(sorted(set(round_.limits) - set(round_.records)))
            return Closed(command.round, now, absent)
        if isinstance(command, Confirm) and closed:
            return Refusal.ROUND_CLOSED
        if command.point not in round_.limits:
            return Refusal.NOT_INVITED
        limit = round_.limits[command.point]
        before = round_.records.get(command.point)
        if isinstance(command, Confirm):
            return self.expect_confirm(command, now, round_, before, limit)
        if not one_line(command.reason, 200):
            return Refusal.TEXT_TOO_LONG
        if not command.reason.strip():
            return Refusal.REASON_NEEDED
        if isinstance(command, Excuse):
            status, headcount = Status.EXCUSED, None
        else:
            status, headcount = command.status, command.headcount
            if status in THERE and headcount is None:
                return Refusal.HEADCOUNT_NEEDED
            if status in THERE and not 0 <= headcount <= limit:  # type: ignore[operator]
                return Refusal.HEADCOUNT_OUT_OF_RANGE
            if status not in THERE and headcount is not None:
                return Refusal.HEADCOUNT_OUT_OF_RANGE
        if before is not None and (before.status, before.headcount) == (status, headcount):
            return Refusal.UNCHANGED
        after = Record(
            status=status,
            headcount=headcount,
            note=before.note if before else "",
            confirmed_at=before.confirmed_at if before else None,
            changed_at=now,
            reason=command.reason.strip(),
            changed_by_staff=True,
        )
        return Marked(command.round, command.point, before, after)

    def expect_confirm(
        self, command: Confirm, now: float, round_: ModelRound, before: Record | None, limit: int
    ) -> Outcome:
        if not 0 <= command.headcount <= limit:
            return Refusal.HEADCOUNT_OUT_OF_RANGE
        if not one_line(command.note, 200):
            return Refusal.TEXT_TOO_LONG
        answered = before is not None and before.confirmed_at is not None
        if answered and before is not None and before.status in THERE:
            # A changed headcount keeps the status (and the time) the first answer earned.
            status, confirmed_at = before.status, before.confirmed_at
        else:
            status = Status.PRESENT if now <= round_.deadline else Status.LATE
            confirmed_at = now
        after = Record(status, command.headcount, command.note, confirmed_at, now)
        effect = Confirmed(command.round, command.point, before, after, first=not answered)
        if before is not None and (before.status, before.headcount, before.note) == (
            status,
            command.headcount,
            command.note,
        ):
            # The same answer again is unchanged; the same values as an operator's mark, from a
            # point that never answered, is its first answer and is recorded.
            return Refusal.UNCHANGED if answered else StaffMatched(effect)
        return effect

    def book_model(self, effect: Effect, command: Command, now: float) -> None:
        if isinstance(effect, Opened):
            assert isinstance(command, Open)
            self.model.append(
                ModelRound(dict(command.limits), now, now + command.deadline_s, command.message)
            )
        elif isinstance(effect, Closed):
            round_ = self.model[effect.round - 1]
            round_.closed_at = now
            for point in effect.absent:
                round_.records[point] = Record(Status.ABSENT, None, changed_at=now)
        else:
            self.model[effect.round - 1].records[effect.point] = effect.after

    # --- applying ------------------------------------------------------------------------------

    def apply(self, command: Command) -> None:
        """Steps `command` and checks the outcome against the model, then keeps the books."""
        expected = self.expect(command, self.now)
        self.staff_matched += isinstance(expected, StaffMatched)
        before = self.state
        frozen = snapshot(before)
        error: RollcallRefused | None = None
        try:
            after, effect = step(before, command, now=self.now)
        except RollcallRefused as refused:
            error = refused
        if error is not None:
            self.refusals.add(error.reason)
            assert error.reason is expected, (command, error.reason, expected)
            assert error.details["machine"] == "rollcall"
            assert error.details["command"] == command.name
            assert error.details["reason"] == error.reason.value
            assert snapshot(self.state) == frozen
            return
        wanted_effect = expected.effect if isinstance(expected, StaffMatched) else expected
        assert effect == wanted_effect, (command, effect, expected)
        # Accepting is pure too: the state handed in is left as it was.
        assert snapshot(before) == frozen
        self.state = after
        self.log.append((command, self.now))
        self.book_model(effect, command, self.now)
        if isinstance(effect, Opened):
            self.books[effect.round] = {}
        for point, old, new in changes_of(effect):
            round_number = effect.round  # type: ignore[union-attr]
            assert self.books[round_number].get(point) == old
            self.books[round_number][point] = new

    # --- drawing commands ----------------------------------------------------------------------

    def round_numbers(self) -> st.SearchStrategy[int]:
        """Mostly the latest round, sometimes an earlier one, 0, -1 or the one after the last."""
        n = len(self.state.rounds)
        return st.sampled_from([n] * 8 * (n > 0) + list(range(1, n)) + [-1, 0, n + 1])

    def points_of(self, number: int) -> st.SearchStrategy[int]:
        """Mostly points invited to that round (often ones with a record already, so changes,
        repeats and marks over answers come up), sometimes anyone or a point never invited."""
        round_ = self.state.round(number)
        invited = st.sampled_from(sorted(round_.limits)) if round_ else st.nothing()
        recorded = (
            st.sampled_from(sorted(round_.records)) if round_ and round_.records else st.nothing()
        )
        anyone = st.sampled_from([*POINTS, NEVER_INVITED])
        return st.one_of(invited, invited, recorded, recorded, anyone)

    def headcounts(self, number: int, point: int) -> st.SearchStrategy[int]:
        """Around the room's bound: both ends, just outside, and what is already recorded."""
        round_ = self.state.round(number)
        limit = round_.limits.get(point, 10) if round_ else 10
        record = round_.records.get(point) if round_ else None
        same = (
            st.just(record.headcount) if record and record.headcount is not None else st.nothing()
        )
        return st.one_of(
            st.sampled_from([-1, 0, limit, limit + 1]), st.integers(0, limit), same, same
        )

    def draw_command(self, data: st.DataObject, kind: str) -> Command:
        if kind == "open":
            # In any order: nothing may depend on the order the shell lists the points in.
            order = data.draw(st.permutations(POINTS))
            invited = order[: data.draw(st.integers(1, len(POINTS)))]
            limits = {p: data.draw(st.sampled_from([0, 3, 40, 500])) for p in invited}
            deadline = data.draw(st.sampled_from(DEADLINES))
            message = data.draw(st.sampled_from(MESSAGES))
            match data.draw(st.sampled_from(OPEN_DEFECTS)):
                case "short":
                    deadline = data.draw(st.sampled_from([0.0, 5.0, 9.99]))
                case "long":
                    deadline = data.draw(st.sampled_from([3600.01, 7200.0]))
                case "two_lines":
                    message = "Điểm danh\nsau giờ nghỉ"
                case "too_long":
                    message = "m" * 301
                case "nobody":
                    limits = {}
                case "negative":
                    limits[min(limits)] = -1
            return Open(limits, deadline, message)
        number = data.draw(self.round_numbers())
        if kind == "close":
            return Close(number)
        point = data.draw(self.points_of(number))
        round_ = self.state.round(number)
        record = round_.records.get(point) if round_ else None
        if kind == "confirm":
            notes = st.sampled_from(NOTES)
            if record is not None:
                notes = st.one_of(st.just(record.note), st.just(record.note), notes)
            headcount = data.draw(self.headcounts(number, point))
            return Confirm(number, point, headcount, data.draw(notes))
        reason = data.draw(st.sampled_from(REASONS))
        if kind == "excuse":
            return Excuse(number, point, reason)
        status = data.draw(st.sampled_from(list(Status)))
        if status in THERE:
            needed = data.draw(st.integers(0, 2)) == 0
            headcount = None if needed else data.draw(self.headcounts(number, point))
        else:
            headcount = data.draw(st.sampled_from([None, None, None, 0, 3]))
        return Correct(number, point, status, headcount, reason)

    # --- rules ---------------------------------------------------------------------------------

    @rule(data=st.data(), dt=st.sampled_from([0.0, 0.0, 0.5, 5.0, 10.0]))
    def command(self, data: st.DataObject, dt: float) -> None:
        self.now += dt
        kinds = KINDS if self.state.current is not None else KINDS_WITH_NO_ROUND_OPEN
        self.apply(self.draw_command(data, data.draw(st.sampled_from(kinds))))

    @precondition(lambda self: bool(self.unanswered()))
    @rule(data=st.data())
    def operator_records_a_phoned_count(self, data: st.DataObject) -> None:
        """A ward that cannot connect phones its count in and the operator records it: a valid
        correction on a point that has not answered, so marks before answers come up often."""
        number, point = data.draw(st.sampled_from(self.unanswered()))
        status = data.draw(st.sampled_from(THERE))
        headcount = data.draw(st.integers(0, self.model[number - 1].limits[point]))
        self.apply(Correct(number, point, status, headcount, "Báo qua điện thoại"))

    def unanswered(self) -> list[tuple[int, int]]:
        """Invited points of the open round that have no record yet."""
        round_ = self.state.current
        if round_ is None:
            return []
        return [(round_.number, p) for p in sorted(round_.limits) if p not in round_.records]

    @precondition(lambda self: bool(self.staff_counted()))
    @rule(data=st.data())
    def point_answers_what_the_operator_recorded(self, data: st.DataObject) -> None:
        """A ward phoned its count in, the operator recorded it, then the ward confirms the same
        count itself, in time for the same status when the clock allows: a first answer equal to a
        staff mark, which random draws alone reach too rarely."""
        number, point, record = data.draw(st.sampled_from(self.staff_counted()))
        assert record.headcount is not None
        deadline = self.model[number - 1].deadline
        if record.status is Status.LATE and self.now <= deadline:
            self.now = deadline + data.draw(st.sampled_from([0.001, 1.0]))
        self.apply(Confirm(number, point, record.headcount, record.note))

    def staff_counted(self) -> list[tuple[int, int, Record]]:
        """Records of the open round an operator set to present or late before any answer."""
        round_ = self.state.current
        if round_ is None:
            return []
        return [
            (round_.number, point, r)
            for point, r in sorted(round_.records.items())
            if r.status in THERE and r.confirmed_at is None
        ]

    @rule(dt=st.sampled_from([5.0, 10.0, 30.0, 600.0]))
    def time_passes(self, dt: float) -> None:
        """The clock jumps, often across a deadline of 10, 30 or 60 seconds."""
        self.now += dt

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def rounds_are_numbered_one_to_n_and_at_most_one_is_open(self) -> None:
        rounds = self.state.rounds
        assert [r.number for r in rounds] == list(range(1, len(rounds) + 1))
        assert sum(r.phase is Phase.OPEN for r in rounds) <= 1
        assert all(r.phase is Phase.CLOSED for r in rounds[:-1])
        assert (self.state.current is not None) == any(r.phase is Phase.OPEN for r in rounds)

    @invariant()
    def the_state_is_what_the_model_says(self) -> None:
        assert len(self.state.rounds) == len(self.model)
        for round_, model in zip(self.state.rounds, self.model, strict=True):
            assert dict(round_.limits) == model.limits
            assert (round_.opened_at, round_.deadline, round_.message) == (
                model.opened_at,
                model.deadline,
                model.message,
            )
            assert round_.closed_at == model.closed_at
            assert round_.phase is (Phase.OPEN if model.closed_at is None else Phase.CLOSED)
            assert dict(round_.records) == model.records

    @invariant()
    def a_closed_round_holds_every_invited_point_in_exactly_one_status(self) -> None:
        for round_ in self.state.rounds:
            assert set(round_.records) <= set(round_.limits)
            if round_.phase is Phase.CLOSED:
                assert set(round_.records) == set(round_.limits)
                assert all(isinstance(r.status, Status) for r in round_.records.values())
            for point, record in round_.records.items():
                if record.status in THERE:
                    assert record.headcount is not None
                    assert 0 <= record.headcount <= round_.limits[point]
                else:
                    assert record.headcount is None

    @invariant()
    def the_tally_adds_up(self) -> None:
        for round_ in self.state.rounds:
            total, areas = tally(round_, AREAS)
            records = list(round_.records.values())
            assert total.headcount == sum(r.headcount or 0 for r in records)
            assert total.headcount == sum(r.headcount or 0 for r in records if r.status in THERE)
            for status in Status:
                count = sum(r.status is status for r in records)
                assert getattr(total, status.value) == count
            assert total.waiting == len(round_.limits) - len(records)
            assert (
                total.present + total.late + total.absent + total.excused + total.waiting
                == total.expected
                == len(round_.limits)
            )
            if round_.phase is Phase.CLOSED:
                assert total.waiting == 0
            for key, value in total.as_dict().items():
                assert sum(a.as_dict()[key] for a in areas.values()) == value
            assert set(areas) == {AREAS.get(p, "") for p in round_.limits}

    @invariant()
    def books_from_effects_agree_with_the_state(self) -> None:
        assert self.books == {r.number: dict(r.records) for r in self.state.rounds}

    @invariant()
    def the_log_replays_to_the_same_state(self) -> None:
        if len(self.log) % 5 == 0:
            assert replay(self.log) == self.state
            assert snapshot(replay(self.log)) == snapshot(self.state)


TestRollcallWalk = RollcallWalk.TestCase
TestRollcallWalk.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_the_walks_reach_every_refusal_every_status_and_a_staff_matched_answer() -> None:
    """Guards the generators: walks that never hit a guard, a deadline or a first answer equal to a
    staff mark would prove little, and a change to the strategies could quietly make them so."""
    seen: set[Refusal] = set()
    statuses: set[Status] = set()
    matched: list[int] = []

    class Probe(RollcallWalk):
        def teardown(self) -> None:
            seen.update(self.refusals)
            matched.append(self.staff_matched)
            for round_ in self.state.rounds:
                statuses.update(r.status for r in round_.records.values())

    Probe.TestCase.settings = settings(
        max_examples=200, stateful_step_count=40, deadline=None, derandomize=True, database=None
    )
    Probe.TestCase("runTest").runTest()
    assert seen == set(Refusal), set(Refusal) - seen
    assert statuses == set(Status)
    assert sum(matched) > 0
