"""The floor machine: the table, every rule, every refusal, and the stories a moderator lives through.

Random walks with invariants are in test_floor_stateful.py.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from app.errors import Conflict, InvalidTransition
from app.sessions.schemas import SessionSettings
from bridges import floor as floor_module
from bridges.floor import (
    CHAIR_COMMANDS,
    END_REASONS,
    EVERYONE,
    POINT_COMMANDS,
    SHELL_COMMANDS,
    TRANSITIONS,
    Accept,
    Accepted,
    Action,
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
    Holding,
    PointOffline,
    Priority,
    QueueChanged,
    QueueEntry,
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
    Waiting,
    allowed_actions,
    holder_points,
    next_tick,
    position,
    queue_entries,
    replay,
    status_of,
    step,
)

S = RequestStatus
A = Action
RULES = FloorRules()  # one holder, 180 s, warning 30 s before, grants replace, queue while held
ONLINE = frozenset(range(1, 20))

EXPECTED = {
    (S.NONE, A.REQUEST): S.PENDING,
    (S.PENDING, A.ACCEPT): S.ACCEPTED,
    (S.PENDING, A.GRANT): S.GRANTED,
    (S.ACCEPTED, A.GRANT): S.GRANTED,
    (S.NONE, A.CALL_ON): S.GRANTED,
    (S.PENDING, A.CALL_ON): S.GRANTED,
    (S.ACCEPTED, A.CALL_ON): S.GRANTED,
    (S.PENDING, A.REORDER): S.PENDING,
    (S.ACCEPTED, A.REORDER): S.ACCEPTED,
    (S.PENDING, A.DENY): S.DENIED,
    (S.ACCEPTED, A.DENY): S.DENIED,
    (S.PENDING, A.CANCEL): S.CANCELLED,
    (S.ACCEPTED, A.CANCEL): S.CANCELLED,
    (S.GRANTED, A.RELEASE): S.RELEASED,
    (S.GRANTED, A.REVOKE): S.REVOKED,
    (S.GRANTED, A.EXTEND): S.GRANTED,
    (S.GRANTED, A.WARN): S.GRANTED,
    (S.GRANTED, A.TIME_UP): S.REVOKED,
    (S.GRANTED, A.REPLACE): S.RELEASED,
    (S.PENDING, A.CLEAR): S.DENIED,
    (S.ACCEPTED, A.CLEAR): S.DENIED,
    (S.NONE, A.DISCONNECT): S.NONE,
    (S.PENDING, A.DISCONNECT): S.CANCELLED,
    (S.ACCEPTED, A.DISCONNECT): S.CANCELLED,
    (S.GRANTED, A.DISCONNECT): S.RELEASED,
    (S.PENDING, A.END): S.CANCELLED,
    (S.ACCEPTED, A.END): S.CANCELLED,
    (S.GRANTED, A.END): S.RELEASED,
}


@dataclasses.dataclass(frozen=True)
class Shown:
    """A QueueChanged as the queue it shows, so expectations need not spell out request times."""

    entries: tuple[QueueEntry, ...]


def shown(effects: list[Effect]) -> list[object]:
    return [Shown(e.entries()) if isinstance(e, QueueChanged) else e for e in effects]


def run(
    script: list[tuple[Command, float]],
    *,
    rules: FloorRules = RULES,
    online: frozenset[int] = ONLINE,
    state: FloorState | None = None,
) -> tuple[FloorState, list[list[object]]]:
    """Apply (command, time) pairs; return the final floor and each step's effects (queues shown)."""
    s = FloorState.empty() if state is None else state
    log: list[list[object]] = []
    for command, now in script:
        s, effects = step(s, command, now=now, rules=rules, online=online)
        log.append(shown(effects))
    return s, log


def refused(
    s: FloorState,
    command: Command,
    state: RequestStatus,
    reason: Refusal,
    *,
    now: float | None = None,
    rules: FloorRules = RULES,
    online: frozenset[int] = ONLINE,
) -> None:
    """The command raises the typed error naming machine, state, command and check; nothing moves."""
    snapshot = copy.deepcopy(s)
    at = s.clock + 1.0 if now is None else now
    with pytest.raises(FloorRefused) as caught:
        step(s, command, now=at, rules=rules, online=online)
    error = caught.value
    assert isinstance(error, InvalidTransition)
    assert isinstance(error, Conflict)
    assert (error.code, error.status) == ("invalid_transition", 409)
    assert error.state == state.value
    assert error.command == command.name
    assert error.reason is reason
    assert error.details == {
        "machine": "floor",
        "state": state.value,
        "command": command.name,
        "reason": reason.value,
    }
    assert error.message == f"floor: cannot {command.name} in state {state.value} ({reason.value})"
    assert str(error) == error.message
    assert s == snapshot


