"""Sessions: create, edit, list, and move through the lifecycle, each change logged as an event."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from app.events.service import append_event
from app.sessions import lifecycle
from app.sessions.lifecycle import LifecycleCommand, SessionStatus
from app.sessions.schemas import SessionCreate, SessionSettings, SessionUpdate
from models import ConferenceSession, Invitation


async def get_session(
    db: AsyncSession, session_id: int, *, for_update: bool = False
) -> ConferenceSession:
    statement = select(ConferenceSession).where(ConferenceSession.id == session_id)
    if for_update:
        statement = statement.with_for_update()
    found = await db.scalar(statement)
    if found is None:
        raise NotFound("session not found", details={"session_id": session_id})
    return found


async def count_invited(db: AsyncSession, session_ids: Sequence[int]) -> dict[int, int]:
    if not session_ids:
        return {}
    rows = await db.execute(
        select(Invitation.session_id, func.count())
        .where(Invitation.session_id.in_(session_ids), Invitation.revoked.is_(False))
        .group_by(Invitation.session_id)
    )
    return {session_id: count for session_id, count in rows}


async def list_sessions(
    db: AsyncSession, *, status: SessionStatus | None, limit: int, offset: int
) -> tuple[Sequence[ConferenceSession], int]:
    statement = select(ConferenceSession)
    counter = select(func.count()).select_from(ConferenceSession)
    if status is not None:
        statement = statement.where(ConferenceSession.status == status)
        counter = counter.where(ConferenceSession.status == status)
    rows = await db.scalars(
        statement.order_by(ConferenceSession.id.desc()).limit(limit).offset(offset)
    )
    total = await db.scalar(counter)
    return rows.all(), int(total or 0)


async def create_session(
    db: AsyncSession, data: SessionCreate, *, actor: str, account_id: int | None
) -> ConferenceSession:
    session = ConferenceSession(
        title=data.title,
        hall_name=data.hall_name,
        description=data.description,
        scheduled_start=data.scheduled_start,
        scheduled_end=data.scheduled_end,
        status=SessionStatus.DRAFT,
        settings=data.settings.model_dump(),
        last_seq=0,
        created_by=account_id,
    )
    db.add(session)
    await db.flush()
    await append_event(
        db, session.id, "session.created", actor, {"title": session.title, "status": "draft"}
    )
    await db.refresh(session)
    return session


def _require_editable(session: ConferenceSession) -> None:
    if session.status not in lifecycle.EDITABLE:
        raise InvalidTransition("session", session.status.value, "edit")


async def update_session(
    db: AsyncSession, session_id: int, data: SessionUpdate, *, actor: str
) -> ConferenceSession:
    session = await get_session(db, session_id, for_update=True)
    _require_editable(session)
    changes: dict[str, Any] = {}
    for field in ("title", "hall_name", "description", "scheduled_start", "scheduled_end"):
        if field in data.model_fields_set:
            value = getattr(data, field)
            if field == "title" and value is None:
                raise ValidationFailed("title cannot be empty", details={"field": "title"})
            if field in ("hall_name", "description") and value is None:
                value = ""
            if getattr(session, field) != value:
                setattr(session, field, value)
                changes[field] = value.isoformat() if hasattr(value, "isoformat") else value
    start, end = session.scheduled_start, session.scheduled_end
    if start is None and session.status is SessionStatus.SCHEDULED:
        raise Conflict(
            "a scheduled session needs a scheduled start; unschedule it first",
            details={"field": "scheduled_start"},
        )
    if start is not None and end is not None and end <= start:
        raise ValidationFailed(
            "scheduled_end must be after scheduled_start", details={"field": "scheduled_end"}
        )
    if data.settings is not None:
        patch = data.settings.model_dump(exclude_unset=True, exclude_none=True)
        merged = {**SessionSettings.model_validate(session.settings).model_dump(), **patch}
        try:
            validated = SessionSettings.model_validate(merged).model_dump()
        except ValueError as exc:
            raise ValidationFailed(
                "invalid session settings", details={"reason": str(exc)[:500]}
            ) from None
        if validated != session.settings:
            changes["settings"] = {
                key: value for key, value in validated.items() if session.settings.get(key) != value
            }
            session.settings = validated
    if changes:
        await append_event(db, session.id, "session.updated", actor, {"changes": changes})
        await db.refresh(session)
    return session


async def apply_command(
    db: AsyncSession, session_id: int, command: LifecycleCommand, *, actor: str
) -> ConferenceSession:
    session = await get_session(db, session_id, for_update=True)
    new_status = lifecycle.transition(session.status, command)
    if command is LifecycleCommand.SCHEDULE and session.scheduled_start is None:
        raise Conflict(
            "a session needs a scheduled start before it can be scheduled",
            details={"field": "scheduled_start"},
        )
    old_status = session.status
    session.status = new_status
    await append_event(
        db,
        session.id,
        "session.status_changed",
        actor,
        {"from": old_status.value, "to": new_status.value, "command": command.value},
    )
    await db.refresh(session)
    return session


async def delete_session(db: AsyncSession, session_id: int) -> None:
    session = await get_session(db, session_id, for_update=True)
    if session.status not in lifecycle.DELETABLE:
        raise InvalidTransition("session", session.status.value, "delete")
    await db.delete(session)
    await db.flush()
