"""Throw-away PostgreSQL databases, made and dropped on a server, for tests and benchmarks.

Each gets a unique name, so runs on the same server (CI, a developer, a benchmark) never meet.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from sqlalchemy.engine import make_url


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    """A SQLAlchemy URL (any driver) as a plain libpq DSN for asyncpg, optionally another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _execute(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def execute(url: str, statement: str) -> None:
    """Run one statement on the database the URL names (outside any event loop)."""
    asyncio.run(_execute(asyncpg_dsn(url), statement))


def create_scratch(server_url: str, prefix: str) -> str:
    """Create an empty database on the server of `server_url`; its SQLAlchemy URL.

    Raises OSError, TimeoutError or asyncpg.PostgresError when the server cannot be reached.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    execute(server_url, f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_scratch(server_url: str, scratch_url: str) -> None:
    name = make_url(scratch_url).database
    execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
