"""Floor control for one session, as a pure state machine after BFCP (RFC 8855).

In a dialogue conference only the point that has the floor is heard in the hall and at every other
point, so who holds it, who waits and for how long someone has spoken must be decided in one place,
the same way live and after a restart. That place is here, with no I/O: the shell feeds a command with
the time it happened, the rules in force and the set of points that are present, and gets the next
`FloorState` and a list of effects back. It owns every timer (it schedules a `Tick` for
`next_tick(state)`, which `DeadlineChanged` also announces) and every side effect (broadcasts, media
routing, the session log). The same commands replayed with the same times rebuild the same state.

A floor request moves `pending → accepted → granted → released | revoked`, or ends `denied` or
`cancelled`; `pending` and `accepted` requests wait in one queue whose order is the state (positions
are indices, so they are 1..n by construction). Ended requests leave the state: their story is in the
effects, and the log keeps it.

The whole machine is the TRANSITIONS table, keyed by the status of the request a command concerns and
the action it takes on it, plus a few guards (the request belongs to the acting point, the point is
present, the floor has room, the queue is open, a reorder names the whole queue). Anything else
raises FloorRefused, an InvalidTransition naming machine, state and command, and changes nothing.
Malformed arguments (a topic too long, a negative extension, a clock running backwards) are caller
bugs and raise ValueError: the wire layer validates them first.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar, Protocol, TypeAlias, assert_never

from app.errors import InvalidTransition

MACHINE = "floor"
# One line on the moderator's queue and the hall screen; longer belongs in the conversation.
TOPIC_MAX = 200
NOTE_MAX = 200


class RequestStatus(enum.StrEnum):
    """BFCP's request statuses, plus NONE for "no live request" (the start, or one already ended)."""

    NONE = "none"
    PENDING = "pending"
    ACCEPTED = "accepted"
    GRANTED = "granted"
    RELEASED = "released"
    REVOKED = "revoked"
    DENIED = "denied"
    CANCELLED = "cancelled"


class Action(enum.StrEnum):
    """What a command does to one request; a command may act on several (a grant that replaces)."""

    REQUEST = "request"
    ACCEPT = "accept"
    GRANT = "grant"
    CALL_ON = "call_on"
    REORDER = "reorder"
    DENY = "deny"
    CANCEL = "cancel"
    RELEASE = "release"
    REVOKE = "revoke"
    EXTEND = "extend"
    WARN = "warn"
    TIME_UP = "time_up"
    REPLACE = "replace"
    CLEAR = "clear"
    DISCONNECT = "disconnect"
    END = "end"


class Priority(enum.StrEnum):
    """RFC 8855 §5.2.4's five levels. Points always ask at NORMAL; the chair sets it on accept."""

    LOWEST = "lowest"
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    HIGHEST = "highest"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK: Mapping[Priority, int] = {p: i for i, p in enumerate(Priority)}


class EndReason(enum.StrEnum):
    """Why a request ended; the log, the speaking-time record and the points' screens tell them apart."""

    RELEASED = "released"  # the holder gave the floor back
    CANCELLED = "cancelled"  # the point lowered its hand
    CHAIR = "chair"  # the moderator denied or revoked; the note says why
    TIME_UP = "time_up"  # the speaking-time limit ran out
    REPLACED = "replaced"  # a new grant took the floor (grant_releases_current_holder)
    QUEUE_CLEARED = "queue_cleared"  # the moderator cleared the queue
    DISCONNECTED = "disconnected"  # the point stayed away past the resume window
    SESSION_ENDED = "session_ended"  # the session is over


class Refusal(enum.StrEnum):
    """Which check refused a command; the edge may map these to friendlier messages."""

    NOT_ALLOWED = "not_allowed"  # the table has no edge for (state, action)
    NOT_OWNER = "not_owner"  # a point named another point's request
    OFFLINE = "offline"  # the point is not a present invited point
    FLOOR_FULL = "floor_full"  # max holders reached and grants do not replace
    QUEUE_CLOSED = "queue_closed"  # the floor is full and points may not queue while it is held
    ORDER_MISMATCH = "order_mismatch"  # a reorder must name every waiting request exactly once


class FloorRefused(InvalidTransition):
    """An impossible floor command: machine, state and command, plus which check refused it."""

    def __init__(self, state: RequestStatus, command: str, reason: Refusal) -> None:
        super().__init__(MACHINE, state.value, command)
        self.message = f"{self.message} ({reason.value})"
        self.args = (self.message,)
        self.details["reason"] = reason.value
        self.reason = reason


