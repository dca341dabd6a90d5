"""Roll-call rounds, one row per invited point per round, and the points' idempotency keys.

The session log records every change for the audit; these tables are what the live side rebuilds
a round from after a restart and what the reports read. A record row is written for every invited
point when the round opens (status `waiting`), so the round's invited set and each room's headcount
bound are durable with it. A confirmation is acknowledged only after the transaction holding its
record, its key and its log event has committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, UTCDateTime, utcnow


class RollcallRound(Base):
    __tablename__ = "rollcall_rounds"
    __table_args__ = (UniqueConstraint("session_id", "number"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("conference_sessions.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    message: Mapped[str] = mapped_column(String(300), default="")
    opened_by: Mapped[str] = mapped_column(String(100))
    closed_by: Mapped[str | None] = mapped_column(String(100), default=None)


class RollcallRecord(Base):
    __tablename__ = "rollcall_records"
    __table_args__ = (UniqueConstraint("round_id", "point_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rollcall_rounds.id", ondelete="CASCADE"))
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="RESTRICT"))
    # The highest headcount this room may report in this round (its capacity, else the session's).
    headcount_limit: Mapped[int] = mapped_column(Integer)
    # waiting | present | late | absent | excused
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    headcount: Mapped[int | None] = mapped_column(Integer, default=None)
    note: Mapped[str] = mapped_column(String(200), default="")
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reason: Mapped[str] = mapped_column(String(200), default="")
    changed_by_staff: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_by: Mapped[str | None] = mapped_column(String(100), default=None)


class RollcallConfirmation(Base):
    """A point's confirmation under its client-made key: a retry gets `result` back."""

    __tablename__ = "rollcall_confirmations"
    __table_args__ = (UniqueConstraint("session_id", "point_id", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("conference_sessions.id", ondelete="CASCADE")
    )
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="RESTRICT"))
    key: Mapped[str] = mapped_column(String(64))
    round_number: Mapped[int] = mapped_column(Integer)
    headcount: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(String(200), default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
