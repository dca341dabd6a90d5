"""Migrations on fresh SQLite and PostgreSQL databases: up, down, up again, and no drift from the ORM.

These tests are synchronous on purpose: the runner drives Alembic with its own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Inspector

from migrations import runner
from models import Base
from models.base import NAMING_CONVENTION
from models.engine import create_engine
from models.scratch import create_scratch, drop_scratch
from tests.conftest import PG_URL, unavailable

T = TypeVar("T")
APP_TABLES = {
    "accounts",
    "points",
    "conference_sessions",
    "invitations",
    "session_events",
    "presence_intervals",
    "whip_tokens",
    "rollcall_rounds",
    "rollcall_records",
    "rollcall_confirmations",
}
# A few names written out by hand, so that a change of convention is noticed here.
KNOWN_NAMES = {
    "accounts": {"pk_accounts", "uq_accounts_username", "ck_accounts_role"},
    "points": {
        "pk_points",
        "uq_points_code",
        "ix_points_search_name",
        "ix_points_district_code",
        "ix_points_province_code",
    },
    "conference_sessions": {
        "pk_conference_sessions",
        "fk_conference_sessions_created_by_accounts",
        "ck_conference_sessions_session_status",
    },
    "invitations": {
        "pk_invitations",
        "fk_invitations_session_id_conference_sessions",
        "fk_invitations_point_id_points",
        "uq_invitations_session_id_point_id",
        "uq_invitations_credential_hash",
        "ix_invitations_session_id",
        "ix_invitations_point_id",
    },
    "session_events": {
        "pk_session_events",
        "fk_session_events_session_id_conference_sessions",
        "uq_session_events_session_id_seq",
    },
    "presence_intervals": {
        "pk_presence_intervals",
        "fk_presence_intervals_session_id_conference_sessions",
        "fk_presence_intervals_point_id_points",
        "ix_presence_intervals_session_id",
    },
    "whip_tokens": {
        "pk_whip_tokens",
        "fk_whip_tokens_session_id_conference_sessions",
        "uq_whip_tokens_token_hash",
        "ix_whip_tokens_session_id",
    },
    "rollcall_rounds": {"pk_rollcall_rounds", "uq_rollcall_rounds_session_id_number"},
    "rollcall_records": {"pk_rollcall_records", "uq_rollcall_records_round_id_point_id"},
    "rollcall_confirmations": {
        "pk_rollcall_confirmations",
        "uq_rollcall_confirmations_session_id_point_id_key",
    },
}
PREFIXES = ("pk_", "uq_", "fk_", "ix_", "ck_")


def with_connection(url: str, work: Callable[[Connection], T]) -> T:
    async def run() -> T:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                result = await conn.run_sync(work)
                await conn.rollback()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


def schema_names(conn: Connection) -> dict[str, dict[str, Any]]:
    """Per table: column names, and every constraint and index name as reflected."""
    inspector: Inspector = inspect(conn)
    found: dict[str, dict[str, Any]] = {}
    for table in inspector.get_table_names():
        names: set[str | None] = {inspector.get_pk_constraint(table).get("name")}
        names |= {c["name"] for c in inspector.get_unique_constraints(table)}
        names |= {c["name"] for c in inspector.get_foreign_keys(table)}
        names |= {c["name"] for c in inspector.get_check_constraints(table)}
        names |= {c["name"] for c in inspector.get_indexes(table)}
        found[table] = {
            "columns": {c["name"] for c in inspector.get_columns(table)},
            "names": names,
            "fks": {
                fk["name"]: (fk["referred_table"], fk.get("options", {}).get("ondelete"))
                for fk in inspector.get_foreign_keys(table)
            },
        }
    return found


def metadata_names() -> dict[str, set[str]]:
    """The names the ORM metadata gives its constraints and indexes under the naming convention."""
    expected: dict[str, set[str]] = {}
    for table in Base.metadata.sorted_tables:
        names = {str(c.name) for c in table.constraints if c.name is not None}
        names |= {str(i.name) for i in table.indexes}
        expected[table.name] = names
    return expected


def drift(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def check_migrated(url: str) -> None:
    assert runner.current_revision(url) == runner.head_revision()
    schema = with_connection(url, schema_names)
    assert set(schema) - {"alembic_version"} == APP_TABLES
    expected = metadata_names()
    assert set(expected) == APP_TABLES
    for table in APP_TABLES:
        names = schema[table]["names"]
        assert None not in names, f"{table} has an unnamed constraint"
        assert KNOWN_NAMES[table] <= names, KNOWN_NAMES[table] - names
        # Named exactly as the ORM metadata names them, every name following the convention.
        assert names == expected[table], (table, names ^ expected[table])
        assert all(str(name).startswith(PREFIXES) for name in names)
        assert schema[table]["columns"] == set(Base.metadata.tables[table].columns.keys())
    assert schema["invitations"]["fks"] == {
        "fk_invitations_session_id_conference_sessions": ("conference_sessions", "CASCADE"),
        "fk_invitations_point_id_points": ("points", "RESTRICT"),
    }
    assert schema["session_events"]["fks"] == {
        "fk_session_events_session_id_conference_sessions": ("conference_sessions", "CASCADE"),
    }
    assert schema["conference_sessions"]["fks"] == {
        "fk_conference_sessions_created_by_accounts": ("accounts", "SET NULL"),
    }
    assert schema["whip_tokens"]["fks"] == {
        "fk_whip_tokens_session_id_conference_sessions": ("conference_sessions", "CASCADE"),
    }
    differences = with_connection(url, drift)
    assert differences == [], differences


def roundtrip(url: str) -> None:
    assert runner.head_revision() is not None
    assert runner.current_revision(url) is None

    runner.upgrade(url)
    check_migrated(url)
    runner.upgrade(url)  # already at head: nothing to do, nothing broken
    check_migrated(url)

    runner.downgrade(url, "base")
    assert runner.current_revision(url) is None
    left = with_connection(url, lambda conn: set(inspect(conn).get_table_names()))
    assert left - {"alembic_version"} == set()

    runner.upgrade(url)
    check_migrated(url)


def test_naming_convention_is_complete() -> None:
    assert set(NAMING_CONVENTION) == {"ix", "uq", "ck", "fk", "pk"}
    assert Base.metadata.naming_convention == NAMING_CONVENTION
    for table, names in KNOWN_NAMES.items():
        assert names <= metadata_names()[table]


def test_roundtrip_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "diemcau.sqlite3"
    roundtrip(f"sqlite+aiosqlite:///{path}")
    assert path.exists()


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    try:
        url = create_scratch(PG_URL, "diemcau_migrate")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    try:
        yield url
    finally:
        drop_scratch(PG_URL, url)


@pytest.mark.postgres
def test_roundtrip_postgres(fresh_postgres_url: str) -> None:
    roundtrip(fresh_postgres_url)

    def leftovers(conn: Connection) -> Any:
        # native_enum=False: no enum types may be left behind by a downgrade either.
        return conn.exec_driver_sql(
            "SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = 'public' AND t.typtype = 'e'"
        ).all()

    runner.downgrade(fresh_postgres_url, "base")
    assert with_connection(fresh_postgres_url, leftovers) == []
