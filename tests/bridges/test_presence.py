"""The presence machine: the whole (state, input) table, the stories, and random walks through it.

The guards are re-stated here independently (`accepts`) so a test fails when the module and this
file disagree about when an input is allowed.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from app.errors import Conflict, InvalidTransition
from bridges import presence as presence_module
from bridges.presence import (
    TRANSITIONS,
    CloseReason,
    Effect,
    GraceCleared,
    GraceStarted,
    IntervalClosed,
    IntervalOpened,
    Presence,
    PresenceInput,
    PresenceState,
    StateChanged,
    allowed_inputs,
    deadline,
    step,
)

S = PresenceState
C = PresenceInput
GRACE = 30.0

EXPECTED = {
    (S.INVITED, C.CONNECT): S.CONNECTING,
    (S.OFFLINE, C.CONNECT): S.CONNECTING,
    (S.DEGRADED, C.CONNECT): S.CONNECTING,
    (S.ONLINE, C.CONNECT): S.ONLINE,
    (S.CONNECTING, C.JOIN): S.ONLINE,
    (S.ONLINE, C.JOIN): S.ONLINE,
    (S.CONNECTING, C.DISCONNECT): S.OFFLINE,
    (S.ONLINE, C.DISCONNECT): S.DEGRADED,
    (S.DEGRADED, C.DISCONNECT): S.DEGRADED,
    (S.ONLINE, C.LINK_BAD): S.DEGRADED,
    (S.DEGRADED, C.LINK_BAD): S.DEGRADED,
    (S.ONLINE, C.LINK_GOOD): S.ONLINE,
    (S.DEGRADED, C.LINK_GOOD): S.ONLINE,
    (S.CONNECTING, C.LEAVE): S.OFFLINE,
    (S.ONLINE, C.LEAVE): S.OFFLINE,
    (S.DEGRADED, C.LEAVE): S.OFFLINE,
    (S.DEGRADED, C.GRACE_EXPIRED): S.OFFLINE,
}

ALL_PAIRS = list(itertools.product(PresenceState, PresenceInput))
PAIR_IDS = [f"{s.value}-{c.value}" for s, c in ALL_PAIRS]


def accepts(p: Presence, command: PresenceInput, now: float) -> bool:
    """The spec's table and guards, written out again as the test's oracle."""
    if (p.state, command) not in EXPECTED:
        return False
    if command in {C.LINK_BAD, C.LINK_GOOD, C.DISCONNECT}:
        return p.connected
    if command is C.GRACE_EXPIRED:
        return not p.connected and p.grace_deadline is not None and now >= p.grace_deadline
    return True


def run(
    script: list[tuple[PresenceInput, float]], *, grace_s: float = GRACE
) -> tuple[Presence, list[list[Effect]]]:
    """Apply (input, time) pairs from INVITED; return the final presence and each step's effects."""
    p = Presence.invited()
    log: list[list[Effect]] = []
    for command, now in script:
        p, effects = step(p, command, now=now, grace_s=grace_s)
        log.append(effects)
    return p, log


def reachable(depth: int = 6) -> list[tuple[Presence, float]]:
    """Every presence reachable in `depth` inputs (one time unit apart), with the time reached."""
    seen: dict[Presence, float] = {Presence.invited(): 0.0}
    frontier = list(seen.items())
    for _ in range(depth):
        following: list[tuple[Presence, float]] = []
        for p, clock in frontier:
            now = clock + 1.0
            for command in PresenceInput:
                try:
                    after, _ = step(p, command, now=now, grace_s=2.0)
                except InvalidTransition:
                    continue
                if after not in seen:
                    seen[after] = now
                    following.append((after, now))
            # Let a pending grace run out, so GRACE_EXPIRED has somewhere to fire.
            if p.grace_deadline is not None:
                following.append((p, max(now, p.grace_deadline)))
        frontier = following
    return list(seen.items())


SAMPLES = reachable()


