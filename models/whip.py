"""WHIP ingest tokens: who may publish a session's hall program from an encoder (OBS, a WHIP box).

A table of its own rather than a column on the session: a session may need more than one encoder
credential at once (a main and a backup encoder, or a new token minted before the old one is
revoked, so the program never stops), each revocable on its own and listed with when it was last
used. Only the SHA-256 of a token is stored; the token itself is shown once, when it is minted.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, UTCDateTime, utcnow


class WhipToken(Base):
    __tablename__ = "whip_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("conference_sessions.id", ondelete="CASCADE"), index=True
    )
    # What the operator calls it ("OBS desk 1"), so a list without secrets is still readable.
    label: Mapped[str] = mapped_column(String(100), default="")
    # SHA-256 (hex) of the bearer token; unique so that a request finds its token by index.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The event-log actor that minted it (`account:NAME`), kept when the account is deleted.
    created_by: Mapped[str] = mapped_column(String(100))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Set once, never cleared: a revoked token is kept for the record and never works again.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
