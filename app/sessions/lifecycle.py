"""The session lifecycle as a pure state machine: a command in, the next status out.

`open` means points may connect and check in; `live` means the program is running. The whole machine
is the TRANSITIONS table; anything not in it raises InvalidTransition and changes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from app.errors import InvalidTransition


class SessionStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    OPEN = "open"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class LifecycleCommand(enum.StrEnum):
    SCHEDULE = "schedule"
    UNSCHEDULE = "unschedule"
    OPEN = "open"
    GO_LIVE = "go-live"
    END = "end"
    CANCEL = "cancel"


S = SessionStatus
C = LifecycleCommand

TRANSITIONS: Mapping[tuple[SessionStatus, LifecycleCommand], SessionStatus] = {
    (S.DRAFT, C.SCHEDULE): S.SCHEDULED,
    (S.SCHEDULED, C.UNSCHEDULE): S.DRAFT,
    # An ad hoc session may open straight from draft; a planned one goes through scheduled.
    (S.DRAFT, C.OPEN): S.OPEN,
    (S.SCHEDULED, C.OPEN): S.OPEN,
    (S.OPEN, C.GO_LIVE): S.LIVE,
    (S.LIVE, C.END): S.ENDED,
    # A session may close after check-in without going live (a rehearsal, a postponed dialogue).
    (S.OPEN, C.END): S.ENDED,
    (S.DRAFT, C.CANCEL): S.CANCELLED,
    (S.SCHEDULED, C.CANCEL): S.CANCELLED,
    (S.OPEN, C.CANCEL): S.CANCELLED,
}

TERMINAL: frozenset[SessionStatus] = frozenset({S.ENDED, S.CANCELLED})
# Details, settings and the invitation list may change until the session is over.
EDITABLE: frozenset[SessionStatus] = frozenset({S.DRAFT, S.SCHEDULED, S.OPEN, S.LIVE})
# Only a draft may be deleted outright; later states are cancelled so their log is kept.
DELETABLE: frozenset[SessionStatus] = frozenset({S.DRAFT})
# Points may connect and check in.
ADMITS_POINTS: frozenset[SessionStatus] = frozenset({S.OPEN, S.LIVE})


def transition(state: SessionStatus, command: LifecycleCommand) -> SessionStatus:
    """The status after `command`, or InvalidTransition naming state and command."""
    try:
        return TRANSITIONS[(state, command)]
    except KeyError:
        raise InvalidTransition("session", state.value, command.value) from None


def allowed_commands(state: SessionStatus) -> list[LifecycleCommand]:
    return [command for (source, command) in TRANSITIONS if source is state]
