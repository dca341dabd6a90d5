"""Conference sessions (named so to keep "session" free for database sessions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.sessions.lifecycle import SessionStatus
from models.base import Base, BigIntPK, TimestampMixin, UTCDateTime

__all__ = ["ConferenceSession", "SessionStatus"]


class ConferenceSession(TimestampMixin, Base):
    __tablename__ = "conference_sessions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(300))
    hall_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    scheduled_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    scheduled_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    status: Mapped[SessionStatus] = mapped_column(
        Enum(
            SessionStatus,
            native_enum=False,
            create_constraint=True,
            length=16,
            name="session_status",
            values_callable=lambda e: [m.value for m in e],
        ),
        default=SessionStatus.DRAFT,
    )
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Highest event seq written for this session; incremented in the same transaction as the event.
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
