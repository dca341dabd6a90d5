"""An attendance report from what is committed: rounds and records, presence intervals, the floor log.

Read from the database, not from the live desk, so a report says exactly what is stored (an
acknowledged confirmation is stored; one that was not acknowledged may be missing) and works for a
session that ended long ago, after any number of restarts.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.attendance.model import AttendanceReport, Interval, PointRow, RoundCell, RoundInfo
from app.errors import NotFound
from app.floor.speaking import speaking_turns
from models import (
    ConferenceSession,
    Invitation,
    Point,
    PresenceInterval,
    RollcallRecord,
    RollcallRound,
)

REPORT_TIMEZONE = "Asia/Ho_Chi_Minh"


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def merge_intervals(spans: list[tuple[datetime, datetime | None]], now: datetime) -> list[Interval]:
    """Overlapping or touching intervals joined (a reconnect inside another's span is one stay);
    an open interval runs to `now` for merging and stays open in the result."""
    merged: list[tuple[datetime, datetime, bool]] = []
    for start, end in sorted(spans, key=lambda s: s[0]):
        stop, open_ = (end, False) if end is not None else (now, True)
        stop = max(stop, start)
        if merged and start <= merged[-1][1]:
            first, last, was_open = merged[-1]
            if stop > last:
                merged[-1] = (first, stop, open_)
            else:
                merged[-1] = (first, last, was_open or open_)
        else:
            merged.append((start, stop, open_))
    return [Interval(start, None if open_ else stop) for start, stop, open_ in merged]


async def build_report(
    db: AsyncSession, session_id: int, *, now: float | None = None
) -> AttendanceReport:
    at = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    session = await db.get(ConferenceSession, session_id)
    if session is None:
        raise NotFound("session not found", details={"session_id": session_id})

    rounds = list(
        await db.scalars(
            select(RollcallRound)
            .where(RollcallRound.session_id == session_id)
            .order_by(RollcallRound.number)
        )
    )
    round_index = {r.id: i for i, r in enumerate(rounds)}
    cells: dict[int, list[RoundCell | None]] = defaultdict(lambda: [None] * len(rounds))
    if rounds:
        for rec in await db.scalars(
            select(RollcallRecord).where(RollcallRecord.round_id.in_(list(round_index)))
        ):
            cells[rec.point_id][round_index[rec.round_id]] = RoundCell(
                status=rec.status,
                headcount=rec.headcount,
                confirmed_at=_aware(rec.confirmed_at),
                note=rec.note,
                reason=rec.reason,
            )

    spans: dict[int, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for row in await db.scalars(
        select(PresenceInterval).where(PresenceInterval.session_id == session_id)
    ):
        connected = _aware(row.connected_at)
        assert connected is not None
        spans[row.point_id].append((connected, _aware(row.disconnected_at)))

    invited_ids = select(Invitation.point_id).where(
        Invitation.session_id == session_id, Invitation.revoked.is_(False)
    )
    # Every invited point, and any point that has a record or a stay though its invitation was
    # revoked since: the report keeps what happened.
    conditions = [Point.id.in_(invited_ids)]
    extra = set(cells) | set(spans)
    if extra:
        conditions.append(Point.id.in_(list(extra)))
    points = list(await db.scalars(select(Point).where(or_(*conditions)).order_by(Point.code)))
    speaking = await speaking_turns(db, session_id, now=at.timestamp())

    rows: list[PointRow] = []
    for point in points:
        merged = merge_intervals(spans.get(point.id, []), at)
        connected_s = sum(
            ((i.disconnected_at or at) - i.connected_at).total_seconds() for i in merged
        )
        turns = speaking.get(point.code)
        rows.append(
            PointRow(
                code=point.code,
                name=point.name,
                district_code=point.district_code,
                district_name=point.district_name,
                province_code=point.province_code,
                province_name=point.province_name,
                rounds=tuple(cells[point.id]) if point.id in cells else (None,) * len(rounds),
                intervals=tuple(merged),
                first_join=merged[0].connected_at if merged else None,
                last_leave=merged[-1].disconnected_at if merged else None,
                connected_s=connected_s,
                speaking_turns=len(turns.spans) if turns is not None else 0,
                speaking_s=turns.total_s if turns is not None else 0.0,
            )
        )
    return AttendanceReport(
        session_id=session.id,
        title=session.title,
        hall_name=session.hall_name or "",
        scheduled_start=_aware(session.scheduled_start),
        generated_at=at,
        timezone=REPORT_TIMEZONE,
        rounds=tuple(
            RoundInfo(
                number=r.number,
                opened_at=_aware(r.opened_at) or at,
                deadline=_aware(r.deadline) or at,
                closed_at=_aware(r.closed_at),
                message=r.message,
            )
            for r in rounds
        ),
        points=tuple(rows),
    )