def assert_refused(p: Presence, command: PresenceInput, now: float) -> None:
    before = dataclasses.replace(p)
    with pytest.raises(InvalidTransition) as caught:
        step(p, command, now=now, grace_s=GRACE)
    error = caught.value
    assert isinstance(error, Conflict)
    assert error.code == "invalid_transition"
    assert error.status == 409
    assert error.state == p.state.value
    assert error.command == command.value
    assert error.details == {
        "machine": "presence",
        "state": p.state.value,
        "command": command.value,
    }
    assert p.state.value in error.message
    assert command.value in error.message
    assert p == before


# --- the table -------------------------------------------------------------------------------


def test_table_is_the_documented_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED


def test_samples_cover_every_state_and_every_guard_branch() -> None:
    states = {p.state for p, _ in SAMPLES}
    assert states == set(PresenceState)
    degraded = [p for p, _ in SAMPLES if p.state is S.DEGRADED]
    assert any(p.connected for p in degraded)
    assert any(not p.connected for p in degraded)
    # A replacement from DEGRADED carries its open interval into CONNECTING.
    assert any(p.state is S.CONNECTING and p.connected_at is not None for p, _ in SAMPLES)


@pytest.mark.parametrize(("state", "command"), ALL_PAIRS, ids=PAIR_IDS)
def test_every_state_input_pair(state: PresenceState, command: PresenceInput) -> None:
    samples = [(p, clock) for p, clock in SAMPLES if p.state is state]
    outcomes: set[bool] = set()
    for p, clock in samples:
        # Early: at the latest time the presence saw; late: well past any grace deadline.
        for now in (clock, clock + 1000.0):
            if not accepts(p, command, now):
                outcomes.add(False)
                assert_refused(p, command, now)
                continue
            outcomes.add(True)
            after, effects = step(p, command, now=now, grace_s=GRACE)
            assert after.state is EXPECTED[(state, command)]
            changed = [e for e in effects if isinstance(e, StateChanged)]
            if after.state is state:
                assert changed == []
                assert after.since == p.since
            else:
                assert changed == [StateChanged(state, after.state, now)]
                assert effects[0] == changed[0]
                assert after.since == now
    if (state, command) not in EXPECTED:
        assert outcomes == {False}
    else:
        # Every table entry can fire from some reachable presence.
        assert True in outcomes
    guarded = {C.LINK_BAD, C.LINK_GOOD, C.DISCONNECT, C.GRACE_EXPIRED}
    if (state, command) in EXPECTED and state is S.DEGRADED and command in guarded:
        # Each guard in DEGRADED is exercised both ways.
        assert outcomes == {True, False}


@pytest.mark.parametrize("state", list(PresenceState))
def test_allowed_inputs_match_the_table(state: PresenceState) -> None:
    allowed = allowed_inputs(state)
    assert len(allowed) == len(set(allowed))
    assert set(allowed) == {c for (s, c) in EXPECTED if s is state}
    assert allowed == [c for c in PresenceInput if c in allowed]


def test_only_connect_leaves_invited_and_offline() -> None:
    assert allowed_inputs(S.INVITED) == [C.CONNECT]
    assert allowed_inputs(S.OFFLINE) == [C.CONNECT]
    assert S.INVITED not in set(TRANSITIONS.values())


# --- guards -------------------------------------------------------------------------------------


def disconnected_at_10() -> Presence:
    p, _ = run([(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.DISCONNECT, 10.0)])
    assert p.state is S.DEGRADED
    assert not p.connected
    return p


@pytest.mark.parametrize("command", [C.LINK_BAD, C.LINK_GOOD, C.DISCONNECT])
def test_link_reports_and_drops_need_a_live_connection(command: PresenceInput) -> None:
    assert_refused(disconnected_at_10(), command, 11.0)


def test_grace_expired_needs_the_deadline() -> None:
    p = disconnected_at_10()
    assert deadline(p) == 10.0 + GRACE
    assert_refused(p, C.GRACE_EXPIRED, 10.0 + GRACE - 0.001)
    after, effects = step(p, C.GRACE_EXPIRED, now=10.0 + GRACE, grace_s=GRACE)
    assert after.state is S.OFFLINE
    assert effects == [StateChanged(S.DEGRADED, S.OFFLINE, 10.0 + GRACE)]


