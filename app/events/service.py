"""Appending to and reading the session event log.

The seq comes from an atomic increment of the session row in the caller's transaction, so the event
and the change it records commit together and two writers can never take the same seq.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound
from models import ConferenceSession, SessionEvent

PENDING_EVENTS = "diemcau.pending_events"


async def append_event(
    db: AsyncSession, session_id: int, type_: str, actor: str, payload: dict[str, Any]
) -> SessionEvent:
    result = await db.execute(
        update(ConferenceSession)
        .where(ConferenceSession.id == session_id)
        .values(last_seq=ConferenceSession.last_seq + 1)
        .returning(ConferenceSession.last_seq)
        .execution_options(synchronize_session=False)
    )
    seq = result.scalar_one_or_none()
    if seq is None:
        raise NotFound("session not found", details={"session_id": session_id})
    event = SessionEvent(session_id=session_id, seq=seq, type=type_, actor=actor, payload=payload)
    db.add(event)
    await db.flush()
    # Taken after commit by the request scope, which hands the events to the live side.
    db.info.setdefault(PENDING_EVENTS, []).append(event)
    return event


async def list_events(
    db: AsyncSession, session_id: int, *, after_seq: int = 0, limit: int = 100
) -> Sequence[SessionEvent]:
    rows = await db.scalars(
        select(SessionEvent)
        .where(SessionEvent.session_id == session_id, SessionEvent.seq > after_seq)
        .order_by(SessionEvent.seq)
        .limit(limit)
    )
    return rows.all()