S = RequestStatus
A = Action

TRANSITIONS: Mapping[tuple[RequestStatus, Action], RequestStatus] = {
    # A point raises its hand; it may not while it already waits or speaks.
    (S.NONE, A.REQUEST): S.PENDING,
    (S.PENDING, A.ACCEPT): S.ACCEPTED,
    # The chair may grant straight from a raised hand; accepting first is optional.
    (S.PENDING, A.GRANT): S.GRANTED,
    (S.ACCEPTED, A.GRANT): S.GRANTED,
    # Calling on a point: its waiting request if it has one, else a new request born granted.
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
    # The shell reports every point whose resume window ran out; one with no request is a no-op.
    (S.NONE, A.DISCONNECT): S.NONE,
    (S.PENDING, A.DISCONNECT): S.CANCELLED,
    (S.ACCEPTED, A.DISCONNECT): S.CANCELLED,
    (S.GRANTED, A.DISCONNECT): S.RELEASED,
    (S.PENDING, A.END): S.CANCELLED,
    (S.ACCEPTED, A.END): S.CANCELLED,
    (S.GRANTED, A.END): S.RELEASED,
}

WAITING: frozenset[RequestStatus] = frozenset({S.PENDING, S.ACCEPTED})
ENDED: frozenset[RequestStatus] = frozenset({S.RELEASED, S.REVOKED, S.DENIED, S.CANCELLED})

# The reason recorded when an action ends a request.
END_REASONS: Mapping[Action, EndReason] = {
    A.DENY: EndReason.CHAIR,
    A.CANCEL: EndReason.CANCELLED,
    A.RELEASE: EndReason.RELEASED,
    A.REVOKE: EndReason.CHAIR,
    A.TIME_UP: EndReason.TIME_UP,
    A.REPLACE: EndReason.REPLACED,
    A.CLEAR: EndReason.QUEUE_CLEARED,
    A.DISCONNECT: EndReason.DISCONNECTED,
    A.END: EndReason.SESSION_ENDED,
}


def allowed_actions(status: RequestStatus) -> list[Action]:
    """Actions the table accepts on a request in `status`; guards may still refuse some."""
    return [action for action in Action if (status, action) in TRANSITIONS]


# --- rules ------------------------------------------------------------------------------------


class SessionSettingsLike(Protocol):
    """The session settings keys floor control reads (app.sessions.schemas.SessionSettings)."""

    @property
    def max_floor_holders(self) -> int: ...
    @property
    def speaking_time_limit_s(self) -> int: ...
    @property
    def speaking_time_warning_s(self) -> int: ...
    @property
    def grant_releases_current_holder(self) -> bool: ...
    @property
    def queue_while_held(self) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class FloorRules:
    """The session's floor rules; passed to every step so a settings change applies to the next one.

    A change never touches a running turn: a deadline is fixed when the floor is granted (or
    extended), and a lower max_holders only limits later grants.
    `warning_before_s == 0` means no warning.
    """

    max_holders: int = 1
    speaking_limit_s: float = 180.0
    warning_before_s: float = 30.0
    grant_releases_current_holder: bool = True
    queue_while_held: bool = True

    def __post_init__(self) -> None:
        if self.max_holders < 1:
            raise ValueError(f"floor: max_holders must be >= 1, got {self.max_holders!r}")
        if not (math.isfinite(self.speaking_limit_s) and self.speaking_limit_s > 0):
            raise ValueError(f"floor: speaking_limit_s must be > 0, got {self.speaking_limit_s!r}")
        if not (0 <= self.warning_before_s < self.speaking_limit_s):
            raise ValueError(
                "floor: warning_before_s must be >= 0 and shorter than speaking_limit_s, "
                f"got {self.warning_before_s!r}"
            )

    @classmethod
    def from_settings(cls, settings: SessionSettingsLike) -> FloorRules:
        return cls(
            max_holders=settings.max_floor_holders,
            speaking_limit_s=float(settings.speaking_time_limit_s),
            warning_before_s=float(settings.speaking_time_warning_s),
            grant_releases_current_holder=settings.grant_releases_current_holder,
            queue_while_held=settings.queue_while_held,
        )