def test_grace_expired_refused_while_connected_but_degraded() -> None:
    p, _ = run([(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.LINK_BAD, 3.0)])
    assert p.state is S.DEGRADED
    assert p.connected
    assert deadline(p) is None
    assert_refused(p, C.GRACE_EXPIRED, 1000.0)


def test_grace_expired_refused_after_the_point_came_back() -> None:
    """A timer the shell failed to cancel must not take a present point offline."""
    p, _ = run([(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.DISCONNECT, 3.0), (C.CONNECT, 4.0)])
    assert_refused(p, C.GRACE_EXPIRED, 100.0)
    p, _ = step(p, C.JOIN, now=5.0, grace_s=GRACE)
    assert_refused(p, C.GRACE_EXPIRED, 100.0)


def test_a_second_connect_while_connecting_is_refused() -> None:
    p, _ = run([(C.CONNECT, 1.0)])
    assert_refused(p, C.CONNECT, 2.0)


# --- clock and arguments --------------------------------------------------------------------------


def test_clock_going_backwards_is_a_caller_bug() -> None:
    p, _ = run([(C.CONNECT, 5.0)])
    with pytest.raises(ValueError, match="backwards"):
        step(p, C.JOIN, now=4.0, grace_s=GRACE)
    # Checked before the table: even an input the state refuses reports the clock.
    with pytest.raises(ValueError, match="backwards"):
        step(p, C.GRACE_EXPIRED, now=4.0, grace_s=GRACE)


def test_clock_checked_against_the_open_interval() -> None:
    p, _ = run([(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.LINK_BAD, 3.0), (C.CONNECT, 4.0)])
    assert (p.since, p.connected_at) == (4.0, 2.0)
    with pytest.raises(ValueError, match="backwards"):
        step(p, C.JOIN, now=3.5, grace_s=GRACE)


