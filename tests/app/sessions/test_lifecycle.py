"""The session lifecycle machine: the whole (state, command) table, and random walks through it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from app.errors import Conflict, InvalidTransition
from app.sessions import lifecycle
from app.sessions.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    LifecycleCommand,
    SessionStatus,
    allowed_commands,
    transition,
)

S = SessionStatus
C = LifecycleCommand

EXPECTED = {
    (S.DRAFT, C.SCHEDULE): S.SCHEDULED,
    (S.DRAFT, C.OPEN): S.OPEN,
    (S.DRAFT, C.CANCEL): S.CANCELLED,
    (S.SCHEDULED, C.UNSCHEDULE): S.DRAFT,
    (S.SCHEDULED, C.OPEN): S.OPEN,
    (S.SCHEDULED, C.CANCEL): S.CANCELLED,
    (S.OPEN, C.GO_LIVE): S.LIVE,
    (S.OPEN, C.END): S.ENDED,
    (S.OPEN, C.CANCEL): S.CANCELLED,
    (S.LIVE, C.END): S.ENDED,
}

ALL_PAIRS = list(itertools.product(SessionStatus, LifecycleCommand))


def test_table_is_the_documented_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(
    ("state", "command"), ALL_PAIRS, ids=[f"{s.value}-{c.value}" for s, c in ALL_PAIRS]
)
def test_every_state_command_pair(state: SessionStatus, command: LifecycleCommand) -> None:
    if (state, command) in TRANSITIONS:
        result = transition(state, command)
        assert result is TRANSITIONS[(state, command)]
        assert isinstance(result, SessionStatus)
        return
    with pytest.raises(InvalidTransition) as caught:
        transition(state, command)
    error = caught.value
    assert isinstance(error, Conflict)
    assert error.code == "invalid_transition"
    assert error.status == 409
    assert error.state == state.value
    assert error.command == command.value
    assert error.details == {"machine": "session", "state": state.value, "command": command.value}
    assert state.value in error.message
    assert command.value in error.message


@pytest.mark.parametrize("state", list(SessionStatus))
def test_allowed_commands_match_the_table(state: SessionStatus) -> None:
    allowed = allowed_commands(state)
    assert len(allowed) == len(set(allowed))
    assert set(allowed) == {c for (s, c) in TRANSITIONS if s is state}
    for command in LifecycleCommand:
        if command in allowed:
            transition(state, command)
        else:
            with pytest.raises(InvalidTransition):
                transition(state, command)


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_allow_nothing(state: SessionStatus) -> None:
    assert allowed_commands(state) == []
    for command in LifecycleCommand:
        with pytest.raises(InvalidTransition):
            transition(state, command)


def test_state_sets() -> None:
    assert {S.ENDED, S.CANCELLED} == TERMINAL
    assert frozenset(SessionStatus) - TERMINAL == lifecycle.EDITABLE
    assert frozenset({S.DRAFT}) == lifecycle.DELETABLE
    assert frozenset({S.OPEN, S.LIVE}) == lifecycle.ADMITS_POINTS
    # Every non-terminal state has a way forward, and every terminal one is reachable.
    for state in SessionStatus:
        assert bool(allowed_commands(state)) is (state not in TERMINAL)
    assert set(TRANSITIONS.values()) >= TERMINAL


class LifecycleMachine(RuleBasedStateMachine):
    """Random commands, valid or not, against a session that starts as a draft."""

    def __init__(self) -> None:
        super().__init__()
        self.status = SessionStatus.DRAFT
        self.history: list[SessionStatus] = [self.status]

    @rule(command=st.sampled_from(LifecycleCommand))
    def apply(self, command: LifecycleCommand) -> None:
        before = self.status
        if (before, command) in TRANSITIONS:
            after = transition(before, command)
            assert before not in TERMINAL
            if after is S.LIVE:
                assert command is C.GO_LIVE
                assert before is S.OPEN
            if after is S.ENDED:
                assert before in {S.OPEN, S.LIVE}
                assert command is C.END
            if after is S.OPEN:
                assert before in {S.DRAFT, S.SCHEDULED}
            self.status = after
            self.history.append(after)
        else:
            with pytest.raises(InvalidTransition) as caught:
                transition(before, command)
            assert (caught.value.state, caught.value.command) == (before.value, command.value)
            assert self.status is before

    @invariant()
    def status_is_an_enum(self) -> None:
        assert isinstance(self.status, SessionStatus)

    @invariant()
    def terminal_is_final(self) -> None:
        for index, state in enumerate(self.history):
            if state in TERMINAL:
                assert self.history[index:] == [state]
                break

    @invariant()
    def live_only_after_open(self) -> None:
        for previous, state in itertools.pairwise(self.history):
            if state is S.LIVE:
                assert previous is S.OPEN
            if state is S.ENDED:
                assert previous in {S.OPEN, S.LIVE}

    @invariant()
    def allowed_matches_state(self) -> None:
        assert (allowed_commands(self.status) == []) is (self.status in TERMINAL)


TestLifecycleMachine = LifecycleMachine.TestCase