class _Everyone:
    """Contains every point: for replaying logged commands, whose presence checks already passed."""

    def __contains__(self, point: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "EVERYONE"


EVERYONE: Container[int] = _Everyone()


# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """A raised hand in the queue (pending, or accepted by the chair). Its position is its index."""

    request: int
    point: int
    topic: str
    status: RequestStatus
    priority: Priority
    requested_at: float


@dataclass(frozen=True)
class Holding:
    """A granted request: the point speaks until `deadline` unless extended, released or revoked."""

    request: int
    point: int
    topic: str
    granted_at: float
    deadline: float
    # The TimerWarning for this deadline has been emitted; it goes out once per deadline.
    warned: bool = False


@dataclass(frozen=True, kw_only=True)
class FloorState:
    """The floor of one session; immutable so a refused command cannot have half-changed it.

    `queue` is in queue order and `holders` in grant order (the first is replaced first).
    Construction checks what the machine guarantees, so a state rebuilt wrongly fails here.
    """

    queue: tuple[Waiting, ...] = ()
    holders: tuple[Holding, ...] = ()
    next_request: int = 1
    clock: float = 0.0

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(f"inconsistent floor: {problem}: {self!r}")

    @classmethod
    def empty(cls, at: float = 0.0) -> FloorState:
        """A floor nobody has asked for; `at` anchors the clock check."""
        return cls(clock=at)


def _problem(s: FloorState) -> str:
    """What makes `s` a floor the machine cannot reach, or "" (one pass: it runs on every step)."""
    ids: set[int] = set()
    points: set[int] = set()
    if not math.isfinite(s.clock):
        return "times must be finite"
    for w in s.queue:
        if w.status not in WAITING:
            return "the queue holds only pending and accepted requests"
        if not math.isfinite(w.requested_at):
            return "times must be finite"
        if len(w.topic) > TOPIC_MAX:
            return "topic too long"
        ids.add(w.request)
        points.add(w.point)
    for h in s.holders:
        if not (math.isfinite(h.granted_at) and math.isfinite(h.deadline)):
            return "times must be finite"
        if h.granted_at > s.clock:
            return "a holder was granted after the clock"
        # A positive limit plus positive extensions always end after the grant.
        if h.deadline <= h.granted_at:
            return "a deadline must come after its grant"
        if len(h.topic) > TOPIC_MAX:
            return "topic too long"
        ids.add(h.request)
        points.add(h.point)
    live = len(s.queue) + len(s.holders)
    if len(ids) != live or (ids and not (min(ids) >= 1 and max(ids) < s.next_request)):
        return "request ids must be unique and below next_request"
    if len(points) != live:
        return "a point may have one live request"
    return ""


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A point raises its hand, optionally with a one-line topic."""

    name: ClassVar[str] = "request"
    point: int
    topic: str = ""


@dataclass(frozen=True)
class Cancel:
    """A point lowers its hand; it names the request so a stale click cannot cancel a newer one."""

    name: ClassVar[str] = "cancel"
    point: int
    request: int


@dataclass(frozen=True)
class Release:
    """The holder gives the floor back."""

    name: ClassVar[str] = "release"
    point: int


@dataclass(frozen=True)
class Accept:
    """The chair acknowledges a raised hand; a priority other than its own moves it in the queue."""

    name: ClassVar[str] = "accept"
    request: int
    priority: Priority = Priority.NORMAL


@dataclass(frozen=True)
class Grant:
    """The chair gives the floor to a waiting request."""

    name: ClassVar[str] = "grant"
    request: int


@dataclass(frozen=True)
class CallOn:
    """The chair gives the floor to a present point, whether or not it raised its hand."""

    name: ClassVar[str] = "call_on"
    point: int


@dataclass(frozen=True)
class Deny:
    name: ClassVar[str] = "deny"
    request: int
    note: str = ""


@dataclass(frozen=True)
class Revoke:
    name: ClassVar[str] = "revoke"
    point: int
    note: str = ""


@dataclass(frozen=True)
class Extend:
    """The chair adds time to a holder's deadline."""

    name: ClassVar[str] = "extend"
    point: int
    seconds: float


@dataclass(frozen=True)
class Reorder:
    """The chair's new queue order: every waiting request id exactly once."""

    name: ClassVar[str] = "reorder"
    order: tuple[int, ...]


@dataclass(frozen=True)
class ClearQueue:
    """The chair denies every waiting request at once."""

    name: ClassVar[str] = "clear_queue"
    note: str = ""


@dataclass(frozen=True)
class Tick:
    """The shell's timer fired (or any time it likes): warn and revoke what is due at `now`."""

    name: ClassVar[str] = "tick"


@dataclass(frozen=True)
class PointOffline:
    """The point's resume window ran out: it loses the floor and its place in the queue."""

    name: ClassVar[str] = "point_offline"
    point: int


@dataclass(frozen=True)
class SessionEnded:
    """The session is over: every turn ends, so the speaking-time record is complete."""

    name: ClassVar[str] = "session_ended"


Command: TypeAlias = (
    Request
    | Cancel
    | Release
    | Accept
    | Grant
    | CallOn
    | Deny
    | Revoke
    | Extend
    | Reorder
    | ClearQueue
    | Tick
    | PointOffline
    | SessionEnded
)

# Who may send each command; the shell checks roles, the machine only that a point acts for itself.
POINT_COMMANDS: frozenset[type[Command]] = frozenset({Request, Cancel, Release})
CHAIR_COMMANDS: frozenset[type[Command]] = frozenset(
    {Accept, Grant, CallOn, Deny, Revoke, Extend, Reorder, ClearQueue}
)
SHELL_COMMANDS: frozenset[type[Command]] = frozenset({Tick, PointOffline, SessionEnded})


# --- effects ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requested:
    request: int
    point: int
    topic: str
    at: float


@dataclass(frozen=True)
class Accepted:
    request: int
    point: int
    priority: Priority
    at: float


@dataclass(frozen=True)
class Granted:
    """The media plane must route this point to the hall and every point, and ask for a keyframe."""

    request: int
    point: int
    topic: str
    at: float
    deadline: float


@dataclass(frozen=True)
class Extended:
    request: int
    point: int
    deadline: float
    at: float


@dataclass(frozen=True)
class TimerWarning:
    """`deadline - at` seconds are left; emitted once per deadline."""

    request: int
    point: int
    deadline: float
    at: float


@dataclass(frozen=True)
class Released:
    """The turn ended without a sanction; media stops. `at - granted_at` is the speaking time."""

    request: int
    point: int
    reason: EndReason
    granted_at: float
    at: float


@dataclass(frozen=True)
class Revoked:
    """The chair or the clock took the floor; media stops. `at - granted_at` is the speaking time."""

    request: int
    point: int
    reason: EndReason
    note: str
    granted_at: float
    at: float


@dataclass(frozen=True)
class Denied:
    request: int
    point: int
    reason: EndReason
    note: str
    at: float


@dataclass(frozen=True)
class Cancelled:
    request: int
    point: int
    reason: EndReason
    at: float


@dataclass(frozen=True)
class QueueEntry:
    """One line of the queue as shown: its position is 1 for the next to speak."""

    request: int
    point: int
    position: int
    status: RequestStatus
    priority: Priority
    topic: str
    # When the hand went up, for the chair's waiting time; not part of what makes two lines equal.
    requested_at: float = field(default=0.0, compare=False)


@dataclass(frozen=True)
class QueueChanged:
    """The whole new queue; emitted whenever an entry or the order changed.

    It carries the state's own tuple (no copy, no per-entry objects), because with thousands of
    points waiting the shell decides what to send whom: the list to the chair, each point its place.
    """

    queue: tuple[Waiting, ...]

    def entries(self) -> tuple[QueueEntry, ...]:
        return _entries(self.queue)

    def position(self, point: int) -> int | None:
        """The point's place in the new queue (1 is next), or None when it does not wait."""
        return _position(self.queue, point)


@dataclass(frozen=True)
class DeadlineChanged:
    """The shell must (re)arm its one timer to send Tick at `at`, or disarm it when None."""

    at: float | None


Transition: TypeAlias = (
    Requested
    | Accepted
    | Granted
    | Extended
    | TimerWarning
    | Released
    | Revoked
    | Denied
    | Cancelled
)
Effect: TypeAlias = Transition | QueueChanged | DeadlineChanged


# --- queries ----------------------------------------------------------------------------------


def _entries(queue: tuple[Waiting, ...]) -> tuple[QueueEntry, ...]:
    return tuple(
        QueueEntry(w.request, w.point, i, w.status, w.priority, w.topic, w.requested_at)
        for i, w in enumerate(queue, start=1)
    )


def _position(queue: tuple[Waiting, ...], point: int) -> int | None:
    for i, w in enumerate(queue, start=1):
        if w.point == point:
            return i
    return None


def queue_entries(state: FloorState) -> tuple[QueueEntry, ...]:
    return _entries(state.queue)


def position(state: FloorState, point: int) -> int | None:
    """The point's place in the queue (1 is next), or None when it does not wait."""
    return _position(state.queue, point)


def holder_points(state: FloorState) -> tuple[int, ...]:
    return tuple(h.point for h in state.holders)


def _due_at(h: Holding, rules_warning_s: float) -> float:
    if h.warned or rules_warning_s <= 0:
        return h.deadline
    return h.deadline - rules_warning_s


def next_tick(state: FloorState, rules: FloorRules) -> float | None:
    """When the shell must send Tick next (a warning or a deadline), or None with nobody speaking."""
    return min((_due_at(h, rules.warning_before_s) for h in state.holders), default=None)


def status_of(state: FloorState, request: int) -> RequestStatus:
    """A live request's status; NONE for one that ended or never was."""
    for w in state.queue:
        if w.request == request:
            return w.status
    if any(h.request == request for h in state.holders):
        return S.GRANTED
    return S.NONE


# --- the step ---------------------------------------------------------------------------------


@dataclass
class _Work:
    """A scratch copy for one step; nothing of it escapes unless the whole step succeeds."""

    command: str
    now: float
    rules: FloorRules
    queue: list[Waiting]
    holders: list[Holding]
    next_request: int
    effects: list[Effect] = field(default_factory=list)

    def find(self, request: int) -> Waiting | Holding | None:
        for w in self.queue:
            if w.request == request:
                return w
        for h in self.holders:
            if h.request == request:
                return h
        return None

    def of_point(self, point: int) -> Waiting | Holding | None:
        for w in self.queue:
            if w.point == point:
                return w
        for h in self.holders:
            if h.point == point:
                return h
        return None

    def refuse(self, live: Waiting | Holding | None, reason: Refusal) -> FloorRefused:
        return FloorRefused(_status(live), self.command, reason)

    def move(self, live: Waiting | Holding | None, action: Action) -> RequestStatus:
        """The table's target for `action` on `live`, or the refusal naming its state."""
        target = TRANSITIONS.get((_status(live), action))
        if target is None:
            raise self.refuse(live, Refusal.NOT_ALLOWED)
        return target

    def insert(self, waiting: Waiting) -> None:
        """After the last waiting request of the same or a higher priority (RFC 8855 queueing)."""
        rank = _PRIORITY_RANK[waiting.priority]
        index = len(self.queue)
        # From the back: a NORMAL hand behind NORMAL hands is found at once.
        while index > 0 and _PRIORITY_RANK[self.queue[index - 1].priority] < rank:
            index -= 1
        self.queue.insert(index, waiting)

    def end_holder(self, h: Holding, action: Action, note: str = "") -> None:
        target = self.move(h, action)
        self.holders.remove(h)
        reason = END_REASONS[action]
        if target is S.RELEASED:
            self.effects.append(Released(h.request, h.point, reason, h.granted_at, self.now))
        else:
            assert target is S.REVOKED
            self.effects.append(Revoked(h.request, h.point, reason, note, h.granted_at, self.now))

    def end_waiting(self, w: Waiting, action: Action, note: str = "") -> None:
        target = self.move(w, action)
        self.queue.remove(w)
        reason = END_REASONS[action]
        if target is S.DENIED:
            self.effects.append(Denied(w.request, w.point, reason, note, self.now))
        else:
            assert target is S.CANCELLED
            self.effects.append(Cancelled(w.request, w.point, reason, self.now))

    def grant(
        self, live: Waiting | None, point: int, action: Action, online: Container[int]
    ) -> None:
        """Give `point` the floor: its waiting request `live`, or a new one."""
        self.move(live, action)
        if point not in online:
            raise self.refuse(live, Refusal.OFFLINE)
        full = len(self.holders) >= self.rules.max_holders
        if full and not self.rules.grant_releases_current_holder:
            raise self.refuse(live, Refusal.FLOOR_FULL)
        # The longest-serving holders give way; more than one only if max_holders was lowered.
        while len(self.holders) >= self.rules.max_holders:
            self.end_holder(self.holders[0], A.REPLACE)
        if live is None:
            request, topic = self.next_request, ""
            self.next_request += 1
        else:
            request, topic = live.request, live.topic
            self.queue.remove(live)
        deadline = self.now + self.rules.speaking_limit_s
        self.holders.append(Holding(request, point, topic, self.now, deadline))
        self.effects.append(Granted(request, point, topic, self.now, deadline))


def _status(live: Waiting | Holding | None) -> RequestStatus:
    if live is None:
        return S.NONE
    if isinstance(live, Holding):
        return S.GRANTED
    return live.status


def _one_line(text: str, limit: int, what: str) -> None:
    if len(text) > limit or any(ch in text for ch in "\r\n\x0b\x0c\x85\u2028\u2029"):
        raise ValueError(f"floor: {what} must be one line of at most {limit} characters")


def _request(w: _Work, c: Request, online: Container[int]) -> None:
    _one_line(c.topic, TOPIC_MAX, "topic")
    live = w.of_point(c.point)
    w.move(live, A.REQUEST)
    if c.point not in online:
        raise w.refuse(live, Refusal.OFFLINE)
    if not w.rules.queue_while_held and len(w.holders) >= w.rules.max_holders:
        raise w.refuse(live, Refusal.QUEUE_CLOSED)
    waiting = Waiting(w.next_request, c.point, c.topic, S.PENDING, Priority.NORMAL, w.now)
    w.next_request += 1
    w.insert(waiting)
    w.effects.append(Requested(waiting.request, c.point, c.topic, w.now))


def _cancel(w: _Work, c: Cancel) -> None:
    live = w.find(c.request)
    # Checked before the state, so a point learns nothing it may not do about another's request.
    if live is not None and live.point != c.point:
        raise w.refuse(live, Refusal.NOT_OWNER)
    w.move(live, A.CANCEL)
    assert isinstance(live, Waiting)
    w.end_waiting(live, A.CANCEL)


def _accept(w: _Work, c: Accept) -> None:
    live = w.find(c.request)
    target = w.move(live, A.ACCEPT)
    assert isinstance(live, Waiting)
    accepted = replace(live, status=target, priority=c.priority)
    if c.priority is live.priority:
        w.queue[w.queue.index(live)] = accepted
    else:
        w.queue.remove(live)
        w.insert(accepted)
    w.effects.append(Accepted(live.request, live.point, c.priority, w.now))


def _grant(w: _Work, c: Grant, online: Container[int]) -> None:
    live = w.find(c.request)
    w.move(live, A.GRANT)
    assert isinstance(live, Waiting)
    w.grant(live, live.point, A.GRANT, online)


def _call_on(w: _Work, c: CallOn, online: Container[int]) -> None:
    live = w.of_point(c.point)
    w.move(live, A.CALL_ON)
    assert not isinstance(live, Holding)
    w.grant(live, c.point, A.CALL_ON, online)


def _holder(w: _Work, point: int, action: Action) -> Holding:
    live = w.of_point(point)
    w.move(live, action)
    assert isinstance(live, Holding)
    return live


def _extend(w: _Work, c: Extend) -> None:
    if not (math.isfinite(c.seconds) and c.seconds > 0):
        raise ValueError(f"floor: extend needs a positive number of seconds, got {c.seconds!r}")
    h = _holder(w, c.point, A.EXTEND)
    deadline = h.deadline + c.seconds
    # Once per deadline: a new deadline far enough away earns a new warning, a near one does not.
    warned = h.warned and w.now >= deadline - w.rules.warning_before_s
    w.holders[w.holders.index(h)] = replace(h, deadline=deadline, warned=warned)
    w.effects.append(Extended(h.request, h.point, deadline, w.now))


def _reorder(w: _Work, c: Reorder) -> None:
    seen: set[int] = set()
    for request in c.order:
        live = w.find(request)
        w.move(live, A.REORDER)
        if request in seen:
            raise w.refuse(live, Refusal.ORDER_MISMATCH)
        seen.add(request)
    for waiting in w.queue:
        if waiting.request not in seen:
            raise w.refuse(waiting, Refusal.ORDER_MISMATCH)
    by_id = {waiting.request: waiting for waiting in w.queue}
    w.queue = [by_id[request] for request in c.order]


def _tick(w: _Work) -> None:
    for h in list(w.holders):
        if w.now >= h.deadline:
            w.end_holder(h, A.TIME_UP)
        elif not h.warned and w.now >= _due_at(h, w.rules.warning_before_s):
            w.move(h, A.WARN)
            w.holders[w.holders.index(h)] = replace(h, warned=True)
            w.effects.append(TimerWarning(h.request, h.point, h.deadline, w.now))


def _point_offline(w: _Work, c: PointOffline) -> None:
    live = w.of_point(c.point)
    w.move(live, A.DISCONNECT)
    if isinstance(live, Holding):
        w.end_holder(live, A.DISCONNECT)
    elif isinstance(live, Waiting):
        w.end_waiting(live, A.DISCONNECT)


def _session_ended(w: _Work) -> None:
    for h in list(w.holders):
        w.end_holder(h, A.END)
    for waiting in list(w.queue):
        w.end_waiting(waiting, A.END)


def _apply(w: _Work, command: Command, online: Container[int]) -> None:
    match command:
        case Request():
            _request(w, command, online)
        case Cancel():
            _cancel(w, command)
        case Release():
            w.end_holder(_holder(w, command.point, A.RELEASE), A.RELEASE)
        case Accept():
            _accept(w, command)
        case Grant():
            _grant(w, command, online)
        case CallOn():
            _call_on(w, command, online)
        case Deny():
            _one_line(command.note, NOTE_MAX, "note")
            live = w.find(command.request)
            w.move(live, A.DENY)
            assert isinstance(live, Waiting)
            w.end_waiting(live, A.DENY, command.note)
        case Revoke():
            _one_line(command.note, NOTE_MAX, "note")
            w.end_holder(_holder(w, command.point, A.REVOKE), A.REVOKE, command.note)
        case Extend():
            _extend(w, command)
        case Reorder():
            _reorder(w, command)
        case ClearQueue():
            _one_line(command.note, NOTE_MAX, "note")
            for waiting in list(w.queue):
                w.end_waiting(waiting, A.CLEAR, command.note)
        case Tick():
            _tick(w)
        case PointOffline():
            _point_offline(w, command)
        case SessionEnded():
            _session_ended(w)
        case _:
            assert_never(command)


def _check_clock(state: FloorState, now: float) -> None:
    if not math.isfinite(now):
        raise ValueError(f"floor: now must be a finite time, got {now!r}")
    if now < state.clock:
        raise ValueError(f"floor: clock went backwards ({now!r} < {state.clock!r})")


def step(
    state: FloorState,
    command: Command,
    *,
    now: float,
    rules: FloorRules,
    online: Container[int],
) -> tuple[FloorState, list[Effect]]:
    """The floor after `command` at `now`, and what the shell must do about it.

    `online` holds the invited points present in the session (a point inside its resume window
    counts as present); grants and requests need the point in it.
    Effects come in a fixed order: request transitions in the order they happened (a replaced
    holder's Released before the new Granted), then QueueChanged, then DeadlineChanged, each of
    the last two only when it changed. A refused command raises FloorRefused; a bad argument or
    clock raises ValueError; either way `state` is untouched (it is immutable).
    """
    _check_clock(state, now)
    work = _Work(
        command=command.name,
        now=now,
        rules=rules,
        queue=list(state.queue),
        holders=list(state.holders),
        next_request=state.next_request,
    )
    _apply(work, command, online)
    after = FloorState(
        queue=tuple(work.queue),
        holders=tuple(work.holders),
        next_request=work.next_request,
        clock=now,
    )
    effects = work.effects
    # Positions follow from the order, so comparing the waiting requests is comparing the entries.
    if after.queue != state.queue:
        effects.append(QueueChanged(after.queue))
    tick = next_tick(after, rules)
    if tick != next_tick(state, rules):
        effects.append(DeadlineChanged(tick))
    return after, effects


def replay(
    entries: Iterable[tuple[Command, float, FloorRules]], *, start: float = 0.0
) -> FloorState:
    """Rebuild the floor from logged commands that were accepted when they happened.

    Each entry carries its time and the rules in force then (a settings change mid-session changes
    later deadlines, not earlier ones). Presence was checked at the time, so it is not checked again
    (EVERYONE). Effects are dropped: they were acted on when the commands first ran.
    """
    state = FloorState.empty(start)
    for command, at, rules in entries:
        state, _ = step(state, command, now=at, rules=rules, online=EVERYONE)
    return state
