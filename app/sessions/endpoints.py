"""Sessions over HTTP: CRUD and lifecycle actions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.auth.principal import OPERATORS, STAFF, StaffPrincipal
from app.deps import Db, Page, require
from app.sessions import lifecycle, service
from app.sessions.lifecycle import LifecycleCommand, SessionStatus
from app.sessions.schemas import (
    SessionCreate,
    SessionPage,
    SessionRead,
    SessionSettings,
    SessionUpdate,
)
from models import ConferenceSession

router = APIRouter(prefix="/sessions", tags=["sessions"])
Reader = Annotated[StaffPrincipal, Depends(require(STAFF))]
Operator = Annotated[StaffPrincipal, Depends(require(OPERATORS))]


def to_read(session: ConferenceSession, invited: int) -> SessionRead:
    return SessionRead(
        id=session.id,
        title=session.title,
        hall_name=session.hall_name,
        description=session.description,
        scheduled_start=session.scheduled_start,
        scheduled_end=session.scheduled_end,
        status=session.status,
        settings=SessionSettings.model_validate(session.settings),
        last_seq=session.last_seq,
        created_at=session.created_at,
        updated_at=session.updated_at,
        allowed_actions=lifecycle.allowed_commands(session.status),
        invited_points=invited,
    )


async def _read_one(db: Db, session: ConferenceSession) -> SessionRead:
    counts = await service.count_invited(db, [session.id])
    return to_read(session, counts.get(session.id, 0))


@router.get("", response_model=SessionPage)
async def list_sessions(
    db: Db, _: Reader, page: Page, status: SessionStatus | None = None
) -> SessionPage:
    limit, offset = page
    rows, total = await service.list_sessions(db, status=status, limit=limit, offset=offset)
    counts = await service.count_invited(db, [s.id for s in rows])
    return SessionPage(items=[to_read(s, counts.get(s.id, 0)) for s in rows], total=total)


@router.post("", response_model=SessionRead, status_code=201)
async def create_session(body: SessionCreate, db: Db, principal: Operator) -> SessionRead:
    session = await service.create_session(
        db, body, actor=principal.actor, account_id=principal.account_id
    )
    return to_read(session, 0)


@router.get("/{session_id}", response_model=SessionRead)
async def get_session(session_id: int, db: Db, _: Reader) -> SessionRead:
    return await _read_one(db, await service.get_session(db, session_id))


@router.patch("/{session_id}", response_model=SessionRead)
async def update_session(
    session_id: int, body: SessionUpdate, db: Db, principal: Operator
) -> SessionRead:
    session = await service.update_session(db, session_id, body, actor=principal.actor)
    return await _read_one(db, session)


@router.delete("/{session_id}", status_code=204)
async def delete_session(session_id: int, db: Db, _: Operator) -> None:
    await service.delete_session(db, session_id)


@router.post("/{session_id}/actions/{command}", response_model=SessionRead)
async def apply_command(
    session_id: int, command: LifecycleCommand, db: Db, principal: Operator
) -> SessionRead:
    """Move the session through its lifecycle; an impossible step is a 409 that changes nothing."""
    session = await service.apply_command(db, session_id, command, actor=principal.actor)
    return await _read_one(db, session)