def entries(*rows: tuple[int, int, RequestStatus]) -> Shown:
    """The queue shown for (request, point, status) rows at NORMAL priority with no topic."""
    return Shown(
        tuple(QueueEntry(r, p, i, st, Priority.NORMAL, "") for i, (r, p, st) in enumerate(rows, 1))
    )


def queue_of(s: FloorState) -> list[tuple[int, int]]:
    return [(w.request, w.point) for w in s.queue]


def hands(*points: int, at: float = 1.0) -> FloorState:
    """Points raise their hands in this order, one second apart from `at`."""
    s, _ = run([(Request(p), at + i) for i, p in enumerate(points)])
    return s


# --- the table ---------------------------------------------------------------------------------


def test_table_is_the_documented_one() -> None:
    assert dict(TRANSITIONS) == EXPECTED


def test_table_shape() -> None:
    sources = {s for s, _ in TRANSITIONS}
    targets = set(TRANSITIONS.values())
    # Ended requests leave the state: no edge starts from them.
    assert sources == {S.NONE, S.PENDING, S.ACCEPTED, S.GRANTED}
    assert targets == set(RequestStatus)
    # Every action that ends a request has a reason, and only those.
    ending = {a for (s, a), t in TRANSITIONS.items() if t in floor_module.ENDED}
    assert ending == set(END_REASONS)
    assert END_REASONS[A.TIME_UP] is EndReason.TIME_UP
    assert END_REASONS[A.REPLACE] is EndReason.REPLACED


@pytest.mark.parametrize("status", list(RequestStatus))
def test_allowed_actions_match_the_table(status: RequestStatus) -> None:
    allowed = allowed_actions(status)
    assert set(allowed) == {a for (s, a) in EXPECTED if s is status}
    assert allowed == [a for a in Action if a in allowed]


def test_ended_statuses_allow_nothing() -> None:
    for status in floor_module.ENDED:
        assert allowed_actions(status) == []


def test_command_roles_partition_the_commands() -> None:
    roles = [POINT_COMMANDS, CHAIR_COMMANDS, SHELL_COMMANDS]
    every = set().union(*roles)
    assert sum(len(r) for r in roles) == len(every) == 14
    assert {c.name for c in every} == {
        "request",
        "cancel",
        "release",
        "accept",
        "grant",
        "call_on",
        "deny",
        "revoke",
        "extend",
        "reorder",
        "clear_queue",
        "tick",
        "point_offline",
        "session_ended",
    }


# --- requests and the queue ------------------------------------------------------------------------


def test_hands_queue_in_the_order_raised() -> None:
    s, log = run([(Request(4, "Đường ngập nước"), 1.0), (Request(2), 2.0)])
    assert log[0] == [
        Requested(1, 4, "Đường ngập nước", 1.0),
        Shown((QueueEntry(1, 4, 1, S.PENDING, Priority.NORMAL, "Đường ngập nước"),)),
    ]
    assert log[1] == [
        Requested(2, 2, "", 2.0),
        Shown(
            (
                QueueEntry(1, 4, 1, S.PENDING, Priority.NORMAL, "Đường ngập nước"),
                QueueEntry(2, 2, 2, S.PENDING, Priority.NORMAL, ""),
            )
        ),
    ]
    assert (position(s, 4), position(s, 2), position(s, 7)) == (1, 2, None)
    assert s.next_request == 3
    assert next_tick(s, RULES) is None


def test_queue_changed_carries_the_queue_itself() -> None:
    """No per-entry objects are built unless the shell asks: thousands of points may wait."""
    s = hands(1, 2)
    after, effects = step(s, Request(3, "cầu"), now=9.0, rules=RULES, online=ONLINE)
    change = effects[-1]
    assert isinstance(change, QueueChanged)
    assert change.queue is after.queue
    assert change.entries() == queue_entries(after)
    assert change.entries()[-1] == QueueEntry(3, 3, 3, S.PENDING, Priority.NORMAL, "cầu")
    assert [change.position(p) for p in (1, 2, 3, 4)] == [1, 2, 3, None]


def test_a_point_waits_once_and_may_not_queue_while_speaking() -> None:
    s = hands(1)
    refused(s, Request(1), S.PENDING, Refusal.NOT_ALLOWED)
    s, _ = run([(Accept(1), 3.0)], state=s)
    refused(s, Request(1, "again"), S.ACCEPTED, Refusal.NOT_ALLOWED)
    s, _ = run([(Grant(1), 4.0)], state=s)
    refused(s, Request(1), S.GRANTED, Refusal.NOT_ALLOWED)


def test_request_needs_a_present_point() -> None:
    refused(FloorState.empty(), Request(42), S.NONE, Refusal.OFFLINE)


def test_request_ids_are_never_reused() -> None:
    s, log = run([(Request(1), 1.0), (Cancel(1, 1), 2.0), (Request(1), 3.0), (CallOn(2), 4.0)])
    assert log[2][0] == Requested(2, 1, "", 3.0)
    assert log[3][0] == Granted(3, 2, "", 4.0, 184.0)
    assert s.next_request == 4


