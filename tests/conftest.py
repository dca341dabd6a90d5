"""Shared fixtures: real databases (SQLite and the machine's PostgreSQL), the app, staff tokens.

Each database is migrated once per run; SQLite tests get a copy of the migrated file, PostgreSQL tests
share one fresh database that is truncated before each test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.accounts import service as accounts
from app.accounts.schemas import AccountCreate
from app.auth.passwords import Passwords
from app.main import create_app
from app.settings import Settings
from migrations import runner
from models import Role
from models.engine import create_engine, session_factory
from models.scratch import create_scratch, drop_scratch, execute

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
HANOI_CSV = EXAMPLES / "hanoi-wards-2024.csv"
COMMUNES_CSV = EXAMPLES / "vietnam-communes-2025.csv"
PG_URL = os.environ.get(
    "DIEMCAU_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"
TABLES = "presence_intervals, session_events, invitations, conference_sessions, points, accounts"
TEST_PASSWORD = "correct horse battery staple"
TEST_SECRET = "test-secret-" + "x" * 40
pytest_plugins = ["tests.peers.coturn", "tests.peers.chromium", "tests.peers.loopback"]


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose real peer is missing, except in CI, where a missing peer fails the run."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    runner.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    try:
        url = create_scratch(PG_URL, "diemcau_test")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        unavailable(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    runner.upgrade(url)
    yield url
    drop_scratch(PG_URL, url)


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "diemcau.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    execute(postgres_database, f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Parametrizes a test over both backends."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def db_factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "var_dir": tmp_path / "var",
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "public_url": "http://diemcau.test",
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        # One full collection per app start would add up over hundreds of tests; GcPolicy has
        # its own tests.
        "gc_freeze": False,
        # Media forwards on the test's own loop, on loopback (aioice skips it unless listed).
        "media_workers": 0,
        "media_host_addresses": ["127.0.0.1"],
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def passwords() -> Passwords:
    return Passwords(time_cost=1, memory_kib=1024)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://diemcau.test") as http:
            yield http


async def create_staff(settings: Settings, username: str, role: Role) -> None:
    engine = create_engine(settings.effective_database_url)
    try:
        async with session_factory(engine)() as db:
            await accounts.create_account(
                db,
                AccountCreate(
                    username=username, display_name=username, role=role, password=TEST_PASSWORD
                ),
                passwords=Passwords(time_cost=1, memory_kib=1024),
                min_length=8,
            )
            await db.commit()
    finally:
        await engine.dispose()


async def login(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def staff(client: httpx.AsyncClient, settings: Settings) -> dict[str, dict[str, str]]:
    """Authorization headers for one account of each role, keyed by role name."""
    headers: dict[str, dict[str, str]] = {}
    for role in Role:
        await create_staff(settings, role.value, role)
        headers[role.value] = await login(client, role.value)
    return headers


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the one typed error body with this status and code."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["details"], dict)
    return body