def test_same_instant_is_fine() -> None:
    p, log = run([(C.CONNECT, 1.0), (C.JOIN, 1.0), (C.DISCONNECT, 1.0)], grace_s=0.0)
    assert log[-1][1:] == [IntervalClosed(1.0, 1.0, CloseReason.DISCONNECT), GraceStarted(1.0)]
    after, _ = step(p, C.GRACE_EXPIRED, now=1.0, grace_s=0.0)
    assert after.state is S.OFFLINE


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_now_must_be_finite(now: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        step(Presence.invited(), C.CONNECT, now=now, grace_s=GRACE)


@pytest.mark.parametrize("grace_s", [-1.0, math.nan, math.inf])
def test_grace_must_be_finite_and_not_negative(grace_s: float) -> None:
    with pytest.raises(ValueError, match="grace_s"):
        step(Presence.invited(), C.CONNECT, now=1.0, grace_s=grace_s)


def test_invited_anchors_the_clock() -> None:
    assert Presence.invited() == Presence(state=S.INVITED, since=0.0)
    p = Presence.invited(at=-50.0)
    after, _ = step(p, C.CONNECT, now=-10.0, grace_s=GRACE)
    assert after.since == -10.0


# --- the presence value ---------------------------------------------------------------------------


VALID: dict[str, dict[str, Any]] = {
    "invited": {"state": S.INVITED},
    "connecting": {"state": S.CONNECTING, "connected": True, "link_ok": True},
    "online": {
        "state": S.ONLINE,
        "connected": True,
        "link_ok": True,
        "connected_at": 2.0,
        "first_joined_at": 2.0,
        "joins": 1,
    },
    "degraded-link": {
        "state": S.DEGRADED,
        "connected": True,
        "connected_at": 2.0,
        "first_joined_at": 2.0,
        "joins": 1,
    },
    "degraded-dropped": {
        "state": S.DEGRADED,
        "grace_deadline": 40.0,
        "first_joined_at": 2.0,
        "joins": 1,
    },
    "offline": {"state": S.OFFLINE, "first_joined_at": 2.0, "joins": 1},
}

# Each case breaks one rule of an otherwise valid presence.
BROKEN: list[tuple[str, dict[str, Any]]] = [
    ("invited", {"connected": True, "link_ok": True}),
    ("invited", {"joins": 1, "first_joined_at": 1.0}),
    ("invited", {"grace_deadline": 5.0}),
    ("connecting", {"connected": False, "link_ok": False}),
    ("connecting", {"link_ok": False}),
    ("online", {"connected_at": None}),
    ("online", {"link_ok": False}),
    ("online", {"connected": False, "link_ok": False, "connected_at": None}),
    ("online", {"connected_at": math.inf}),
    ("degraded-link", {"link_ok": True}),
    ("degraded-link", {"connected_at": None}),
    ("degraded-link", {"grace_deadline": 40.0}),
    ("degraded-dropped", {"grace_deadline": None}),
    ("degraded-dropped", {"link_ok": True}),
    ("degraded-dropped", {"connected_at": 2.0}),
    ("offline", {"grace_deadline": 5.0}),
    ("offline", {"connected": True}),
    ("offline", {"joins": 0}),
    ("offline", {"first_joined_at": None}),
    ("offline", {"joins": -1, "first_joined_at": None}),
    ("offline", {"since": math.nan}),
]


@pytest.mark.parametrize("name", list(VALID))
def test_reachable_shapes_can_be_built(name: str) -> None:
    p = Presence(**{"since": 0.0, **VALID[name]})
    assert any(_shape(p) == _shape(sample) for sample, _ in SAMPLES)


@pytest.mark.parametrize(
    ("name", "change"),
    BROKEN,
    ids=[f"{name}-" + "-".join(f"{k}={v}" for k, v in change.items()) for name, change in BROKEN],
)
def test_unreachable_presences_cannot_be_built(name: str, change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="inconsistent presence"):
        Presence(**{"since": 0.0, **VALID[name], **change})


def _shape(p: Presence) -> tuple[object, ...]:
    """A presence with its times reduced to whether they are set."""
    return (
        p.state,
        p.connected,
        p.link_ok,
        p.grace_deadline is not None,
        p.connected_at is not None,
        p.joins > 0,
    )


def test_every_reachable_presence_is_buildable() -> None:
    for p, _ in SAMPLES:
        assert Presence(**{f.name: getattr(p, f.name) for f in dataclasses.fields(p)}) == p


def test_values_are_frozen() -> None:
    values = (
        Presence.invited(),
        StateChanged(S.INVITED, S.CONNECTING, 1.0),
        IntervalOpened(1.0),
        IntervalClosed(1.0, 2.0, CloseReason.LEAVE),
        GraceStarted(1.0),
        GraceCleared(),
    )
    for value in values:
        fields = dataclasses.fields(value)
        name = fields[0].name if fields else "at"
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, None)


def test_close_reason_reads_as_its_string() -> None:
    assert str(CloseReason.DISCONNECT) == "disconnect"
    assert CloseReason("leave") is CloseReason.LEAVE


def test_module_is_a_pure_core() -> None:
    """Principle 1: no asyncio, web, database or media imports in the machine."""
    tree = ast.parse(Path(presence_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "enum", "math", "collections", "dataclasses", "typing", "app"}
    app_imports = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app")
    }
    assert app_imports == {"app.errors"}


# --- stories --------------------------------------------------------------------------------------


def test_resume_within_grace_gives_two_intervals() -> None:
    p, log = run(
        [
            (C.CONNECT, 1.0),
            (C.JOIN, 2.0),
            (C.DISCONNECT, 10.0),
            (C.CONNECT, 20.0),
            (C.JOIN, 21.0),
        ]
    )
    assert log == [
        [StateChanged(S.INVITED, S.CONNECTING, 1.0)],
        [StateChanged(S.CONNECTING, S.ONLINE, 2.0), IntervalOpened(2.0)],
        [
            StateChanged(S.ONLINE, S.DEGRADED, 10.0),
            IntervalClosed(2.0, 10.0, CloseReason.DISCONNECT),
            GraceStarted(10.0 + GRACE),
        ],
        [StateChanged(S.DEGRADED, S.CONNECTING, 20.0), GraceCleared()],
        [StateChanged(S.CONNECTING, S.ONLINE, 21.0), IntervalOpened(21.0)],
    ]
    assert p == Presence(
        state=S.ONLINE,
        since=21.0,
        connected=True,
        link_ok=True,
        connected_at=21.0,
        first_joined_at=2.0,
        joins=2,
    )
    assert deadline(p) is None


