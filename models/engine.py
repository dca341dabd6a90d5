"""Engine and session helpers; engines are made by the caller's lifespan, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.errors import ValidationFailed

READ_ONLY_OPTION = "diemcau_read_only"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class UnstorableValue(ValidationFailed):
    """A bound value that a supported database cannot store: text with NUL, an integer past 64 bits.

    Checked before every statement on every backend, so SQLite refuses what PostgreSQL would, and
    the edge answers a typed error instead of a database exception.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, details={"reason": "unstorable_value"})


def _check_bound(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise UnstorableValue("text must not contain the NUL character")
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise UnstorableValue("a number is outside the 64-bit integer range")
    elif isinstance(value, list | tuple):
        for item in value:
            _check_bound(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_bound(item)


def _refuse_unstorable(
    _conn: Any, _cursor: Any, _statement: str, parameters: Any, _context: Any, _many: bool
) -> None:
    _check_bound(parameters)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """Create an async engine; SQLite gets WAL, full sync, foreign keys and immediate write locks."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
    else:
        engine = create_async_engine(
            url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20
        )
    event.listen(engine.sync_engine, "before_cursor_execute", _refuse_unstorable)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves so that every transaction takes the write lock up front:
        # a deferred transaction that reads then writes fails at once in WAL mode when another
        # writer got in between, instead of waiting for the busy timeout.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def reader_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that only read: on SQLite they skip the up-front write lock, so a join storm's
    thousands of credential checks read in parallel with writers (WAL) instead of queueing."""
    return async_sessionmaker(
        engine.execution_options(**{READ_ONLY_OPTION: True}),
        expire_on_commit=False,
        autoflush=False,
    )


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction for a CLI command or a background task: commit on success, else roll back."""
    async with factory() as db:
        try:
            yield db
            await db.commit()
        except BaseException:
            await db.rollback()
            raise
