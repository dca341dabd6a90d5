"""The session event log: per-session gap-free seqs, written atomically with the change, over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import NotFound
from app.events.service import append_event, list_events
from app.sessions import service
from app.sessions.lifecycle import LifecycleCommand, SessionStatus
from app.sessions.schemas import SessionCreate, SessionUpdate
from app.settings import Settings
from models import ConferenceSession, Role, SessionEvent
from models.engine import create_engine, session_factory
from tests.conftest import create_staff, login

Factory = async_sessionmaker[AsyncSession]
ACTOR = "account:tester"
WRITERS = 20


async def new_session(db_factory: Factory, title: str = "Đối thoại") -> int:
    async with db_factory() as db:
        session = await service.create_session(
            db, SessionCreate(title=title), actor=ACTOR, account_id=None
        )
        await db.commit()
        return session.id


async def bare_session(db_factory: Factory) -> int:
    """A session row with an empty log (no `session.created`), so appends count from 1."""
    async with db_factory() as db:
        session = ConferenceSession(
            title="Trống", status=SessionStatus.DRAFT, settings={}, last_seq=0
        )
        db.add(session)
        await db.commit()
        return session.id


async def seqs_of(db_factory: Factory, session_id: int) -> list[int]:
    async with db_factory() as db:
        rows = await db.scalars(
            select(SessionEvent.seq)
            .where(SessionEvent.session_id == session_id)
            .order_by(SessionEvent.id)
        )
        return list(rows)


async def last_seq_of(db_factory: Factory, session_id: int) -> int:
    async with db_factory() as db:
        value = await db.scalar(
            select(ConferenceSession.last_seq).where(ConferenceSession.id == session_id)
        )
        assert value is not None
        return value


async def test_seq_counts_from_one_per_session(db_factory: Factory) -> None:
    first = await new_session(db_factory, "Một")
    second = await new_session(db_factory, "Hai")
    returned: dict[int, list[int]] = {first: [1], second: [1]}
    for i in range(6):
        for session_id in (first, second) if i % 3 else (second, first):
            async with db_factory() as db:
                event = await append_event(db, session_id, "test.note", ACTOR, {"i": i})
                await db.commit()
            returned[session_id].append(event.seq)
    # A third session created in between starts at 1 as well.
    third = await new_session(db_factory, "Ba")
    for session_id in (first, second):
        assert returned[session_id] == list(range(1, 8))
        assert await seqs_of(db_factory, session_id) == list(range(1, 8))
        assert await last_seq_of(db_factory, session_id) == 7
    assert await seqs_of(db_factory, third) == [1]

    async with db_factory() as db:
        events = await list_events(db, first, after_seq=0, limit=100)
        assert [e.seq for e in events] == list(range(1, 8))
        assert [e.payload for e in events[1:]] == [{"i": i} for i in range(6)]
        assert all(e.session_id == first for e in events)
        assert all(e.created_at.tzinfo is not None for e in events)
        assert [e.seq for e in await list_events(db, first, after_seq=5, limit=100)] == [6, 7]
        assert [e.seq for e in await list_events(db, first, after_seq=2, limit=2)] == [3, 4]
        assert list(await list_events(db, first, after_seq=7)) == []


async def test_append_to_unknown_session_writes_nothing(db_factory: Factory) -> None:
    async with db_factory() as db:
        with pytest.raises(NotFound):
            await append_event(db, 987_654, "test.note", ACTOR, {})
        await db.rollback()
    async with db_factory() as db:
        assert await db.scalar(select(func.count()).select_from(SessionEvent)) == 0


@pytest.mark.parametrize(
    "command", [LifecycleCommand.OPEN, LifecycleCommand.CANCEL], ids=lambda c: c.value
)
async def test_rolled_back_command_leaves_no_event(
    db_factory: Factory, command: LifecycleCommand
) -> None:
    session_id = await new_session(db_factory)
    async with db_factory() as db:
        session = await service.apply_command(db, session_id, command, actor=ACTOR)
        assert session.last_seq == 2
        assert [e.seq for e in await list_events(db, session_id)] == [1, 2]
        await db.rollback()
    async with db_factory() as db:
        stored = await db.get(ConferenceSession, session_id)
        assert stored is not None
        assert (stored.status, stored.last_seq) == (SessionStatus.DRAFT, 1)
    assert await seqs_of(db_factory, session_id) == [1]

    # The next committed change takes seq 2: the rolled-back one left no gap.
    async with db_factory() as db:
        await service.apply_command(db, session_id, command, actor=ACTOR)
        await db.commit()
    assert await seqs_of(db_factory, session_id) == [1, 2]
    assert await last_seq_of(db_factory, session_id) == 2


async def test_rolled_back_update_and_create_leave_nothing(db_factory: Factory) -> None:
    session_id = await new_session(db_factory)
    async with db_factory() as db:
        await service.update_session(db, session_id, SessionUpdate(title="Không lưu"), actor=ACTOR)
        await append_event(db, session_id, "test.note", ACTOR, {})
        await db.rollback()
    async with db_factory() as db:
        stored = await db.get(ConferenceSession, session_id)
        assert stored is not None
        assert (stored.title, stored.last_seq) == ("Đối thoại", 1)
    assert await seqs_of(db_factory, session_id) == [1]

    async with db_factory() as db:
        created = await service.create_session(
            db, SessionCreate(title="Bỏ"), actor=ACTOR, account_id=None
        )
        assert created.last_seq == 1
        await db.rollback()
    async with db_factory() as db:
        assert await db.scalar(select(func.count()).select_from(ConferenceSession)) == 1
        assert await db.scalar(select(func.count()).select_from(SessionEvent)) == 1


async def _append_concurrently(factories: list[Factory], session_id: int, *, barrier: bool) -> None:
    gate = asyncio.Barrier(WRITERS) if barrier else None

    async def writer(index: int) -> int:
        async with factories[index % len(factories)]() as db:
            if gate is not None:
                # Every transaction is open before any of them appends.
                await db.execute(select(1))
                await gate.wait()
            event = await append_event(db, session_id, "test.concurrent", ACTOR, {"writer": index})
            await db.commit()
            return event.seq

    seqs = await asyncio.gather(*(writer(i) for i in range(WRITERS)))
    assert sorted(seqs) == list(range(1, WRITERS + 1))


@pytest.mark.postgres
async def test_concurrent_appends_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        factory = session_factory(engine)
        session_id = await bare_session(factory)
        await _append_concurrently([factory], session_id, barrier=True)
        assert sorted(await seqs_of(factory, session_id)) == list(range(1, WRITERS + 1))
        assert await last_seq_of(factory, session_id) == WRITERS
        async with factory() as db:
            writers = await db.scalars(
                select(SessionEvent.payload).where(SessionEvent.session_id == session_id)
            )
            assert sorted(p["writer"] for p in writers) == list(range(WRITERS))
    finally:
        await engine.dispose()


@pytest.fixture
async def sqlite_factories(sqlite_url: str) -> AsyncIterator[list[Factory]]:
    engines = [create_engine(sqlite_url) for _ in range(4)]
    try:
        yield [session_factory(engine) for engine in engines]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_concurrent_appends_sqlite(sqlite_factories: list[Factory]) -> None:
    session_id = await bare_session(sqlite_factories[0])
    await _append_concurrently(sqlite_factories, session_id, barrier=False)
    for factory in sqlite_factories:
        assert sorted(await seqs_of(factory, session_id)) == list(range(1, WRITERS + 1))
        assert await last_seq_of(factory, session_id) == WRITERS


# --- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
async def reader(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    await create_staff(settings, "observer", Role.OBSERVER)
    return await login(client, "observer")


@pytest.fixture
async def operator(client: httpx.AsyncClient, settings: Settings) -> dict[str, str]:
    await create_staff(settings, "operator", Role.OPERATOR)
    return await login(client, "operator")


async def test_events_pagination(
    client: httpx.AsyncClient, operator: dict[str, str], reader: dict[str, str]
) -> None:
    response = await client.post("/api/v1/sessions", json={"title": "Phân trang"}, headers=operator)
    session_id = response.json()["id"]
    for i in range(6):
        response = await client.patch(
            f"/api/v1/sessions/{session_id}", json={"description": f"lần {i}"}, headers=operator
        )
        assert response.status_code == 200
    url = f"/api/v1/sessions/{session_id}/events"

    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        response = await client.get(url, params={"after_seq": after, "limit": 3}, headers=reader)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["last_seq"] == 7
        seqs = [e["seq"] for e in page["items"]]
        assert len(seqs) <= 3
        assert page["next_after_seq"] == (seqs[-1] if seqs else after)
        if not seqs:
            break
        assert seqs[0] == after + 1
        seen.extend(seqs)
        after = page["next_after_seq"]
        pages += 1
    assert seen == list(range(1, 8))
    assert pages == 3

    page = (await client.get(url, headers=reader)).json()
    items = page["items"]
    assert [e["type"] for e in items] == ["session.created"] + ["session.updated"] * 6
    assert items[0]["payload"] == {"title": "Phân trang", "status": "draft"}
    assert items[3]["payload"] == {"changes": {"description": "lần 2"}}
    assert {e["actor"] for e in items} == {"account:operator"}
    assert set(items[0]) == {"seq", "type", "actor", "payload", "created_at"}
    assert (page["next_after_seq"], page["last_seq"]) == (7, 7)

    page = (await client.get(url, params={"after_seq": 100}, headers=reader)).json()
    assert page == {"items": [], "next_after_seq": 100, "last_seq": 7}

    for params in ({"after_seq": -1}, {"limit": 0}, {"limit": 10_001}, {"after_seq": "x"}):
        response = await client.get(url, params=params, headers=reader)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"

    response = await client.get("/api/v1/sessions/999999/events", headers=reader)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    response = await client.get(url)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


async def test_events_are_scoped_to_their_session(
    client: httpx.AsyncClient, operator: dict[str, str], reader: dict[str, str]
) -> None:
    ids = []
    for title in ("A", "B"):
        response = await client.post("/api/v1/sessions", json={"title": title}, headers=operator)
        ids.append(response.json()["id"])
    for action in ("open", "go-live"):
        for session_id in ids:
            response = await client.post(
                f"/api/v1/sessions/{session_id}/actions/{action}", headers=operator
            )
            assert response.status_code == 200
    # A refused action writes no event.
    response = await client.post(f"/api/v1/sessions/{ids[0]}/actions/open", headers=operator)
    assert response.status_code == 409
    for session_id, title in zip(ids, ("A", "B"), strict=True):
        page = (await client.get(f"/api/v1/sessions/{session_id}/events", headers=reader)).json()
        assert [e["seq"] for e in page["items"]] == [1, 2, 3]
        assert page["items"][0]["payload"]["title"] == title
        assert page["last_seq"] == 3