def test_grace_runs_out() -> None:
    p, log = run([(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.DISCONNECT, 10.0), (C.GRACE_EXPIRED, 40.0)])
    assert log[2] == [
        StateChanged(S.ONLINE, S.DEGRADED, 10.0),
        IntervalClosed(2.0, 10.0, CloseReason.DISCONNECT),
        GraceStarted(40.0),
    ]
    assert log[3] == [StateChanged(S.DEGRADED, S.OFFLINE, 40.0)]
    assert p == Presence(state=S.OFFLINE, since=40.0, first_joined_at=2.0, joins=1)
    assert deadline(p) is None
    # And it can come back later, as a new interval.
    p, effects = step(p, C.CONNECT, now=50.0, grace_s=GRACE)
    assert effects == [StateChanged(S.OFFLINE, S.CONNECTING, 50.0)]
    p, effects = step(p, C.JOIN, now=51.0, grace_s=GRACE)
    assert effects == [StateChanged(S.CONNECTING, S.ONLINE, 51.0), IntervalOpened(51.0)]
    assert p.first_joined_at == 2.0


def test_replacement_keeps_one_interval_and_never_leaves_online() -> None:
    script = [(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.CONNECT, 5.0), (C.JOIN, 6.0), (C.CONNECT, 7.0)]
    p, log = run(script)
    assert log[2:] == [[], [], []]
    assert p.state is S.ONLINE
    assert p.since == 2.0
    assert p.connected_at == 2.0
    assert p.joins == 2
    p, effects = step(p, C.LEAVE, now=9.0, grace_s=GRACE)
    assert effects == [
        StateChanged(S.ONLINE, S.OFFLINE, 9.0),
        IntervalClosed(2.0, 9.0, CloseReason.LEAVE),
    ]


def test_replacement_of_a_degraded_link_continues_its_interval() -> None:
    p, log = run(
        [(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.LINK_BAD, 3.0), (C.CONNECT, 4.0), (C.JOIN, 5.0)]
    )
    assert log[3] == [StateChanged(S.DEGRADED, S.CONNECTING, 4.0)]
    assert log[4] == [StateChanged(S.CONNECTING, S.ONLINE, 5.0)]
    assert p.connected_at == 2.0
    # Dropping before the welcome closes the carried interval, with no grace (never re-welcomed).
    p, log = run([(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.LINK_BAD, 3.0), (C.CONNECT, 4.0)])
    p, effects = step(p, C.DISCONNECT, now=6.0, grace_s=GRACE)
    assert effects == [
        StateChanged(S.CONNECTING, S.OFFLINE, 6.0),
        IntervalClosed(2.0, 6.0, CloseReason.DISCONNECT),
    ]
    assert deadline(p) is None


def test_bad_link_degrades_and_recovers() -> None:
    p, log = run(
        [
            (C.CONNECT, 1.0),
            (C.JOIN, 2.0),
            (C.LINK_BAD, 3.0),
            (C.LINK_BAD, 4.0),
            (C.LINK_GOOD, 5.0),
            (C.LINK_GOOD, 6.0),
        ]
    )
    assert log[2:] == [
        [StateChanged(S.ONLINE, S.DEGRADED, 3.0)],
        [],
        [StateChanged(S.DEGRADED, S.ONLINE, 5.0)],
        [],
    ]
    assert p.state is S.ONLINE
    assert p.since == 5.0
    assert p.connected_at == 2.0
    assert p.link_ok


def test_degraded_link_then_drop_starts_grace_without_moving() -> None:
    p, log = run([(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.LINK_BAD, 3.0), (C.DISCONNECT, 8.0)])
    assert log[3] == [IntervalClosed(2.0, 8.0, CloseReason.DISCONNECT), GraceStarted(8.0 + GRACE)]
    assert p.state is S.DEGRADED
    assert p.since == 3.0
    assert deadline(p) == 8.0 + GRACE


