"""Invitations: which points take part in a session, and their join credential (hash only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, TimestampMixin, UTCDateTime


class Invitation(TimestampMixin, Base):
    __tablename__ = "invitations"
    __table_args__ = (UniqueConstraint("session_id", "point_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("conference_sessions.id", ondelete="CASCADE"), index=True
    )
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="RESTRICT"), index=True)
    expected_attendees: Mapped[int | None] = mapped_column(Integer, default=None)
    # SHA-256 of the join credential; the credential itself is shown once and never stored.
    credential_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    credential_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