@pytest.mark.parametrize("topic", ["x" * 201, "two\nlines", "cr\r", "ls\u2028"])
def test_topic_is_one_short_line(topic: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        step(FloorState.empty(), Request(1, topic), now=1.0, rules=RULES, online=ONLINE)


def test_topic_of_200_characters_is_fine() -> None:
    s, _ = run([(Request(1, "đ" * 200), 1.0)])
    assert s.queue[0].topic == "đ" * 200


def test_accept_keeps_the_place_at_normal_priority() -> None:
    s = hands(1, 2, 3)
    s, log = run([(Accept(2), 5.0)], state=s)
    assert log[0] == [
        Accepted(2, 2, Priority.NORMAL, 5.0),
        entries((1, 1, S.PENDING), (2, 2, S.ACCEPTED), (3, 3, S.PENDING)),
    ]
    refused(s, Accept(2), S.ACCEPTED, Refusal.NOT_ALLOWED)
    refused(s, Accept(99), S.NONE, Refusal.NOT_ALLOWED)


def test_priority_places_requests_after_their_equals_and_betters() -> None:
    s = hands(1, 2, 3, 4)
    s, _ = run([(Accept(3, Priority.HIGH), 6.0)], state=s)
    assert queue_of(s) == [(3, 3), (1, 1), (2, 2), (4, 4)]
    s, _ = run([(Accept(4, Priority.HIGH), 7.0)], state=s)
    assert queue_of(s) == [(3, 3), (4, 4), (1, 1), (2, 2)]
    s, _ = run([(Accept(1, Priority.LOWEST), 8.0)], state=s)
    assert queue_of(s) == [(3, 3), (4, 4), (2, 2), (1, 1)]
    # A new hand goes before the lower-priority ones, behind everyone at NORMAL or above.
    s, _ = run([(Request(5), 9.0)], state=s)
    assert queue_of(s) == [(3, 3), (4, 4), (2, 2), (5, 5), (1, 1)]
    s, _ = run([(Accept(5, Priority.HIGHEST), 10.0)], state=s)
    assert queue_of(s)[0] == (5, 5)
    assert [e.position for e in queue_entries(s)] == [1, 2, 3, 4, 5]
    assert [e.priority for e in queue_entries(s)] == [
        Priority.HIGHEST,
        Priority.HIGH,
        Priority.HIGH,
        Priority.NORMAL,
        Priority.LOWEST,
    ]


def test_priority_ranks_follow_rfc_8855() -> None:
    assert [p.rank for p in Priority] == [0, 1, 2, 3, 4]
    assert Priority.LOWEST.rank < Priority.NORMAL.rank < Priority.HIGHEST.rank


def test_cancel_own_waiting_request() -> None:
    s = hands(1, 2, 3)
    s, log = run([(Cancel(2, 2), 5.0)], state=s)
    assert log[0] == [
        Cancelled(2, 2, EndReason.CANCELLED, 5.0),
        entries((1, 1, S.PENDING), (3, 3, S.PENDING)),
    ]
    assert [e.position for e in queue_entries(s)] == [1, 2]
    s, _ = run([(Accept(3), 6.0), (Cancel(3, 3), 7.0)], state=s)
    assert queue_of(s) == [(1, 1)]


def test_cancel_refusals() -> None:
    s = hands(1, 2)
    s, _ = run([(Grant(1), 3.0)], state=s)
    # Another point's request: refused before its state is considered.
    refused(s, Cancel(2, 1), S.GRANTED, Refusal.NOT_OWNER)
    refused(s, Cancel(1, 2), S.PENDING, Refusal.NOT_OWNER)
    # A granted request is released, not cancelled.
    refused(s, Cancel(1, 1), S.GRANTED, Refusal.NOT_ALLOWED)
    refused(s, Cancel(2, 99), S.NONE, Refusal.NOT_ALLOWED)
    s, _ = run([(Cancel(2, 2), 4.0)], state=s)
    # Twice: the request has ended and left the state.
    refused(s, Cancel(2, 2), S.NONE, Refusal.NOT_ALLOWED)


def test_deny_with_a_note() -> None:
    s = hands(1, 2)
    s, log = run([(Deny(1, "đã trả lời"), 5.0)], state=s)
    assert log[0] == [
        Denied(1, 1, EndReason.CHAIR, "đã trả lời", 5.0),
        entries((2, 2, S.PENDING)),
    ]
    s, _ = run([(Grant(2), 6.0)], state=s)
    refused(s, Deny(2), S.GRANTED, Refusal.NOT_ALLOWED)
    refused(s, Deny(1), S.NONE, Refusal.NOT_ALLOWED)
    with pytest.raises(ValueError, match="note"):
        step(s, Deny(2, "n" * 201), now=7.0, rules=RULES, online=ONLINE)


# --- grants ---------------------------------------------------------------------------------------


def test_grant_from_the_queue() -> None:
    s = hands(1, 2)
    s, log = run([(Grant(2), 10.0)], state=s)
    assert log[0] == [
        Granted(2, 2, "", 10.0, 190.0),
        entries((1, 1, S.PENDING)),
        DeadlineChanged(160.0),
    ]
    assert s.holders == (Holding(2, 2, "", 10.0, 190.0),)
    assert holder_points(s) == (2,)
    assert status_of(s, 2) is S.GRANTED
    assert status_of(s, 1) is S.PENDING
    assert next_tick(s, RULES) == 160.0


def test_grant_of_an_accepted_request_keeps_its_topic() -> None:
    s, log = run([(Request(3, "học phí"), 1.0), (Accept(1), 2.0), (Grant(1), 3.0)])
    assert log[2][0] == Granted(1, 3, "học phí", 3.0, 183.0)
    assert s.queue == ()


def test_grant_refusals() -> None:
    s = hands(1)
    refused(s, Grant(99), S.NONE, Refusal.NOT_ALLOWED)
    # The point's resume window is over but PointOffline has not come yet: still not granted.
    refused(s, Grant(1), S.PENDING, Refusal.OFFLINE, online=frozenset({2}))
    s, _ = run([(Grant(1), 3.0)], state=s)
    refused(s, Grant(1), S.GRANTED, Refusal.NOT_ALLOWED)


def test_a_new_grant_replaces_the_holder() -> None:
    s = hands(1, 2)
    s, log = run([(Grant(1), 3.0), (Grant(2), 50.0)], state=s)
    assert log[1] == [
        Released(1, 1, EndReason.REPLACED, 3.0, 50.0),
        Granted(2, 2, "", 50.0, 230.0),
        Shown(()),
        DeadlineChanged(200.0),
    ]
    assert holder_points(s) == (2,)


def test_grant_refused_when_full_and_grants_do_not_replace() -> None:
    rules = FloorRules(grant_releases_current_holder=False)
    s, _ = run([(Request(1), 1.0), (Request(2), 2.0), (Grant(1), 3.0)], rules=rules)
    refused(s, Grant(2), S.PENDING, Refusal.FLOOR_FULL, rules=rules)
    refused(s, CallOn(3), S.NONE, Refusal.FLOOR_FULL, rules=rules)
    s, _ = run([(Release(1), 4.0), (Grant(2), 5.0)], state=s, rules=rules)
    assert holder_points(s) == (2,)


def test_several_holders_and_the_oldest_gives_way() -> None:
    rules = FloorRules(max_holders=2)
    s, log = run([(CallOn(1), 1.0), (CallOn(2), 2.0), (CallOn(3), 3.0)], rules=rules)
    assert log[1] == [Granted(2, 2, "", 2.0, 182.0)]  # next tick unchanged: point 1's warning
    assert log[2][:2] == [
        Released(1, 1, EndReason.REPLACED, 1.0, 3.0),
        Granted(3, 3, "", 3.0, 183.0),
    ]
    assert holder_points(s) == (2, 3)
    strict = dataclasses.replace(rules, grant_releases_current_holder=False)
    refused(s, CallOn(4), S.NONE, Refusal.FLOOR_FULL, rules=strict)


def test_lowering_max_holders_applies_to_the_next_grant() -> None:
    wide = FloorRules(max_holders=3)
    s, _ = run([(CallOn(1), 1.0), (CallOn(2), 2.0), (CallOn(3), 3.0)], rules=wide)
    s, log = run([(CallOn(4), 4.0)], state=s)  # now max_holders=1
    assert [type(e) for e in log[0][:4]] == [Released, Released, Released, Granted]
    assert [e.point for e in log[0][:3] if isinstance(e, Released)] == [1, 2, 3]
    assert holder_points(s) == (4,)


def test_call_on_a_point_that_did_not_raise_its_hand() -> None:
    s = hands(1)
    s, log = run([(CallOn(5), 3.0)], state=s)
    assert log[0] == [Granted(2, 5, "", 3.0, 183.0), DeadlineChanged(153.0)]
    assert queue_of(s) == [(1, 1)]


def test_call_on_a_waiting_point_grants_its_request() -> None:
    s, _ = run([(Request(1), 1.0), (Request(2, "chợ"), 2.0), (CallOn(2), 3.0)])
    assert s.holders == (Holding(2, 2, "chợ", 3.0, 183.0),)
    assert queue_of(s) == [(1, 1)]
    assert s.next_request == 3


def test_call_on_refusals() -> None:
    s, _ = run([(CallOn(1), 1.0)])
    refused(s, CallOn(1), S.GRANTED, Refusal.NOT_ALLOWED)
    refused(s, CallOn(42), S.NONE, Refusal.OFFLINE)


# --- holding: release, revoke, extend, time --------------------------------------------------------


def test_release_by_the_holder() -> None:
    s, log = run([(CallOn(1), 1.0), (Release(1), 61.0)])
    assert log[1] == [Released(1, 1, EndReason.RELEASED, 1.0, 61.0), DeadlineChanged(None)]
    assert s.holders == ()


def test_release_by_a_non_holder() -> None:
    s, _ = run([(CallOn(1), 1.0), (Request(2), 2.0)])
    refused(s, Release(2), S.PENDING, Refusal.NOT_ALLOWED)
    refused(s, Release(3), S.NONE, Refusal.NOT_ALLOWED)


def test_revoke_with_a_note() -> None:
    s, log = run([(CallOn(1), 1.0), (Revoke(1, "lạc đề"), 20.0)])
    assert log[1] == [Revoked(1, 1, EndReason.CHAIR, "lạc đề", 1.0, 20.0), DeadlineChanged(None)]
    refused(s, Revoke(1), S.NONE, Refusal.NOT_ALLOWED)


def test_warning_once_then_time_up() -> None:
    s, log = run([(CallOn(1), 0.0)])
    assert log[0][-1] == DeadlineChanged(150.0)
    # Early or spurious ticks do nothing.
    s, log = run([(Tick(), 10.0), (Tick(), 149.9)], state=s)
    assert log == [[], []]
    s, log = run([(Tick(), 150.0)], state=s)
    assert log[0] == [TimerWarning(1, 1, 180.0, 150.0), DeadlineChanged(180.0)]
    assert s.holders[0].warned
    s, log = run([(Tick(), 160.0), (Tick(), 179.0)], state=s)
    assert log == [[], []]
    s, log = run([(Tick(), 180.0)], state=s)
    assert log[0] == [Revoked(1, 1, EndReason.TIME_UP, "", 0.0, 180.0), DeadlineChanged(None)]
    assert s.holders == ()


def test_a_late_tick_revokes_without_a_warning() -> None:
    s, log = run([(CallOn(1), 0.0), (Tick(), 500.0)])
    assert log[1] == [Revoked(1, 1, EndReason.TIME_UP, "", 0.0, 500.0), DeadlineChanged(None)]
    assert s.holders == ()


def test_no_warning_when_warning_is_zero() -> None:
    rules = FloorRules(speaking_limit_s=60.0, warning_before_s=0.0)
    s, log = run([(CallOn(1), 0.0), (Tick(), 59.0), (Tick(), 60.0)], rules=rules)
    assert next_tick(s, rules) is None
    assert log[0][-1] == DeadlineChanged(60.0)
    assert log[1] == []
    assert log[2] == [Revoked(1, 1, EndReason.TIME_UP, "", 0.0, 60.0), DeadlineChanged(None)]


def test_ticks_handle_each_holder() -> None:
    rules = FloorRules(max_holders=2, speaking_limit_s=100.0, warning_before_s=10.0)
    s, _ = run([(CallOn(1), 0.0), (CallOn(2), 5.0)], rules=rules)
    assert next_tick(s, rules) == 90.0
    s, log = run([(Tick(), 96.0)], state=s, rules=rules)
    assert log[0] == [
        TimerWarning(1, 1, 100.0, 96.0),
        TimerWarning(2, 2, 105.0, 96.0),
        DeadlineChanged(100.0),
    ]
    s, log = run([(Tick(), 100.0)], state=s, rules=rules)
    assert log[0] == [Revoked(1, 1, EndReason.TIME_UP, "", 0.0, 100.0), DeadlineChanged(105.0)]


def test_extend_before_the_warning() -> None:
    s, log = run([(CallOn(1), 0.0), (Extend(1, 60.0), 100.0)])
    assert log[1] == [Extended(1, 1, 240.0, 100.0), DeadlineChanged(210.0)]
    s, log = run([(Tick(), 180.0), (Tick(), 210.0)], state=s)
    assert log[0] == []
    assert log[1] == [TimerWarning(1, 1, 240.0, 210.0), DeadlineChanged(240.0)]


def test_extend_after_the_warning_earns_a_new_one() -> None:
    s, _ = run([(CallOn(1), 0.0), (Tick(), 150.0)])
    s, log = run([(Extend(1, 120.0), 160.0)], state=s)
    assert log[0] == [Extended(1, 1, 300.0, 160.0), DeadlineChanged(270.0)]
    assert not s.holders[0].warned
    s, log = run([(Tick(), 270.0)], state=s)
    assert log[0] == [TimerWarning(1, 1, 300.0, 270.0), DeadlineChanged(300.0)]


def test_a_short_extension_inside_the_warning_does_not_warn_again() -> None:
    s, _ = run([(CallOn(1), 0.0), (Tick(), 150.0)])
    s, log = run([(Extend(1, 10.0), 170.0)], state=s)
    assert log[0] == [Extended(1, 1, 190.0, 170.0), DeadlineChanged(190.0)]
    assert s.holders[0].warned
    s, log = run([(Tick(), 189.0), (Tick(), 190.0)], state=s)
    assert log[0] == []
    assert log[1][0] == Revoked(1, 1, EndReason.TIME_UP, "", 0.0, 190.0)


def test_extend_refusals_and_bad_seconds() -> None:
    s, _ = run([(CallOn(1), 0.0), (Request(2), 1.0)])
    refused(s, Extend(2, 30.0), S.PENDING, Refusal.NOT_ALLOWED)
    refused(s, Extend(3, 30.0), S.NONE, Refusal.NOT_ALLOWED)
    for seconds in (0.0, -5.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="positive"):
            step(s, Extend(1, seconds), now=2.0, rules=RULES, online=ONLINE)


def test_an_extend_racing_a_late_timer_still_counts() -> None:
    """The moderator's extend reached the machine before the overdue tick: the speaker continues."""
    s, log = run([(CallOn(1), 0.0), (Extend(1, 60.0), 181.0), (Tick(), 181.0)])
    assert log[1] == [Extended(1, 1, 240.0, 181.0), DeadlineChanged(210.0)]
    assert log[2] == []
    assert holder_points(s) == (1,)


# --- reorder and clear ------------------------------------------------------------------------------


def test_reorder() -> None:
    s = hands(1, 2, 3)
    s, log = run([(Accept(2), 4.0), (Reorder((3, 1, 2)), 5.0)], state=s)
    assert log[1] == [entries((3, 3, S.PENDING), (1, 1, S.PENDING), (2, 2, S.ACCEPTED))]
    # The same order again changes nothing and says nothing.
    s, log = run([(Reorder((3, 1, 2)), 6.0)], state=s)
    assert log == [[]]


def test_reorder_may_put_lower_priority_first() -> None:
    """The chair's order is the last word; priority only places requests as they arrive."""
    s = hands(1, 2)
    s, _ = run([(Accept(2, Priority.HIGH), 4.0), (Reorder((1, 2)), 5.0)], state=s)
    assert queue_of(s) == [(1, 1), (2, 2)]


def test_reorder_refusals() -> None:
    s = hands(1, 2, 3)
    s, _ = run([(CallOn(4), 5.0)], state=s)
    refused(s, Reorder((1, 2)), S.PENDING, Refusal.ORDER_MISMATCH)
    refused(s, Reorder((1, 2, 3, 3)), S.PENDING, Refusal.ORDER_MISMATCH)
    refused(s, Reorder((1, 2, 3, 99)), S.NONE, Refusal.NOT_ALLOWED)
    refused(s, Reorder((1, 2, 3, 4)), S.GRANTED, Refusal.NOT_ALLOWED)
    refused(s, Reorder(()), S.PENDING, Refusal.ORDER_MISMATCH)
    empty = FloorState.empty()
    assert step(empty, Reorder(()), now=1.0, rules=RULES, online=ONLINE)[1] == []


def test_clear_queue() -> None:
    s = hands(1, 2)
    s, _ = run([(CallOn(3), 4.0)], state=s)
    s, log = run([(ClearQueue("hết giờ"), 5.0)], state=s)
    assert log[0] == [
        Denied(1, 1, EndReason.QUEUE_CLEARED, "hết giờ", 5.0),
        Denied(2, 2, EndReason.QUEUE_CLEARED, "hết giờ", 5.0),
        Shown(()),
    ]
    assert holder_points(s) == (3,)
    s, log = run([(ClearQueue(), 6.0)], state=s)
    assert log == [[]]


# --- rules: queue_while_held ------------------------------------------------------------------------


def test_queue_closed_while_the_floor_is_full() -> None:
    rules = FloorRules(queue_while_held=False)
    s, _ = run([(Request(1), 1.0), (Request(2), 2.0), (Grant(1), 3.0)], rules=rules)
    refused(s, Request(3), S.NONE, Refusal.QUEUE_CLOSED, rules=rules)
    # Those already waiting keep their place; the moderator may still clear them.
    assert queue_of(s) == [(2, 2)]
    s, _ = run([(Release(1), 4.0), (Request(3), 5.0)], state=s, rules=rules)
    assert queue_of(s) == [(2, 2), (3, 3)]


def test_queue_open_while_a_slot_is_free() -> None:
    rules = FloorRules(max_holders=2, queue_while_held=False)
    s, _ = run([(CallOn(1), 1.0), (Request(2), 2.0)], rules=rules)
    assert queue_of(s) == [(2, 2)]
    s, _ = run([(CallOn(3), 3.0)], state=s, rules=rules)
    refused(s, Request(4), S.NONE, Refusal.QUEUE_CLOSED, rules=rules)


# --- the shell's commands ---------------------------------------------------------------------------


def test_point_offline_releases_the_holder() -> None:
    s, log = run([(CallOn(1), 1.0), (PointOffline(1), 70.0)], online=frozenset({1, 2}))
    assert log[1] == [Released(1, 1, EndReason.DISCONNECTED, 1.0, 70.0), DeadlineChanged(None)]
    assert s.holders == ()


def test_point_offline_drops_its_queued_request() -> None:
    s = hands(1, 2)
    s, log = run([(PointOffline(1), 70.0)], state=s, online=frozenset({2}))
    assert log[0] == [Cancelled(1, 1, EndReason.DISCONNECTED, 70.0), entries((2, 2, S.PENDING))]


def test_point_offline_without_a_request_is_a_no_op() -> None:
    s = hands(1)
    after, effects = step(s, PointOffline(7), now=5.0, rules=RULES, online=ONLINE)
    assert effects == []
    assert (after.queue, after.holders, after.next_request) == (s.queue, s.holders, s.next_request)


def test_session_ended_closes_every_turn() -> None:
    rules = FloorRules(max_holders=2)
    s, _ = run(
        [(Request(1), 1.0), (CallOn(2), 2.0), (CallOn(3), 3.0), (Request(4), 4.0)], rules=rules
    )
    s, log = run([(SessionEnded(), 9.0)], state=s, rules=rules)
    assert log[0] == [
        Released(2, 2, EndReason.SESSION_ENDED, 2.0, 9.0),
        Released(3, 3, EndReason.SESSION_ENDED, 3.0, 9.0),
        Cancelled(1, 1, EndReason.SESSION_ENDED, 9.0),
        Cancelled(4, 4, EndReason.SESSION_ENDED, 9.0),
        Shown(()),
        DeadlineChanged(None),
    ]
    assert (s.queue, s.holders) == ((), ())


# --- clock, rules and the state value -------------------------------------------------------------


def test_clock_going_backwards_is_a_caller_bug() -> None:
    s, _ = run([(Request(1), 5.0)])
    with pytest.raises(ValueError, match="backwards"):
        step(s, Tick(), now=4.0, rules=RULES, online=ONLINE)
    # Checked before anything else, even for a command the state would refuse.
    with pytest.raises(ValueError, match="backwards"):
        step(s, Release(1), now=4.0, rules=RULES, online=ONLINE)


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf])
def test_now_must_be_finite(now: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        step(FloorState.empty(), Tick(), now=now, rules=RULES, online=ONLINE)


def test_same_instant_is_fine() -> None:
    s, log = run([(Request(1), 1.0), (Grant(1), 1.0), (Release(1), 1.0)])
    assert log[2][0] == Released(1, 1, EndReason.RELEASED, 1.0, 1.0)
    assert s.clock == 1.0


@pytest.mark.parametrize(
    "change",
    [
        {"max_holders": 0},
        {"speaking_limit_s": 0.0},
        {"speaking_limit_s": math.inf},
        {"speaking_limit_s": math.nan},
        {"warning_before_s": -1.0},
        {"warning_before_s": 180.0},
        {"warning_before_s": math.nan},
    ],
)
def test_bad_rules_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="floor"):
        FloorRules(**change)


