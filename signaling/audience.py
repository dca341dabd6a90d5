"""Who receives which session event: everyone, or staff only.

Points need what changes their screen (the session's status and details, later the floor and the
roll-call); lists of invitations and credentials are for the control desk. Unknown types default to
staff only, so a new event type never leaks to points by accident.
"""

from __future__ import annotations

import enum

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, or_


class Audience(enum.StrEnum):
    EVERYONE = "everyone"
    STAFF = "staff"


EVERYONE_PREFIXES = ("session.", "floor.", "program.")
# A point needs to know that a roll-call opened and closed; each room's answer and each operator's
# mark is for the desk (3,321 answers sent to 3,321 points would be 11 million messages).
EVERYONE_TYPES = frozenset({"rollcall.opened", "rollcall.closed"})
# A raised hand joins the queue at its end, so no other point's place in it moves: it is news for
# the desk, and the point that raised it has its place in its ack. Sent to every point, each hand
# cost 3,321 messages carrying the whole queue (found by the national rehearsal). Every other floor
# event changes a holder or moves places, and carries the whole floor, so points catch up with it.
STAFF_TYPES = frozenset({"floor.request"})


def audience_of(event_type: str) -> Audience:
    if event_type in STAFF_TYPES:
        return Audience.STAFF
    if event_type in EVERYONE_TYPES or event_type.startswith(EVERYONE_PREFIXES):
        return Audience.EVERYONE
    return Audience.STAFF


def for_points(event_type: SQLColumnExpression[str]) -> ColumnElement[bool]:
    """`audience_of(type) is EVERYONE` as SQL, so a log read for a point leaves the rest in the
    database; kept beside `audience_of`, which the reader still applies to what it gets."""
    return and_(
        or_(
            event_type.in_(sorted(EVERYONE_TYPES)),
            *(event_type.startswith(prefix) for prefix in EVERYONE_PREFIXES),
        ),
        event_type.not_in(sorted(STAFF_TYPES)),
    )
