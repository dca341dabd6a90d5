"""The presence of one invited connection point in one session, as a pure state machine.

The operator's wall, the roll-call and the attendance report all ask the same question: is this ward
really in the room, and for how long was it? Answering it from sockets directly makes every flaky
commune link blink on the wall and double-count its minutes, so the answer lives here, with no I/O:
the shell feeds inputs with the time they happened, gets the next `Presence` and a list of effects
back, and owns every timer (it schedules GRACE_EXPIRED for `deadline(p)`). The same inputs replayed
from the event log rebuild the same presence.

The whole machine is the TRANSITIONS table plus a few guards on the connection flags; anything else
raises InvalidTransition naming state and input and changes nothing.

The shell tracks which connection is current. When a second connection replaces the first, only the
current connection's close is a DISCONNECT; the superseded one closes silently.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from app.errors import InvalidTransition

MACHINE = "presence"


class PresenceState(enum.StrEnum):
    INVITED = "invited"
    CONNECTING = "connecting"
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


class PresenceInput(enum.StrEnum):
    CONNECT = "connect"
    JOIN = "join"
    LINK_BAD = "link_bad"
    LINK_GOOD = "link_good"
    DISCONNECT = "disconnect"
    LEAVE = "leave"
    GRACE_EXPIRED = "grace_expired"


class CloseReason(enum.StrEnum):
    """Why an attendance interval ended; reports tell a dropped link from a goodbye."""

    DISCONNECT = "disconnect"
    LEAVE = "leave"


S = PresenceState
C = PresenceInput

TRANSITIONS: Mapping[tuple[PresenceState, PresenceInput], PresenceState] = {
    (S.INVITED, C.CONNECT): S.CONNECTING,
    (S.OFFLINE, C.CONNECT): S.CONNECTING,
    # A resume within the grace window, or a fresh connection from a point whose link went bad.
    (S.DEGRADED, C.CONNECT): S.CONNECTING,
    # A second connection replaces the first; the wall must not see the point blink.
    (S.ONLINE, C.CONNECT): S.ONLINE,
    (S.CONNECTING, C.JOIN): S.ONLINE,
    # The replacement connection's welcome.
    (S.ONLINE, C.JOIN): S.ONLINE,
    # Never welcomed: nothing to wait for, so no grace.
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

# A drop from a joined point may be a blip; give it the grace window before calling it gone.
GRACE_ON_DISCONNECT: frozenset[PresenceState] = frozenset({S.ONLINE, S.DEGRADED})


@dataclass(frozen=True, kw_only=True)
class Presence:
    """One point's presence; immutable so a refused input cannot have half-changed it.

    Construction checks that the flags fit the state (see `_SHAPES`), so a presence rebuilt from
    stored rows that the machine could never have reached fails here rather than deep in a guard.
    """

    state: PresenceState
    since: float
    connected: bool = False
    link_ok: bool = False
    grace_deadline: float | None = None
    connected_at: float | None = None
    first_joined_at: float | None = None
    joins: int = 0

    def __post_init__(self) -> None:
        if not _consistent(self):
            raise ValueError(f"inconsistent presence: {self!r}")

    @classmethod
    def invited(cls, at: float = 0.0) -> Presence:
        """A point on the invitation list that has not connected yet.

        `at` only anchors the clock check; any clock that starts at or after it works.
        """
        return cls(state=S.INVITED, since=at)


def _degraded_shape(p: Presence) -> bool:
    # Either the link is still up but bad, or it dropped and the grace window is running.
    if p.connected:
        return not p.link_ok and p.connected_at is not None
    return p.grace_deadline is not None


# What each state allows of the flags: exactly the presences the machine can reach.
_SHAPES: Mapping[PresenceState, Callable[[Presence], bool]] = {
    S.INVITED: lambda p: not p.connected and p.joins == 0 and p.grace_deadline is None,
    S.CONNECTING: lambda p: p.connected and p.link_ok,
    S.ONLINE: lambda p: p.connected and p.link_ok and p.connected_at is not None,
    S.DEGRADED: _degraded_shape,
    S.OFFLINE: lambda p: not p.connected and p.grace_deadline is None,
}


def _consistent(p: Presence) -> bool:
    times = (p.since, p.grace_deadline, p.connected_at, p.first_joined_at)
    return (
        all(t is None or math.isfinite(t) for t in times)
        and p.joins >= 0
        and (p.first_joined_at is None) == (p.joins == 0)
        and (p.connected or not p.link_ok)
        and (p.grace_deadline is None or not p.connected)
        and (p.connected_at is None or (p.connected and p.joins > 0))
        and _SHAPES[p.state](p)
    )


@dataclass(frozen=True)
class StateChanged:
    """The wall and the event log follow state, not inputs; emitted only when the state moves."""

    old: PresenceState
    new: PresenceState
    at: float


@dataclass(frozen=True)
class IntervalOpened:
    """Attendance time starts counting: the point was welcomed and no interval was running."""

    at: float


@dataclass(frozen=True)
class IntervalClosed:
    """Attendance time stops counting; the report sums these."""

    opened_at: float
    at: float
    reason: CloseReason


@dataclass(frozen=True)
class GraceStarted:
    """The shell must schedule GRACE_EXPIRED for `deadline`."""

    deadline: float


@dataclass(frozen=True)
class GraceCleared:
    """The shell must cancel the pending GRACE_EXPIRED timer: the point came back or left."""


Effect: TypeAlias = StateChanged | IntervalOpened | IntervalClosed | GraceStarted | GraceCleared


class _Flags(NamedTuple):
    """What an input changes besides the state; `step` turns it back into a checked Presence."""

    connected: bool
    link_ok: bool
    grace_deadline: float | None
    connected_at: float | None
    first_joined_at: float | None
    joins: int


def _flags(p: Presence) -> _Flags:
    return _Flags(
        p.connected, p.link_ok, p.grace_deadline, p.connected_at, p.first_joined_at, p.joins
    )


_Handler = Callable[[Presence, float, float], tuple[_Flags, list[Effect]]]
_Guard = Callable[[Presence, float], bool]


def _grace_cleared(p: Presence) -> list[Effect]:
    return [GraceCleared()] if p.grace_deadline is not None else []


def _interval_closed(p: Presence, now: float, reason: CloseReason) -> list[Effect]:
    if p.connected_at is None:
        return []
    return [IntervalClosed(p.connected_at, now, reason)]


def _connect(p: Presence, now: float, grace_s: float) -> tuple[_Flags, list[Effect]]:
    # An interval that is still open (a replacement of a live connection) continues: the point
    # never left the room, so its attendance must not be split in two.
    flags = _flags(p)._replace(connected=True, link_ok=True, grace_deadline=None)
    return flags, _grace_cleared(p)


def _join(p: Presence, now: float, grace_s: float) -> tuple[_Flags, list[Effect]]:
    effects: list[Effect] = []
    connected_at = p.connected_at
    if connected_at is None:
        connected_at = now
        effects.append(IntervalOpened(now))
    first = now if p.first_joined_at is None else p.first_joined_at
    flags = _flags(p)._replace(connected_at=connected_at, first_joined_at=first, joins=p.joins + 1)
    return flags, effects


def _link(ok: bool) -> _Handler:
    def handle(p: Presence, now: float, grace_s: float) -> tuple[_Flags, list[Effect]]:
        return _flags(p)._replace(link_ok=ok), []

    return handle


def _disconnect(p: Presence, now: float, grace_s: float) -> tuple[_Flags, list[Effect]]:
    effects = _interval_closed(p, now, CloseReason.DISCONNECT)
    deadline: float | None = None
    if p.state in GRACE_ON_DISCONNECT:
        deadline = now + grace_s
        effects.append(GraceStarted(deadline))
    flags = _flags(p)._replace(
        connected=False, link_ok=False, grace_deadline=deadline, connected_at=None
    )
    return flags, effects


def _leave(p: Presence, now: float, grace_s: float) -> tuple[_Flags, list[Effect]]:
    effects = _interval_closed(p, now, CloseReason.LEAVE) + _grace_cleared(p)
    flags = _flags(p)._replace(
        connected=False, link_ok=False, grace_deadline=None, connected_at=None
    )
    return flags, effects


def _grace_expired(p: Presence, now: float, grace_s: float) -> tuple[_Flags, list[Effect]]:
    # The timer has fired, so there is nothing for the shell to cancel.
    return _flags(p)._replace(grace_deadline=None), []


_HANDLERS: Mapping[PresenceInput, _Handler] = {
    C.CONNECT: _connect,
    C.JOIN: _join,
    C.LINK_BAD: _link(False),
    C.LINK_GOOD: _link(True),
    C.DISCONNECT: _disconnect,
    C.LEAVE: _leave,
    C.GRACE_EXPIRED: _grace_expired,
}


def _is_connected(p: Presence, now: float) -> bool:
    return p.connected


def _grace_is_due(p: Presence, now: float) -> bool:
    return not p.connected and p.grace_deadline is not None and now >= p.grace_deadline


# Checked after the table: the same (state, input) pair can be fine or not depending on the flags.
# Link reports and drops need a live connection: a stale report from a closed socket must not
# revive a point or restart its grace window. A timer that fired late for a grace already cleared,
# or early, must not take a present point offline.
_GUARDS: Mapping[PresenceInput, _Guard] = {
    C.LINK_BAD: _is_connected,
    C.LINK_GOOD: _is_connected,
    C.DISCONNECT: _is_connected,
    C.GRACE_EXPIRED: _grace_is_due,
}


def _check_clock(p: Presence, now: float, grace_s: float) -> None:
    """Reject caller bugs before they can look like transitions or corrupt attendance time."""
    if not math.isfinite(now):
        raise ValueError(f"presence: now must be a finite time, got {now!r}")
    latest = p.since if p.connected_at is None else max(p.since, p.connected_at)
    if now < latest:
        raise ValueError(f"presence: clock went backwards ({now!r} < {latest!r})")
    if not (math.isfinite(grace_s) and grace_s >= 0):
        raise ValueError(f"presence: grace_s must be finite and >= 0, got {grace_s!r}")


def step(
    p: Presence, command: PresenceInput, *, now: float, grace_s: float
) -> tuple[Presence, list[Effect]]:
    """The presence after `command` at `now`, and what the shell must do about it.

    Effects come in a fixed order: StateChanged, then interval effects, then grace effects.
    A refused input raises InvalidTransition; a bad clock or grace raises ValueError.
    """
    _check_clock(p, now, grace_s)
    target = TRANSITIONS.get((p.state, command))
    guard = _GUARDS.get(command)
    if target is None or (guard is not None and not guard(p, now)):
        raise InvalidTransition(MACHINE, p.state.value, command.value)
    flags, effects = _HANDLERS[command](p, now, grace_s)
    moved = target is not p.state
    after = Presence(
        state=target,
        since=now if moved else p.since,
        connected=flags.connected,
        link_ok=flags.link_ok,
        grace_deadline=flags.grace_deadline,
        connected_at=flags.connected_at,
        first_joined_at=flags.first_joined_at,
        joins=flags.joins,
    )
    if moved:
        effects.insert(0, StateChanged(p.state, target, now))
    return after, effects


def deadline(p: Presence) -> float | None:
    """When the shell must feed GRACE_EXPIRED, or None when no timer should be running."""
    return p.grace_deadline


def allowed_inputs(state: PresenceState) -> list[PresenceInput]:
    """Inputs the table accepts in `state`; the guards may still refuse some for a given presence."""
    return [command for command in PresenceInput if (state, command) in TRANSITIONS]