def test_rules_from_session_settings() -> None:
    assert FloorRules.from_settings(SessionSettings()) == FloorRules()
    settings = SessionSettings(
        speaking_time_limit_s=60,
        speaking_time_warning_s=0,
        max_floor_holders=3,
        grant_releases_current_holder=False,
        queue_while_held=False,
    )
    assert FloorRules.from_settings(settings) == FloorRules(
        max_holders=3,
        speaking_limit_s=60.0,
        warning_before_s=0.0,
        grant_releases_current_holder=False,
        queue_while_held=False,
    )


def _waiting(request: int, point: int, status: RequestStatus = S.PENDING) -> Waiting:
    return Waiting(request, point, "", status, Priority.NORMAL, 1.0)


BROKEN: list[tuple[str, dict[str, Any]]] = [
    ("duplicate id", {"queue": (_waiting(1, 1), _waiting(1, 2))}),
    ("id not yet issued", {"queue": (_waiting(5, 1),)}),
    ("id zero", {"queue": (_waiting(0, 1),)}),
    ("point twice", {"queue": (_waiting(1, 1), _waiting(2, 1))}),
    ("point waits and holds", {"queue": (_waiting(1, 1),), "holders": (Holding(2, 1, "", 1, 9),)}),
    ("granted in the queue", {"queue": (_waiting(1, 1, S.GRANTED),)}),
    ("ended in the queue", {"queue": (_waiting(1, 1, S.DENIED),)}),
    ("granted in the future", {"holders": (Holding(1, 1, "", 50.0, 90.0),)}),
    ("deadline before grant", {"holders": (Holding(1, 1, "", 1.0, 1.0),)}),
    ("infinite deadline", {"holders": (Holding(1, 1, "", 1.0, math.inf),)}),
    ("nan clock", {"clock": math.nan}),
    ("long topic", {"holders": (Holding(1, 1, "t" * 201, 1.0, 9.0),)}),
]