def test_leave_closes_the_interval() -> None:
    p, log = run([(C.CONNECT, 1.0), (C.JOIN, 2.0), (C.LINK_BAD, 3.0), (C.LEAVE, 4.0)])
    assert log[3] == [
        StateChanged(S.DEGRADED, S.OFFLINE, 4.0),
        IntervalClosed(2.0, 4.0, CloseReason.LEAVE),
    ]
    assert p == Presence(state=S.OFFLINE, since=4.0, first_joined_at=2.0, joins=1)


def test_leave_during_grace_clears_it() -> None:
    p, effects = step(disconnected_at_10(), C.LEAVE, now=12.0, grace_s=GRACE)
    assert effects == [StateChanged(S.DEGRADED, S.OFFLINE, 12.0), GraceCleared()]
    assert deadline(p) is None
    assert_refused(p, C.GRACE_EXPIRED, 10.0 + GRACE)


def test_leave_before_welcome() -> None:
    p, log = run([(C.CONNECT, 1.0), (C.LEAVE, 2.0)])
    assert log[1] == [StateChanged(S.CONNECTING, S.OFFLINE, 2.0)]
    assert p == Presence(state=S.OFFLINE, since=2.0)


def test_drop_before_welcome_has_no_grace() -> None:
    p, log = run([(C.CONNECT, 1.0), (C.DISCONNECT, 2.0)])
    assert log[1] == [StateChanged(S.CONNECTING, S.OFFLINE, 2.0)]
    assert p == Presence(state=S.OFFLINE, since=2.0)


# --- random walks ---------------------------------------------------------------------------------


