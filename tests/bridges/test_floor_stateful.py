"""Random walks through the floor machine, checked against the issue's invariants.

Commands are drawn from the whole command set with ids and points that are often valid and often
not, on a rising clock, with points leaving and coming back. `expected_refusal` restates the guards
independently, so the machine and this file must agree on every refusal (state and check), and the
books kept from effects alone must agree with the state: a shell that only listens to effects sees
the same floor.
"""

from __future__ import annotations

import copy
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bridges.floor import (
    Accept,
    Accepted,
    CallOn,
    Cancel,
    Cancelled,
    ClearQueue,
    Command,
    DeadlineChanged,
    Denied,
    Deny,
    Effect,
    EndReason,
    Extend,
    Extended,
    FloorRefused,
    FloorRules,
    FloorState,
    Grant,
    Granted,
    PointOffline,
    Priority,
    QueueChanged,
    Refusal,
    Release,
    Released,
    Reorder,
    Request,
    Requested,
    RequestStatus,
    Revoke,
    Revoked,
    SessionEnded,
    Tick,
    TimerWarning,
    next_tick,
    queue_entries,
    replay,
    step,
)

S = RequestStatus
POINTS = range(1, 9)
WAITING = {S.PENDING, S.ACCEPTED}
# Kinds of command, repeated for weight: hands go up more often than anything else happens.
KINDS = (
    ["request"] * 6
    + ["accept", "grant", "reorder"] * 2
    + ["cancel", "release", "revoke", "extend", "call_on", "deny"]
    + ["clear", "leave", "back"]
)


def point_status(state: FloorState, point: int) -> RequestStatus:
    if any(h.point == point for h in state.holders):
        return S.GRANTED
    return next((w.status for w in state.queue if w.point == point), S.NONE)


def request_status(state: FloorState, request: int) -> tuple[RequestStatus, int | None]:
    """The live request's status and owner, or NONE for an ended or unknown id."""
    if any(h.request == request for h in state.holders):
        owner = next(h.point for h in state.holders if h.request == request)
        return S.GRANTED, owner
    for w in state.queue:
        if w.request == request:
            return w.status, w.point
    return S.NONE, None


def expected_refusal(
    state: FloorState, command: Command, rules: FloorRules, online: set[int]
) -> tuple[RequestStatus, Refusal] | None:
    """The spec's guards written out again: which (state, check) refuses `command`, if any."""
    full = len(state.holders) >= rules.max_holders
    no = Refusal.NOT_ALLOWED
    match command:
        case Request(point=p):
            st_ = point_status(state, p)
            if st_ is not S.NONE:
                return st_, no
            if p not in online:
                return st_, Refusal.OFFLINE
            if full and not rules.queue_while_held:
                return st_, Refusal.QUEUE_CLOSED
        case Cancel(point=p, request=r):
            st_, owner = request_status(state, r)
            if owner is not None and owner != p:
                return st_, Refusal.NOT_OWNER
            if st_ not in WAITING:
                return st_, no
        case Release(point=p) | Revoke(point=p) | Extend(point=p):
            st_ = point_status(state, p)
            if st_ is not S.GRANTED:
                return st_, no
        case Accept(request=r):
            st_, _ = request_status(state, r)
            if st_ is not S.PENDING:
                return st_, no
        case Deny(request=r):
            st_, _ = request_status(state, r)
            if st_ not in WAITING:
                return st_, no
        case Grant(request=r):
            st_, owner = request_status(state, r)
            if st_ not in WAITING:
                return st_, no
            if owner not in online:
                return st_, Refusal.OFFLINE
            if full and not rules.grant_releases_current_holder:
                return st_, Refusal.FLOOR_FULL
        case CallOn(point=p):
            st_ = point_status(state, p)
            if st_ is S.GRANTED:
                return st_, no
            if p not in online:
                return st_, Refusal.OFFLINE
            if full and not rules.grant_releases_current_holder:
                return st_, Refusal.FLOOR_FULL
        case Reorder(order=order):
            seen: set[int] = set()
            for r in order:
                st_, _ = request_status(state, r)
                if st_ not in WAITING:
                    return st_, no
                if r in seen:
                    return st_, Refusal.ORDER_MISMATCH
                seen.add(r)
            missing = [w for w in state.queue if w.request not in seen]
            if missing:
                return missing[0].status, Refusal.ORDER_MISMATCH
        case ClearQueue() | Tick() | PointOffline() | SessionEnded():
            pass
    return None


class FloorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state = FloorState.empty()
        self.floor_rules = FloorRules()
        self.clock = 0.0
        self.online: set[int] = set(POINTS) - {8}
        self.log: list[tuple[Command, float, FloorRules]] = []
        # Books kept from effects alone.
        self.live: dict[int, tuple[int, RequestStatus]] = {}  # request -> (point, status)
        self.ended: dict[int, Effect] = {}
        self.granted: dict[int, Granted] = {}
        self.deadlines: dict[int, float] = {}
        self.warned: Counter[tuple[int, float]] = Counter()
        self.announced_tick: float | None = None
        self.shown_queue: tuple[int, ...] = ()
        self.max_id = 0
        self.ended_session = False

    @initialize(
        max_holders=st.integers(1, 3),
        limit=st.sampled_from([15.0, 120.0]),
        warning=st.sampled_from([0.0, 5.0]),
        replaces=st.booleans(),
        queue_while_held=st.booleans(),
    )
    def choose_rules(
        self, max_holders: int, limit: float, warning: float, replaces: bool, queue_while_held: bool
    ) -> None:
        self.floor_rules = FloorRules(
            max_holders=max_holders,
            speaking_limit_s=limit,
            warning_before_s=warning,
            grant_releases_current_holder=replaces,
            queue_while_held=queue_while_held,
        )

    # --- drawing commands ----------------------------------------------------------------------

    def request_ids(self) -> st.SearchStrategy[int]:
        """Mostly waiting requests, sometimes granted, ended or never-issued ones."""
        waiting = [w.request for w in self.state.queue]
        queued = st.sampled_from(waiting) if waiting else st.nothing()
        live = st.sampled_from(sorted(self.live)) if self.live else st.nothing()
        ended = st.sampled_from(sorted(self.ended)) if self.ended else st.nothing()
        fresh = st.integers(1, self.state.next_request + 1)
        return st.one_of(queued, queued, queued, live, ended, fresh)

    def points(self) -> st.SearchStrategy[int]:
        """Mostly present points, sometimes anyone (absent points must be refused)."""
        present = st.sampled_from(sorted(self.online)) if self.online else st.nothing()
        return st.one_of(present, present, st.sampled_from(list(POINTS)))

    def holder_points(self) -> st.SearchStrategy[int]:
        """Mostly holders (so release, revoke and extend land), sometimes anyone."""
        holders = [h.point for h in self.state.holders]
        held = st.sampled_from(holders) if holders else st.nothing()
        return st.one_of(held, held, self.points())

    def draw_command(self, data: st.DataObject, kind: str) -> Command:
        """A command of `kind`, aimed at live requests and present points more often than not."""
        points, ids = self.points(), self.request_ids()
        own = [(w.point, w.request) for w in self.state.queue]
        match kind:
            case "request":
                topic = st.sampled_from(["", "Đường làng"])
                return data.draw(st.builds(Request, points, topic))
            case "cancel":
                mine = st.sampled_from(own).map(lambda pr: Cancel(*pr)) if own else st.nothing()
                return data.draw(mine | st.builds(Cancel, points, ids))
            case "release":
                return Release(data.draw(self.holder_points()))
            case "revoke":
                return Revoke(data.draw(self.holder_points()), "lạc đề")
            case "extend":
                seconds = data.draw(st.sampled_from([1.0, 7.0, 30.0]))
                return Extend(data.draw(self.holder_points()), seconds)
            case "accept":
                return Accept(data.draw(ids), data.draw(st.sampled_from(list(Priority))))
            case "grant":
                return Grant(data.draw(ids))
            case "call_on":
                return CallOn(data.draw(points))
            case "deny":
                return Deny(data.draw(ids), "lý do")
            case "reorder":
                queue_ids = [w.request for w in self.state.queue]
                good = st.permutations(queue_ids).map(tuple)
                return Reorder(data.draw(good | st.lists(ids, max_size=5).map(tuple)))
            case "clear":
                return ClearQueue("hết thời gian")
            case "leave":
                return PointOffline(data.draw(self.holder_points()))
        raise AssertionError(kind)

    # --- applying ------------------------------------------------------------------------------

    def apply(self, command: Command, now: float) -> None:
        before = self.state
        snapshot = copy.deepcopy(before)
        expected = expected_refusal(before, command, self.floor_rules, self.online)
        if expected is not None:
            with pytest.raises(FloorRefused) as caught:
                step(before, command, now=now, rules=self.floor_rules, online=self.online)
            assert (S(caught.value.state), caught.value.reason) == expected, command
            assert self.state == snapshot
            return
        # A refusal the oracle did not expect propagates and fails the run.
        after, effects = step(before, command, now=now, rules=self.floor_rules, online=self.online)
        assert before == snapshot
        self.state = after
        self.clock = now
        self.log.append((command, now, self.floor_rules))
        self.book(command, effects, now)

    def book(self, command: Command, effects: list[Effect], now: float) -> None:
        kinds = [type(e) for e in effects]
        # QueueChanged and DeadlineChanged close the list, in that order, at most once each.
        tail = [k for k in kinds if k in (QueueChanged, DeadlineChanged)]
        assert kinds[len(kinds) - len(tail) :] == tail
        assert tail in ([], [QueueChanged], [DeadlineChanged], [QueueChanged, DeadlineChanged])
        for effect in effects:
            match effect:
                case Requested(request, point, _, at):
                    assert request not in self.live
                    assert request not in self.ended
                    assert request > self.max_id
                    self.max_id = request
                    self.live[request] = (point, S.PENDING)
                    assert at == now
                case Accepted(request, point, _, _):
                    assert self.live[request] == (point, S.PENDING)
                    self.live[request] = (point, S.ACCEPTED)
                case Granted(request, point, _, at, deadline):
                    assert point in self.online
                    if request in self.live:
                        assert self.live[request][1] in WAITING
                    else:
                        assert request > self.max_id
                        self.max_id = request
                    assert request not in self.ended
                    assert deadline == at + self.floor_rules.speaking_limit_s
                    self.live[request] = (point, S.GRANTED)
                    self.granted[request] = effect
                    self.deadlines[request] = deadline
                case Extended(request, _, deadline, _):
                    assert self.live[request][1] is S.GRANTED
                    assert deadline > self.deadlines[request]
                    self.deadlines[request] = deadline
                case TimerWarning(request, _, deadline, at):
                    assert self.live[request][1] is S.GRANTED
                    assert deadline == self.deadlines[request]
                    assert deadline - self.floor_rules.warning_before_s <= at < deadline
                    self.warned[(request, deadline)] += 1
                case Released(request, point, _, granted_at, at) | Revoked(
                    request, point, _, _, granted_at, at
                ):
                    assert self.live.pop(request) == (point, S.GRANTED)
                    assert granted_at == self.granted[request].at <= at
                    if effect.reason is EndReason.TIME_UP:
                        assert at >= self.deadlines[request]
                    self.ended[request] = effect
                case Denied(request, point, _, _, _) | Cancelled(request, point, _, _):
                    point_, status = self.live.pop(request)
                    assert point_ == point
                    assert status in WAITING
                    self.ended[request] = effect
                case QueueChanged(queue):
                    assert queue == self.state.queue
                    entries = effect.entries()
                    assert entries == queue_entries(self.state)
                    for entry in entries:
                        assert effect.position(entry.point) == entry.position
                    self.shown_queue = tuple(e.request for e in entries)
                case DeadlineChanged(at):
                    assert at != self.announced_tick
                    self.announced_tick = at

    # --- rules ---------------------------------------------------------------------------------

    @rule(data=st.data(), dt=st.sampled_from([0.0, 0.5, 3.0, 20.0]))
    def command(self, data: st.DataObject, dt: float) -> None:
        # Kinds are weighted so the queue stays busy and the floor keeps moving.
        kind = data.draw(st.sampled_from(KINDS))
        if kind == "back":
            # Coming back is no command: later draws see the point present again.
            self.online.add(data.draw(st.sampled_from(list(POINTS))))
            return
        command = self.draw_command(data, kind)
        if isinstance(command, PointOffline):
            # The shell calls PointOffline when the resume window runs out; the point is gone.
            self.online.discard(command.point)
        self.apply(command, self.clock + dt)

    @precondition(lambda self: next_tick(self.state, self.floor_rules) is not None)
    @rule(late=st.sampled_from([0.0, 0.0, 1.0, 100.0]))
    def timer_fires(self, late: float) -> None:
        due = next_tick(self.state, self.floor_rules)
        assert due is not None
        self.apply(Tick(), max(self.clock, due + late))

    @precondition(lambda self: len(self.log) > 25 and not self.ended_session)
    @rule()
    def session_ends(self) -> None:
        self.ended_session = True
        self.apply(SessionEnded(), self.clock)
        assert self.state.queue == ()
        assert self.state.holders == ()

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def never_more_holders_than_allowed(self) -> None:
        assert len(self.state.holders) <= self.floor_rules.max_holders

    @invariant()
    def every_holder_is_a_present_invited_point(self) -> None:
        assert {h.point for h in self.state.holders} <= self.online

    @invariant()
    def the_queue_holds_no_point_twice_and_positions_are_contiguous(self) -> None:
        points = [w.point for w in self.state.queue]
        assert len(points) == len(set(points))
        assert not set(points) & {h.point for h in self.state.holders}
        assert [e.position for e in queue_entries(self.state)] == list(
            range(1, len(self.state.queue) + 1)
        )
        assert self.shown_queue == tuple(w.request for w in self.state.queue)

    @invariant()
    def every_grant_ends_released_or_revoked_or_still_runs(self) -> None:
        running = {h.request for h in self.state.holders}
        for request in self.granted:
            if request in running:
                assert request not in self.ended
            else:
                assert isinstance(self.ended[request], Released | Revoked)

    @invariant()
    def the_books_from_effects_match_the_state(self) -> None:
        from_state = {w.request: (w.point, w.status) for w in self.state.queue}
        from_state |= {h.request: (h.point, S.GRANTED) for h in self.state.holders}
        assert self.live == from_state
        assert {h.request: h.deadline for h in self.state.holders} == {
            r: self.deadlines[r] for r in from_state if from_state[r][1] is S.GRANTED
        }
        assert self.announced_tick == next_tick(self.state, self.floor_rules)

    @invariant()
    def a_warning_at_most_once_per_deadline(self) -> None:
        assert all(count == 1 for count in self.warned.values())

    @invariant()
    def nothing_is_overdue_after_the_timer(self) -> None:
        due = next_tick(self.state, self.floor_rules)
        if due is not None and self.log and isinstance(self.log[-1][0], Tick):
            assert due > self.clock

    @invariant()
    def the_log_replays_to_the_same_floor(self) -> None:
        if len(self.log) % 10 == 0:
            assert replay(self.log) == self.state


TestFloorMachine = FloorMachine.TestCase
TestFloorMachine.settings = settings(max_examples=120, stateful_step_count=50, deadline=None)