@pytest.mark.parametrize(("why", "fields"), BROKEN, ids=[why for why, _ in BROKEN])
def test_unreachable_floors_cannot_be_built(why: str, fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="inconsistent floor"):
        FloorState(**{"next_request": 3, "clock": 10.0, **fields})


def test_values_are_frozen() -> None:
    s, log = run([(Request(1), 1.0), (Grant(1), 2.0)])
    values: list[object] = [s, s.holders[0], Request(1), FloorRules(), *log[0], *log[1]]
    for value in values:
        name = dataclasses.fields(value)[0].name  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, None)
    assert hash(s) == hash(copy.deepcopy(s))


def test_module_is_a_pure_core() -> None:
    """No asyncio, web, database or media imports in the machine."""
    tree = ast.parse(Path(floor_module.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= {
        "__future__",
        "enum",
        "math",
        "collections.abc",
        "dataclasses",
        "typing",
        "app.errors",
    }


# --- stories and replay -----------------------------------------------------------------------------


def test_a_morning_of_dialogue() -> None:
    """Hands up, the chair accepts one with priority, grants, warns, extends, passes the floor."""
    rules = FloorRules(speaking_limit_s=120.0, warning_before_s=20.0)
    script: list[tuple[Command, float]] = [
        (Request(11, "Nước sạch"), 0.0),
        (Request(12, "Trường học"), 3.0),
        (Request(13), 4.0),
        (Accept(3, Priority.HIGH), 5.0),
        (Grant(3), 6.0),
        (Tick(), 106.0),
        (Extend(13, 60.0), 110.0),
        (Release(13), 150.0),
        (Grant(1), 151.0),
        (Cancel(12, 2), 152.0),
        (Tick(), 251.0),
        (Tick(), 271.0),
    ]
    s, log = run(script, rules=rules)
    transitions = [
        e for effects in log for e in effects if not isinstance(e, Shown | DeadlineChanged)
    ]
    assert transitions == [
        Requested(1, 11, "Nước sạch", 0.0),
        Requested(2, 12, "Trường học", 3.0),
        Requested(3, 13, "", 4.0),
        Accepted(3, 13, Priority.HIGH, 5.0),
        Granted(3, 13, "", 6.0, 126.0),
        TimerWarning(3, 13, 126.0, 106.0),
        Extended(3, 13, 186.0, 110.0),
        Released(3, 13, EndReason.RELEASED, 6.0, 150.0),
        Granted(1, 11, "Nước sạch", 151.0, 271.0),
        Cancelled(2, 12, EndReason.CANCELLED, 152.0),
        TimerWarning(1, 11, 271.0, 251.0),
        Revoked(1, 11, EndReason.TIME_UP, "", 151.0, 271.0),
    ]
    # The speaking-time record comes straight from the ends: point 13 spoke 144 s, point 11 120 s.
    spoken = {
        e.point: e.at - e.granted_at for e in transitions if isinstance(e, Released | Revoked)
    }
    assert spoken == {13: 144.0, 11: 120.0}
    assert (s.queue, s.holders, s.next_request) == ((), (), 4)


def test_replay_rebuilds_the_floor() -> None:
    rules = FloorRules(max_holders=2)
    longer = dataclasses.replace(rules, speaking_limit_s=300.0)
    entries_: list[tuple[Command, float, FloorRules]] = [
        (Request(1), 1.0, rules),
        (Request(2, "đê điều"), 2.0, rules),
        (Accept(2, Priority.HIGH), 3.0, rules),
        (Grant(2), 4.0, rules),
        (CallOn(3), 5.0, longer),
        (Tick(), 154.0, longer),
    ]
    live = FloorState.empty()
    for command, at, r in entries_:
        live, _ = step(live, command, now=at, rules=r, online=ONLINE)
    rebuilt = replay(entries_)
    assert rebuilt == live
    assert rebuilt.holders[1].deadline == 305.0
    assert rebuilt.holders[0].warned
    # Replay does not check presence: the points are long gone from the new process's sockets.
    assert 12345 in EVERYONE
    assert repr(EVERYONE) == "EVERYONE"


def test_the_documented_table_is_the_table() -> None:
    """docs/floor-control.md §2 lists every edge, and nothing else."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "floor-control.md"
    text = doc.read_text(encoding="utf-8")
    section = text.split("## 2. The table", 1)[1].split("## 3.", 1)[0]
    documented: dict[tuple[RequestStatus, Action], RequestStatus] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in {"status", "---"}:
            continue
        sources, action, target = cells[0], Action(cells[1]), cells[2]
        for source in (RequestStatus(s.strip()) for s in sources.split(",")):
            assert (source, action) not in documented
            documented[(source, action)] = source if target == "(same)" else RequestStatus(target)
    assert documented == dict(TRANSITIONS)
