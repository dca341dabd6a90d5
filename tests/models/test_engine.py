"""Engine helpers: SQLite pragmas and write locking, UTC datetimes on both backends, unit_of_work."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.events.service import append_event
from models import ConferenceSession, SessionEvent, SessionStatus
from models.base import UTCDateTime
from models.engine import (
    create_engine,
    is_sqlite,
    reader_factory,
    session_factory,
    unit_of_work,
)

Factory = async_sessionmaker[AsyncSession]
HANOI = timezone(timedelta(hours=7))
NEW_YORK_WINTER = timezone(timedelta(hours=-5))


def new_session(**fields: object) -> ConferenceSession:
    values: dict[str, object] = {
        "title": "Giờ",
        "status": SessionStatus.DRAFT,
        "settings": {},
        "last_seq": 0,
        **fields,
    }
    return ConferenceSession(**values)


def test_is_sqlite() -> None:
    assert is_sqlite("sqlite+aiosqlite:///x.sqlite3")
    assert is_sqlite("sqlite+aiosqlite://")
    assert not is_sqlite("postgresql+asyncpg://u@h/db")


async def test_sqlite_pragmas_on_every_connection(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        # Two connections held at once: both come from the pool's connect hook.
        async with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                pragmas = {
                    name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                    for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
                }
                assert pragmas == {
                    "journal_mode": "wal",
                    "synchronous": 2,
                    "foreign_keys": 1,
                    "busy_timeout": 30000,
                }
                await conn.rollback()
    finally:
        await engine.dispose()


async def test_sqlite_file_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "db.sqlite3"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        await engine.dispose()
    assert path.exists()


async def test_sqlite_foreign_keys_are_enforced(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        async with session_factory(engine)() as db:
            db.add(SessionEvent(session_id=12345, seq=1, type="x", actor="y", payload={}))
            with pytest.raises(Exception, match="FOREIGN KEY"):
                await db.flush()
            await db.rollback()
    finally:
        await engine.dispose()


async def test_sqlite_transactions_take_the_write_lock_up_front(sqlite_url: str) -> None:
    """A read-then-write transaction is not overtaken by another writer (BEGIN IMMEDIATE).

    With a deferred BEGIN, the second writer would commit first and the first transaction's write
    would then fail at once with "database is locked" (its WAL snapshot is stale).
    """
    engines = [create_engine(sqlite_url) for _ in range(2)]
    try:
        first, second = (session_factory(e) for e in engines)
        async with first() as db:
            session = new_session()
            db.add(session)
            await db.commit()
            session_id = session.id

        order: list[str] = []

        async def other_writer() -> int:
            async with second() as db:
                event = await append_event(db, session_id, "test.second", "b", {})
                await db.commit()
                order.append("second")
                return event.seq

        async with first() as db:
            seen = await db.scalar(
                select(ConferenceSession.last_seq).where(ConferenceSession.id == session_id)
            )
            assert seen == 0
            task = asyncio.create_task(other_writer())
            await asyncio.sleep(0.2)  # give the other writer every chance to get in first
            assert order == []
            event = await append_event(db, session_id, "test.first", "a", {})
            await db.commit()
            order.append("first")
        assert (event.seq, await task) == (1, 2)
        assert order == ["first", "second"]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_utc_datetimes_come_back_aware_and_in_utc(db_factory: Factory) -> None:
    start = datetime(2026, 12, 15, 8, 30, 15, 123456, tzinfo=HANOI)
    end = datetime(2026, 12, 14, 22, 0, tzinfo=NEW_YORK_WINTER)  # 03:00 UTC on the 15th
    async with db_factory() as db:
        session = new_session(scheduled_start=start, scheduled_end=end)
        db.add(session)
        await db.commit()
        session_id = session.id
    async with db_factory() as db:
        stored = await db.get(ConferenceSession, session_id)
        assert stored is not None
        for value, original in ((stored.scheduled_start, start), (stored.scheduled_end, end)):
            assert value is not None
            assert value.tzinfo is not None
            assert value.utcoffset() == timedelta(0)
            assert value == original
        assert stored.scheduled_start == datetime(2026, 12, 15, 1, 30, 15, 123456, tzinfo=UTC)
        assert stored.created_at.utcoffset() == timedelta(0)
        assert stored.updated_at.utcoffset() == timedelta(0)
        # Comparisons use the instant, whatever zone the bound value is in.
        found = await db.scalar(
            select(ConferenceSession.id).where(ConferenceSession.scheduled_start == start)
        )
        assert found == session_id
        earlier = await db.scalar(
            select(func.count())
            .select_from(ConferenceSession)
            .where(ConferenceSession.scheduled_start < end)
        )
        assert earlier == 1
        # Raw column values read through a core select are converted too.
        raw = await db.scalar(select(ConferenceSession.scheduled_end))
        assert raw == datetime(2026, 12, 15, 3, 0, tzinfo=UTC)
        assert raw is not None
        assert raw.tzinfo is not None
        assert raw.utcoffset() == timedelta(0)


async def test_naive_datetimes_are_refused(db_factory: Factory) -> None:
    async with db_factory() as db:
        db.add(new_session(scheduled_start=datetime(2026, 12, 15, 8, 0)))
        with pytest.raises(StatementError, match="naive datetime") as caught:
            await db.flush()
        assert isinstance(caught.value.orig, ValueError)
        await db.rollback()
    async with db_factory() as db:
        assert await db.scalar(select(func.count()).select_from(ConferenceSession)) == 0
        with pytest.raises(StatementError, match="naive datetime"):
            await db.execute(
                select(ConferenceSession).where(
                    ConferenceSession.scheduled_start < datetime(2030, 1, 1)
                )
            )
        await db.rollback()


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "postgresql+asyncpg://u@h/db"])
def test_utc_type_directly(url: str) -> None:
    dialect: Dialect = make_url(url).get_dialect()()
    column_type = UTCDateTime()
    aware = datetime(2026, 1, 1, 7, 0, tzinfo=HANOI)
    bound = column_type.process_bind_param(aware, dialect)
    assert bound == aware
    assert bound is not None
    assert bound.tzinfo is UTC
    assert column_type.process_bind_param(None, dialect) is None
    with pytest.raises(ValueError, match="naive"):
        column_type.process_bind_param(datetime(2026, 1, 1), dialect)
    naive_from_sqlite = datetime(2026, 1, 1, 0, 0)
    result = column_type.process_result_value(naive_from_sqlite, dialect)
    assert result == datetime(2026, 1, 1, tzinfo=UTC)
    result = column_type.process_result_value(aware, dialect)
    assert result is not None
    assert result.tzinfo is UTC
    assert result == aware
    assert column_type.process_result_value(None, dialect) is None


async def test_unit_of_work_commits_or_rolls_back(db_factory: Factory) -> None:
    async with unit_of_work(db_factory) as db:
        db.add(new_session(title="Giữ"))

    async def failing() -> None:
        async with unit_of_work(db_factory) as db:
            db.add(new_session(title="Bỏ"))
            await db.flush()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing()
    async with db_factory() as db:
        titles = list(await db.scalars(select(ConferenceSession.title)))
    assert titles == ["Giữ"]


async def test_readers_do_not_wait_for_a_writer_on_sqlite(sqlite_url: str) -> None:
    """A join storm's credential checks must not queue behind the interval writer's lock."""
    engine = create_engine(sqlite_url)
    try:
        async with session_factory(engine)() as writer:
            await writer.execute(select(func.count()).select_from(ConferenceSession))
            async with reader_factory(engine)() as reader:
                count = await asyncio.wait_for(
                    reader.scalar(select(func.count()).select_from(SessionEvent)), timeout=5
                )
            assert count == 0
            await writer.rollback()
    finally:
        await engine.dispose()
