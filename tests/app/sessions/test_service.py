"""The sessions service on SQLite and PostgreSQL: every change is logged, every refusal changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from app.sessions import service
from app.sessions.lifecycle import TRANSITIONS, LifecycleCommand, SessionStatus
from app.sessions.schemas import SessionCreate, SessionSettings, SessionSettingsPatch, SessionUpdate
from models import ConferenceSession, Invitation, Point, SessionEvent

Factory = async_sessionmaker[AsyncSession]
ACTOR = "account:tester"
HANOI = timezone(timedelta(hours=7))
START = datetime(2026, 12, 15, 8, 0, tzinfo=HANOI)
C = LifecycleCommand
S = SessionStatus

# How to reach each state from a draft that has a scheduled start.
PATHS: dict[SessionStatus, list[LifecycleCommand]] = {
    S.DRAFT: [],
    S.SCHEDULED: [C.SCHEDULE],
    S.OPEN: [C.OPEN],
    S.LIVE: [C.OPEN, C.GO_LIVE],
    S.ENDED: [C.OPEN, C.END],
    S.CANCELLED: [C.CANCEL],
}


async def make_session(db_factory: Factory, state: SessionStatus = S.DRAFT, **fields: Any) -> int:
    data = SessionCreate(title=fields.pop("title", "Đối thoại"), **fields)
    async with db_factory() as db:
        session = await service.create_session(db, data, actor=ACTOR, account_id=None)
        for command in PATHS[state]:
            await service.apply_command(db, session.id, command, actor=ACTOR)
        await db.commit()
        return session.id


async def read_back(db_factory: Factory, session_id: int) -> ConferenceSession | None:
    async with db_factory() as db:
        return await db.get(ConferenceSession, session_id)


async def events_of(db_factory: Factory, session_id: int) -> list[SessionEvent]:
    async with db_factory() as db:
        rows = await db.scalars(
            select(SessionEvent)
            .where(SessionEvent.session_id == session_id)
            .order_by(SessionEvent.seq)
        )
        return list(rows)


async def test_create_is_a_draft_with_default_settings_and_one_event(db_factory: Factory) -> None:
    async with db_factory() as db:
        session = await service.create_session(
            db,
            SessionCreate(title="  Hội nghị đối thoại  ", hall_name="Hội trường Thành ủy"),
            actor=ACTOR,
            account_id=None,
        )
        await db.commit()
    stored = await read_back(db_factory, session.id)
    assert stored is not None
    assert stored.title == "Hội nghị đối thoại"
    assert stored.hall_name == "Hội trường Thành ủy"
    assert stored.description == ""
    assert stored.status is S.DRAFT
    assert stored.settings == SessionSettings().model_dump()
    assert stored.last_seq == 1
    assert stored.scheduled_start is None
    assert stored.created_at.tzinfo is not None
    events = await events_of(db_factory, session.id)
    assert [(e.seq, e.type, e.actor) for e in events] == [(1, "session.created", ACTOR)]
    assert events[0].payload == {"title": "Hội nghị đối thoại", "status": "draft"}


async def test_update_changes_only_given_fields(db_factory: Factory) -> None:
    session_id = await make_session(
        db_factory, hall_name="Hội trường A", description="mô tả", scheduled_start=START
    )
    async with db_factory() as db:
        await service.update_session(
            db, session_id, SessionUpdate(title="Tên mới", hall_name="Hội trường B"), actor=ACTOR
        )
        await db.commit()
    stored = await read_back(db_factory, session_id)
    assert stored is not None
    assert (stored.title, stored.hall_name, stored.description) == (
        "Tên mới",
        "Hội trường B",
        "mô tả",
    )
    assert stored.scheduled_start == START
    assert stored.settings == SessionSettings().model_dump()
    assert stored.last_seq == 2
    events = await events_of(db_factory, session_id)
    assert [e.type for e in events] == ["session.created", "session.updated"]
    assert events[1].seq == 2
    assert events[1].payload == {"changes": {"title": "Tên mới", "hall_name": "Hội trường B"}}


async def test_update_logs_only_what_really_changed(db_factory: Factory) -> None:
    session_id = await make_session(db_factory, title="Giữ nguyên", scheduled_start=START)
    async with db_factory() as db:
        await service.update_session(
            db,
            session_id,
            SessionUpdate(title="Giữ nguyên", description="mới"),
            actor=ACTOR,
        )
        await db.commit()
    events = await events_of(db_factory, session_id)
    assert events[-1].payload == {"changes": {"description": "mới"}}


async def test_update_with_nothing_changed_logs_nothing(db_factory: Factory) -> None:
    session_id = await make_session(db_factory, title="Giữ nguyên", scheduled_start=START)
    before = await read_back(db_factory, session_id)
    assert before is not None
    same_instant_in_utc = START.astimezone(UTC)
    for update in (
        SessionUpdate(),
        SessionUpdate(title="Giữ nguyên"),
        SessionUpdate(scheduled_start=same_instant_in_utc),
        SessionUpdate(settings=SessionSettingsPatch(speaking_time_limit_s=180)),
        SessionUpdate(settings=SessionSettingsPatch()),
    ):
        async with db_factory() as db:
            await service.update_session(db, session_id, update, actor=ACTOR)
            await db.commit()
    after = await read_back(db_factory, session_id)
    assert after is not None
    assert after.last_seq == 1
    assert after.updated_at == before.updated_at
    assert [e.type for e in await events_of(db_factory, session_id)] == ["session.created"]


async def test_settings_patch_merges(db_factory: Factory) -> None:
    session_id = await make_session(
        db_factory, settings=SessionSettings(speaking_time_limit_s=300, max_floor_holders=2)
    )
    async with db_factory() as db:
        await service.update_session(
            db,
            session_id,
            SessionUpdate(
                settings=SessionSettingsPatch(speaking_time_warning_s=60, queue_while_held=False)
            ),
            actor=ACTOR,
        )
        await db.commit()
    stored = await read_back(db_factory, session_id)
    assert stored is not None
    expected = SessionSettings(
        speaking_time_limit_s=300,
        max_floor_holders=2,
        speaking_time_warning_s=60,
        queue_while_held=False,
    ).model_dump()
    assert stored.settings == expected
    events = await events_of(db_factory, session_id)
    assert events[-1].payload == {
        "changes": {"settings": {"speaking_time_warning_s": 60, "queue_while_held": False}}
    }


@pytest.mark.parametrize(
    "patch",
    [
        SessionSettingsPatch(speaking_time_warning_s=180),  # equal to the default limit
        SessionSettingsPatch(speaking_time_limit_s=30),  # below the default warning
        SessionSettingsPatch(speaking_time_limit_s=60, speaking_time_warning_s=90),
    ],
)
async def test_settings_patch_is_validated_as_a_whole(
    db_factory: Factory, patch: SessionSettingsPatch
) -> None:
    session_id = await make_session(db_factory)
    async with db_factory() as db:
        with pytest.raises(ValidationFailed) as caught:
            await service.update_session(
                db, session_id, SessionUpdate(title="đổi tên", settings=patch), actor=ACTOR
            )
        await db.rollback()
    assert caught.value.code == "validation_error"
    assert "speaking_time_warning_s" in caught.value.details["reason"]
    stored = await read_back(db_factory, session_id)
    assert stored is not None
    assert stored.title == "Đối thoại"
    assert stored.settings == SessionSettings().model_dump()
    assert stored.last_seq == 1
    assert len(await events_of(db_factory, session_id)) == 1


async def test_update_refuses_a_window_that_ends_before_it_starts(db_factory: Factory) -> None:
    session_id = await make_session(db_factory, scheduled_start=START)
    async with db_factory() as db:
        with pytest.raises(ValidationFailed):
            await service.update_session(
                db,
                session_id,
                SessionUpdate(scheduled_end=START - timedelta(minutes=1)),
                actor=ACTOR,
            )
        await db.rollback()
    stored = await read_back(db_factory, session_id)
    assert stored is not None
    assert stored.scheduled_end is None
    assert stored.last_seq == 1


@pytest.mark.parametrize("state", [S.SCHEDULED, S.OPEN, S.LIVE])
async def test_update_allowed_until_the_session_is_over(
    db_factory: Factory, state: SessionStatus
) -> None:
    session_id = await make_session(db_factory, state, scheduled_start=START)
    async with db_factory() as db:
        session = await service.update_session(
            db, session_id, SessionUpdate(hall_name="Hội trường mới"), actor=ACTOR
        )
        await db.commit()
    assert session.status is state
    stored = await read_back(db_factory, session_id)
    assert stored is not None
    assert stored.hall_name == "Hội trường mới"


@pytest.mark.parametrize("state", [S.ENDED, S.CANCELLED])
async def test_update_refused_once_over(db_factory: Factory, state: SessionStatus) -> None:
    session_id = await make_session(db_factory, state)
    before = await read_back(db_factory, session_id)
    assert before is not None
    async with db_factory() as db:
        with pytest.raises(InvalidTransition) as caught:
            await service.update_session(
                db, session_id, SessionUpdate(title="quá muộn"), actor=ACTOR
            )
        await db.rollback()
    assert (caught.value.state, caught.value.command) == (state.value, "edit")
    after = await read_back(db_factory, session_id)
    assert after is not None
    assert (after.title, after.last_seq) == (before.title, before.last_seq)


async def test_apply_command_moves_status_and_logs_it(db_factory: Factory) -> None:
    session_id = await make_session(db_factory, scheduled_start=START)
    steps = [
        (C.SCHEDULE, S.DRAFT, S.SCHEDULED),
        (C.UNSCHEDULE, S.SCHEDULED, S.DRAFT),
        (C.SCHEDULE, S.DRAFT, S.SCHEDULED),
        (C.OPEN, S.SCHEDULED, S.OPEN),
        (C.GO_LIVE, S.OPEN, S.LIVE),
        (C.END, S.LIVE, S.ENDED),
    ]
    for command, _, target in steps:
        async with db_factory() as db:
            session = await service.apply_command(db, session_id, command, actor=ACTOR)
            assert session.status is target
            await db.commit()
        stored = await read_back(db_factory, session_id)
        assert stored is not None
        assert stored.status is target
    events = await events_of(db_factory, session_id)
    assert [e.seq for e in events] == list(range(1, len(steps) + 2))
    assert [e.payload for e in events[1:]] == [
        {"from": old.value, "to": new.value, "command": command.value}
        for command, old, new in steps
    ]
    assert {e.type for e in events[1:]} == {"session.status_changed"}


@pytest.mark.parametrize("state", list(SessionStatus))
async def test_invalid_command_changes_nothing(db_factory: Factory, state: SessionStatus) -> None:
    session_id = await make_session(db_factory, state, scheduled_start=START)
    before = await read_back(db_factory, session_id)
    assert before is not None
    invalid = [c for c in LifecycleCommand if (state, c) not in TRANSITIONS]
    assert invalid
    for command in invalid:
        async with db_factory() as db:
            with pytest.raises(InvalidTransition) as caught:
                await service.apply_command(db, session_id, command, actor=ACTOR)
            await db.rollback()
        assert caught.value.details == {
            "machine": "session",
            "state": state.value,
            "command": command.value,
        }
    after = await read_back(db_factory, session_id)
    assert after is not None
    assert (after.status, after.last_seq) == (state, before.last_seq)
    assert len(await events_of(db_factory, session_id)) == before.last_seq


async def test_schedule_needs_a_scheduled_start(db_factory: Factory) -> None:
    session_id = await make_session(db_factory)
    async with db_factory() as db:
        with pytest.raises(Conflict) as caught:
            await service.apply_command(db, session_id, C.SCHEDULE, actor=ACTOR)
        await db.rollback()
    assert not isinstance(caught.value, InvalidTransition)
    assert caught.value.code == "conflict"
    assert caught.value.details == {"field": "scheduled_start"}
    stored = await read_back(db_factory, session_id)
    assert stored is not None
    assert (stored.status, stored.last_seq) == (S.DRAFT, 1)

    async with db_factory() as db:
        await service.update_session(
            db, session_id, SessionUpdate(scheduled_start=START), actor=ACTOR
        )
        session = await service.apply_command(db, session_id, C.SCHEDULE, actor=ACTOR)
        await db.commit()
    assert session.status is S.SCHEDULED
    assert session.last_seq == 3


async def test_unknown_session(db_factory: Factory) -> None:
    async with db_factory() as db:
        with pytest.raises(NotFound):
            await service.get_session(db, 999_999)
        with pytest.raises(NotFound):
            await service.apply_command(db, 999_999, C.OPEN, actor=ACTOR)
        with pytest.raises(NotFound):
            await service.update_session(db, 999_999, SessionUpdate(title="x"), actor=ACTOR)
        with pytest.raises(NotFound):
            await service.delete_session(db, 999_999)
        await db.rollback()


@pytest.mark.parametrize("state", [s for s in SessionStatus if s is not S.DRAFT])
async def test_delete_only_in_draft(db_factory: Factory, state: SessionStatus) -> None:
    session_id = await make_session(db_factory, state, scheduled_start=START)
    async with db_factory() as db:
        with pytest.raises(InvalidTransition) as caught:
            await service.delete_session(db, session_id)
        await db.rollback()
    assert (caught.value.state, caught.value.command) == (state.value, "delete")
    stored = await read_back(db_factory, session_id)
    assert stored is not None
    assert stored.status is state
    assert len(await events_of(db_factory, session_id)) == stored.last_seq


async def test_delete_cascades_invitations_and_events(db_factory: Factory) -> None:
    doomed = await make_session(db_factory, title="Xoá")
    kept = await make_session(db_factory, title="Giữ")
    async with db_factory() as db:
        points = [
            Point(code=f"P{i:03d}", name=f"Phường {i}", search_name=f"phuong {i}") for i in range(3)
        ]
        db.add_all(points)
        await db.flush()
        db.add_all(Invitation(session_id=doomed, point_id=p.id) for p in points)
        db.add(Invitation(session_id=kept, point_id=points[0].id))
        await service.update_session(db, doomed, SessionUpdate(description="x"), actor=ACTOR)
        await db.commit()

    async def counts(session_id: int) -> tuple[int, int]:
        async with db_factory() as db:
            invitations = await db.scalar(
                select(func.count())
                .select_from(Invitation)
                .where(Invitation.session_id == session_id)
            )
            events = await db.scalar(
                select(func.count())
                .select_from(SessionEvent)
                .where(SessionEvent.session_id == session_id)
            )
            return int(invitations or 0), int(events or 0)

    assert await counts(doomed) == (3, 2)
    assert await counts(kept) == (1, 1)
    async with db_factory() as db:
        await service.delete_session(db, doomed)
        await db.commit()
    assert await read_back(db_factory, doomed) is None
    assert await counts(doomed) == (0, 0)
    assert await counts(kept) == (1, 1)
    async with db_factory() as db:
        assert await db.scalar(select(func.count()).select_from(Point)) == 3


async def test_list_sessions_filters_and_counts(db_factory: Factory) -> None:
    ids = [await make_session(db_factory, title=f"Phiên {i}") for i in range(4)]
    async with db_factory() as db:
        await service.apply_command(db, ids[1], C.OPEN, actor=ACTOR)
        await service.apply_command(db, ids[3], C.OPEN, actor=ACTOR)
        await db.commit()
    async with db_factory() as db:
        rows, total = await service.list_sessions(db, status=None, limit=100, offset=0)
        assert total == 4
        assert [r.id for r in rows] == sorted(ids, reverse=True)
        rows, total = await service.list_sessions(db, status=S.OPEN, limit=100, offset=0)
        assert (total, [r.id for r in rows]) == (2, [ids[3], ids[1]])
        rows, total = await service.list_sessions(db, status=S.DRAFT, limit=1, offset=1)
        assert (total, [r.id for r in rows]) == (2, [ids[0]])
        rows, total = await service.list_sessions(db, status=S.LIVE, limit=100, offset=0)
        assert (total, list(rows)) == (0, [])


async def test_settings_event_lists_only_settings_that_changed(db_factory: Factory) -> None:
    session_id = await make_session(db_factory, settings=SessionSettings(max_floor_holders=2))
    async with db_factory() as db:
        await service.update_session(
            db,
            session_id,
            SessionUpdate(
                settings=SessionSettingsPatch(max_floor_holders=2, queue_while_held=False)
            ),
            actor=ACTOR,
        )
        await db.commit()
    events = await events_of(db_factory, session_id)
    assert events[-1].payload == {"changes": {"settings": {"queue_while_held": False}}}


async def test_a_scheduled_session_keeps_its_start(db_factory: Factory) -> None:
    session_id = await make_session(db_factory, S.SCHEDULED, scheduled_start=START)
    async with db_factory() as db:
        with pytest.raises(Conflict) as raised:
            await service.update_session(
                db, session_id, SessionUpdate(scheduled_start=None), actor=ACTOR
            )
        assert raised.value.details == {"field": "scheduled_start"}
        await db.rollback()
    stored = await read_back(db_factory, session_id)
    assert stored is not None
    assert stored.scheduled_start == START
    assert stored.status is S.SCHEDULED
