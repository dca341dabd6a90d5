"""What an attendance report holds, as plain data: built from the database by
app/attendance/build.py, rendered to CSV, XLSX and HTML by app/attendance/render.py.

Times are aware datetimes in UTC; renderers show them in the session's local time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RoundInfo:
    number: int  # 1, 2, … in the order the rounds were opened
    opened_at: datetime
    deadline: datetime
    closed_at: datetime | None  # None: still open (its unanswered points show as "waiting")
    message: str


@dataclass(frozen=True)
class RoundCell:
    """One point in one round."""

    status: str  # "present", "late", "absent", "excused", or "waiting" (open round, no answer yet)
    headcount: int | None
    confirmed_at: datetime | None  # the point's own answer, if it gave one
    note: str  # the point's note
    reason: str  # the operator's reason for an excuse or a correction ("" if none)


@dataclass(frozen=True)
class Interval:
    connected_at: datetime
    disconnected_at: datetime | None  # None: still connected when the report was made


@dataclass(frozen=True)
class PointRow:
    code: str
    name: str
    district_code: str | None
    district_name: str | None
    province_code: str | None
    province_name: str | None
    # One cell per round of the report, in round order; None where the point was not invited
    # to that round.
    rounds: tuple[RoundCell | None, ...]
    # Connected intervals, merged across reconnects (overlapping or touching intervals joined).
    intervals: tuple[Interval, ...]
    first_join: datetime | None
    last_leave: datetime | None  # None if never joined or still connected
    connected_s: float
    speaking_turns: int
    speaking_s: float


@dataclass(frozen=True)
class AttendanceReport:
    session_id: int
    title: str
    hall_name: str
    scheduled_start: datetime | None
    generated_at: datetime
    timezone: str  # IANA name used to show times, e.g. "Asia/Ho_Chi_Minh"
    rounds: tuple[RoundInfo, ...]
    points: tuple[PointRow, ...]  # every invited point, in point-code order
