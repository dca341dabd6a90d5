"""Random walks through the roll-call machine, checked against the issue's invariants.

Commands are drawn with round numbers and points that are often valid and often not, on a rising
clock that jumps past deadlines. `expected_refusal` restates the guards independently, so the machine
and this file must agree on every refusal; books kept from effects alone must agree with the state,
so a shell that only listens to effects (the live tally) counts what the machine holds.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bridges.rollcall import (
    Close,
    Command,
    Confirm,
    Correct,
    Excuse,
    Open,
    Phase,
    Record,
    Refusal,
    RollcallRefused,
    RollcallState,
    Status,
    changes_of,
    step,
    tally,
)

POINTS = list(range(1, 13))
NOT_INVITED = 99
AREAS = {p: "001" if p <= 6 else "002" for p in POINTS}
points = st.sampled_from([*POINTS, NOT_INVITED])
rounds = st.integers(min_value=1, max_value=4)
headcounts = st.integers(min_value=-1, max_value=12)
reasons = st.sampled_from(["", "  ", "Mất điện", "Báo qua điện thoại"])
notes = st.sampled_from(["", "Đủ thành phần", "a\nb"])


class RollcallWalk(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = RollcallState()
        self.now = 0.0
        # Books from effects: round → point → status (or absent from the dict: waiting).
        self.books: dict[int, dict[int, Record]] = {}
        self.limits: dict[int, dict[int, int]] = {}

    def expected_refusal(self, command: Command) -> Refusal | None:
        if isinstance(command, Open):
            if self.state.current is not None:
                return Refusal.ROUND_OPEN
            if not 10 <= command.deadline_s <= 3600:
                return Refusal.BAD_DEADLINE
            return None
        round_ = self.state.round(command.round)
        if round_ is None:
            return Refusal.NO_SUCH_ROUND
        if isinstance(command, Close):
            return Refusal.ROUND_CLOSED if round_.phase is Phase.CLOSED else None
        if isinstance(command, Confirm) and round_.phase is Phase.CLOSED:
            return Refusal.ROUND_CLOSED
        if command.point not in round_.limits:
            return Refusal.NOT_INVITED
        limit = round_.limits[command.point]
        before = round_.records.get(command.point)
        if isinstance(command, Confirm):
            if not 0 <= command.headcount <= limit:
                return Refusal.HEADCOUNT_OUT_OF_RANGE
            if "\n" in command.note:
                return Refusal.TEXT_TOO_LONG
            if before is not None and before.confirmed_at is not None:
                kept = before.status if before.status in (Status.PRESENT, Status.LATE) else None
            else:
                kept = None
            status = kept or (Status.PRESENT if self.now <= round_.deadline else Status.LATE)
            if before is not None and (before.status, before.headcount, before.note) == (
                status,
                command.headcount,
                command.note,
            ):
                return Refusal.UNCHANGED
            return None
        if not command.reason.strip():
            return Refusal.REASON_NEEDED
        if isinstance(command, Excuse):
            status, headcount = Status.EXCUSED, None
        else:
            status, headcount = command.status, command.headcount
            if status in (Status.PRESENT, Status.LATE):
                if headcount is None:
                    return Refusal.HEADCOUNT_NEEDED
                if not 0 <= headcount <= limit:
                    return Refusal.HEADCOUNT_OUT_OF_RANGE
            elif headcount is not None:
                return Refusal.HEADCOUNT_OUT_OF_RANGE
        if before is not None and (before.status, before.headcount) == (status, headcount):
            return Refusal.UNCHANGED
        return None

    def run(self, command: Command) -> None:
        expected = self.expected_refusal(command)
        before = self.state
        try:
            after, effect = step(self.state, command, now=self.now)
        except RollcallRefused as refusal:
            got: Refusal | None = refusal.reason
        else:
            got = None
        if got is not None:
            assert got is expected, (command, got, expected)
            assert self.state == before
            return
        assert expected is None, (command, expected)
        self.state = after
        if isinstance(command, Open):
            number = after.rounds[-1].number
            self.books[number] = {}
            self.limits[number] = dict(command.limits)
            return
        for point, old, new in changes_of(effect):
            assert self.books[effect.round].get(point) == old
            self.books[effect.round][point] = new

    @rule(
        deadline=st.sampled_from([5.0, 10.0, 30.0, 4000.0]),
        invited=st.sets(st.sampled_from(POINTS), min_size=1),
    )
    def open(self, deadline: float, invited: set[int]) -> None:
        self.run(Open({p: 10 for p in invited}, deadline))

    @rule(number=rounds, point=points, headcount=headcounts, note=notes)
    def confirm(self, number: int, point: int, headcount: int, note: str) -> None:
        self.run(Confirm(number, point, headcount, note))

    @rule(number=rounds, point=points, reason=reasons)
    def excuse(self, number: int, point: int, reason: str) -> None:
        self.run(Excuse(number, point, reason))

    @rule(
        number=rounds,
        point=points,
        status=st.sampled_from(list(Status)),
        headcount=st.one_of(st.none(), headcounts),
        reason=reasons,
    )
    def correct(
        self, number: int, point: int, status: Status, headcount: int | None, reason: str
    ) -> None:
        self.run(Correct(number, point, status, headcount, reason))

    @rule(number=rounds)
    def close(self, number: int) -> None:
        self.run(Close(number))

    @rule(seconds=st.sampled_from([0.0, 1.0, 9.0, 31.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def at_most_one_open_round_numbered_in_order(self) -> None:
        assert [r.number for r in self.state.rounds] == list(range(1, len(self.state.rounds) + 1))
        assert sum(r.phase is Phase.OPEN for r in self.state.rounds) <= 1
        assert all(r.phase is Phase.CLOSED for r in self.state.rounds[:-1])

    @invariant()
    def every_invited_point_ends_a_closed_round_in_one_status(self) -> None:
        for round_ in self.state.rounds:
            assert set(round_.records) <= set(round_.limits)
            if round_.phase is Phase.CLOSED:
                assert set(round_.records) == set(round_.limits)
                assert all(r.status in set(Status) for r in round_.records.values())

    @invariant()
    def headcount_totals_equal_the_records(self) -> None:
        for round_ in self.state.rounds:
            total, areas = tally(round_, AREAS)
            records = round_.records.values()
            assert total.headcount == sum(r.headcount or 0 for r in records)
            assert total.headcount == sum(a.headcount for a in areas.values())
            counted = Counter(r.status.value for r in records)
            assert total.present == counted["present"]
            assert total.late == counted["late"]
            assert total.absent == counted["absent"]
            assert total.excused == counted["excused"]
            assert total.waiting == len(round_.limits) - len(round_.records)
            assert (
                total.present + total.late + total.absent + total.excused + total.waiting
                == total.expected
                == len(round_.limits)
            )
            for record in records:
                if record.status in (Status.PRESENT, Status.LATE):
                    assert record.headcount is not None
                else:
                    assert record.headcount is None

    @invariant()
    def books_from_effects_agree(self) -> None:
        for round_ in self.state.rounds:
            assert self.books[round_.number] == dict(round_.records)
            assert self.limits[round_.number] == dict(round_.limits)


TestRollcallWalk = RollcallWalk.TestCase
TestRollcallWalk.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
