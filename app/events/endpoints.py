"""The session event log, read by seq."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.auth.principal import STAFF, StaffPrincipal
from app.deps import Db, State, require
from app.events.schemas import EventPage, EventRead
from app.events.service import list_events
from app.sessions.service import get_session

router = APIRouter(prefix="/sessions/{session_id}", tags=["events"])
Reader = Annotated[StaffPrincipal, Depends(require(STAFF))]


@router.get("/events", response_model=EventPage)
async def read_events(
    session_id: int,
    db: Db,
    state: State,
    _: Reader,
    after_seq: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> EventPage:
    """Events with seq greater than after_seq, oldest first; page on with next_after_seq."""
    session = await get_session(db, session_id)
    rows = await list_events(
        db, session_id, after_seq=after_seq, limit=min(limit, state.settings.max_page_size)
    )
    items = [EventRead.model_validate(e) for e in rows]
    return EventPage(
        items=items,
        next_after_seq=items[-1].seq if items else after_seq,
        last_seq=session.last_seq,
    )
