"""Connected intervals of a point in a session: one row per join, closed at its leave.

Roll-call reports (first join, last leave, total connected time) are computed from these rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, UTCDateTime


class PresenceInterval(Base):
    __tablename__ = "presence_intervals"
    __table_args__ = (Index(None, "session_id", "point_id", "connected_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("conference_sessions.id", ondelete="CASCADE")
    )
    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="RESTRICT"))
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    close_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    client: Mapped[str | None] = mapped_column(String(300), default=None)