class PresenceMachine(RuleBasedStateMachine):
    """Random valid inputs on a rising clock; the model is rebuilt from effects alone.

    Rebuilding intervals and timers from the effects (not from the presence) checks that a shell
    which only listens to effects keeps the same books as the machine.
    """

    def __init__(self) -> None:
        super().__init__()
        self.p = Presence.invited()
        self.clock = 0.0
        self.grace_s = GRACE
        self.closed: list[IntervalClosed] = []
        self.open_at: float | None = None
        self.timer: float | None = None
        self.joined_in_stretch = False
        self.first_join: float | None = None
        self.joins = 0

    def valid(self, now: float) -> list[PresenceInput]:
        return [c for c in PresenceInput if accepts(self.p, c, now)]

    def apply(self, command: PresenceInput, now: float) -> None:
        before = self.p
        after, effects = step(before, command, now=now, grace_s=self.grace_s)
        assert after.state is EXPECTED[(before.state, command)]
        self.clock = now
        self.p = after
        kinds = [type(e) for e in effects]
        order = [StateChanged, IntervalOpened, IntervalClosed, GraceStarted, GraceCleared]
        assert kinds == sorted(kinds, key=order.index)
        assert len(kinds) == len(set(kinds))
        for effect in effects:
            match effect:
                case StateChanged(old, new, at):
                    assert (old, new, at) == (before.state, after.state, now)
                case IntervalOpened(at):
                    assert self.open_at is None
                    assert at == now
                    self.open_at = at
                case IntervalClosed(opened_at, at, reason):
                    assert opened_at == self.open_at
                    assert at == now
                    expected = CloseReason.LEAVE if command is C.LEAVE else CloseReason.DISCONNECT
                    assert reason == expected
                    self.closed.append(effect)
                    self.open_at = None
                case GraceStarted(at):
                    assert self.timer is None
                    assert at == now + self.grace_s
                    self.timer = at
                case GraceCleared():
                    assert self.timer is not None
                    self.timer = None
        assert (StateChanged in kinds) == (after.state is not before.state)
        if command is C.GRACE_EXPIRED:
            assert self.timer is not None
            self.timer = None
        if command is C.CONNECT and not before.connected:
            self.joined_in_stretch = False
        if command is C.JOIN:
            self.joins += 1
            self.joined_in_stretch = True
            if self.first_join is None:
                self.first_join = now
        if not after.connected:
            self.joined_in_stretch = False

    @rule(data=st.data(), dt=st.floats(0, 20, allow_nan=False) | st.just(0.0))
    def valid_input(self, data: st.DataObject, dt: float) -> None:
        now = self.clock + dt
        command = data.draw(st.sampled_from(self.valid(now)))
        self.apply(command, now)

    @precondition(lambda self: self.p.grace_deadline is not None)
    @rule(late=st.floats(0, 5, allow_nan=False))
    def grace_runs_out(self, late: float) -> None:
        assert self.p.grace_deadline is not None
        self.apply(C.GRACE_EXPIRED, max(self.clock, self.p.grace_deadline + late))

    @rule(data=st.data(), dt=st.floats(0, 5, allow_nan=False))
    def refused_input(self, data: st.DataObject, dt: float) -> None:
        now = self.clock + dt
        refused = [c for c in PresenceInput if not accepts(self.p, c, now)]
        assert refused
        command = data.draw(st.sampled_from(refused))
        assert_refused(self.p, command, now)

    @rule(grace_s=st.sampled_from([0.0, 1.0, GRACE]))
    def change_grace(self, grace_s: float) -> None:
        self.grace_s = grace_s

    @invariant()
    def intervals_never_overlap(self) -> None:
        for interval in self.closed:
            assert interval.opened_at <= interval.at
        for earlier, later in itertools.pairwise(self.closed):
            assert earlier.at <= later.opened_at
        if self.open_at is not None and self.closed:
            assert self.closed[-1].at <= self.open_at

    @invariant()
    def open_interval_iff_joined_while_connected(self) -> None:
        assert self.p.connected_at == self.open_at
        assert (self.open_at is not None) == (self.p.connected and self.joined_in_stretch)

    @invariant()
    def offline_means_gone(self) -> None:
        if self.p.state is S.OFFLINE:
            assert not self.p.connected
            assert self.p.grace_deadline is None

    @invariant()
    def dropped_degraded_has_a_grace(self) -> None:
        if self.p.state is S.DEGRADED and not self.p.connected:
            assert self.p.grace_deadline is not None

    @invariant()
    def online_means_a_good_link(self) -> None:
        if self.p.state is S.ONLINE:
            assert self.p.connected
            assert self.p.link_ok

    @invariant()
    def timer_follows_effects(self) -> None:
        assert deadline(self.p) == self.timer

    @invariant()
    def joins_counted(self) -> None:
        assert self.p.joins == self.joins
        assert self.p.first_joined_at == self.first_join

    @invariant()
    def connected_time_fits_in_elapsed_time(self) -> None:
        total = sum(i.at - i.opened_at for i in self.closed)
        if self.open_at is not None:
            total += self.clock - self.open_at
        if self.first_join is None:
            assert total == 0
        else:
            assert total <= self.clock - self.first_join + 1e-9 * max(1.0, self.clock)


TestPresenceMachine = PresenceMachine.TestCase
TestPresenceMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


@settings(max_examples=300, deadline=None)
@given(
    script=st.lists(
        st.tuples(st.sampled_from(PresenceInput), st.floats(0, 50, allow_nan=False)),
        max_size=40,
    ),
    grace_s=st.floats(0, 60, allow_nan=False),
)
def test_any_input_either_steps_or_is_refused(
    script: list[tuple[PresenceInput, float]], grace_s: float
) -> None:
    p = Presence.invited()
    clock = 0.0
    for command, dt in script:
        clock += dt
        snapshot = dataclasses.replace(p)
        if accepts(p, command, clock):
            after, effects = step(p, command, now=clock, grace_s=grace_s)
            assert all(isinstance(e, Effect) for e in effects)
            assert p == snapshot
            p = after
            continue
        # A refusal raises, so there is no half-made presence or effect list to leak.
        with pytest.raises(InvalidTransition) as caught:
            step(p, command, now=clock, grace_s=grace_s)
        assert (caught.value.state, caught.value.command) == (p.state.value, command.value)
        assert p == snapshot
