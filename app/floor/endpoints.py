"""GET /sessions/{id}/floor and /sessions/{id}/floor/speaking-times (app/floor/speaking.py)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from app.auth.principal import STAFF, StaffPrincipal
from app.deps import Db, State, require
from app.errors import NotFound
from app.floor.speaking import speaking_turns
from models import ConferenceSession, Point
from signaling.protocol import FloorView

router = APIRouter(tags=["floor"])
Reader = Annotated[StaffPrincipal, Depends(require(STAFF))]


class FloorRead(FloorView):
    session_id: int


class SpeakingTimeRead(BaseModel):
    point_code: str
    point_name: str
    turns: int
    total_s: float
    longest_s: float
    speaking_now: bool


class SpeakingTimesRead(BaseModel):
    session_id: int
    points: list[SpeakingTimeRead]


async def _session(db: Db, session_id: int) -> ConferenceSession:
    session = await db.get(ConferenceSession, session_id)
    if session is None:
        raise NotFound("session not found", details={"session_id": session_id})
    return session


@router.get("/sessions/{session_id}/floor", response_model=FloorRead)
async def current_floor(session_id: int, state: State, db: Db, _: Reader) -> FloorRead:
    await _session(db, session_id)
    room = await state.signaling.room(session_id)
    desk = state.signaling.floors[room.session_id]
    snapshot = desk.snapshot()
    return FloorRead(
        session_id=session_id,
        **FloorView.model_validate(snapshot).model_dump(),
    )


@router.get("/sessions/{session_id}/floor/speaking-times", response_model=SpeakingTimesRead)
async def speaking_times(session_id: int, db: Db, _: Reader) -> SpeakingTimesRead:
    await _session(db, session_id)
    turns = await speaking_turns(db, session_id, now=time.time())
    names: dict[str, str] = {}
    if turns:
        found = await db.execute(select(Point.code, Point.name).where(Point.code.in_(list(turns))))
        names = {row.code: row.name for row in found}
    return SpeakingTimesRead(
        session_id=session_id,
        points=[
            SpeakingTimeRead(
                point_code=code,
                point_name=names.get(code, ""),
                turns=len(record.spans),
                total_s=round(record.total_s, 3),
                longest_s=round(max(record.spans), 3),
                speaking_now=record.speaking_now,
            )
            for code, record in sorted(turns.items())
        ],
    )
