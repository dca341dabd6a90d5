"""Bad input of every kind gets a typed error `{code, message, details}` and changes nothing.

Each test takes a full snapshot of every table (all rows, all columns) before the bad requests and
compares it after them, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import select

from app.main import create_app
from app.sessions.lifecycle import TRANSITIONS, LifecycleCommand, SessionStatus, allowed_commands
from app.settings import Settings
from models import Base, Role
from models.engine import create_engine
from tests.conftest import TEST_PASSWORD, create_staff, login, make_settings

API = "/api/v1"
# For checks that end before the database: run them once, on SQLite.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
Snapshot = dict[str, list[tuple[Any, ...]]]


async def snapshot(url: str) -> Snapshot:
    """Every row of every table, ordered by primary key."""
    engine = create_engine(url)
    try:
        tables: Snapshot = {}
        async with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
                tables[table.name] = [tuple(row) for row in rows]
        return tables
    finally:
        await engine.dispose()


def assert_error(response: httpx.Response, status: int | tuple[int, ...], code: str | None) -> None:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, response.text
    body = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["details"], dict)
    if code is not None:
        assert body["code"] == code, body


@dataclass
class World:
    url: str
    admin: dict[str, str]
    session_id: int
    target_account_id: int
    credential: str
    open_session_id: int = 0


@pytest.fixture
async def world(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]], settings: Settings
) -> World:
    """Points P001–P003 (district D1), a draft session inviting P001 with a join link, an account."""
    admin = staff["admin"]
    for code in ("P001", "P002", "P003"):
        response = await client.post(
            f"{API}/points",
            json={"code": code, "name": f"Phường {code}", "district_code": "D1", "capacity": 40},
            headers=admin,
        )
        assert response.status_code == 201, response.text
    response = await client.post(
        f"{API}/accounts",
        json={"username": "target", "display_name": "Target", "role": "observer"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    target = response.json()["account"]["id"]
    response = await client.post(
        f"{API}/sessions",
        json={"title": "Đối thoại", "scheduled_start": "2030-01-01T08:00:00+07:00"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    session_id = response.json()["id"]
    response = await client.post(
        f"{API}/sessions/{session_id}/invitations", json={"point_codes": ["P001"]}, headers=admin
    )
    assert response.status_code == 200, response.text
    response = await client.post(f"{API}/sessions/{session_id}/join-links", json={}, headers=admin)
    assert response.status_code == 200, response.text
    credential = response.json()["links"][0]["credential"]
    # A second session, open, for the routes that only work then (roll-call).
    response = await client.post(f"{API}/sessions", json={"title": "Phiên mở"}, headers=admin)
    open_session_id = response.json()["id"]
    response = await client.post(
        f"{API}/sessions/{open_session_id}/invitations", json={"all": True}, headers=admin
    )
    assert response.status_code == 200, response.text
    response = await client.post(f"{API}/sessions/{open_session_id}/actions/open", headers=admin)
    assert response.status_code == 200, response.text
    return World(
        url=settings.effective_database_url,
        admin=admin,
        session_id=session_id,
        target_account_id=target,
        credential=credential,
        open_session_id=open_session_id,
    )


def valid_bodies(w: World) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """One valid body per route that takes one, using every field of its model."""
    s, a = w.session_id, w.target_account_id
    point_fields = {
        "name": "Phường Mới",
        "kind": "phường",
        "district_code": "D1",
        "district_name": "Quận Một",
        "province_code": "01",
        "province_name": "Hà Nội",
        "contact_name": "Nguyễn Văn A",
        "contact_phone": "+84 24 3825 1234",
        "capacity": 50,
        "lat": 21.03,
        "lon": 105.85,
        "active": True,
    }
    settings = {
        "speaking_time_limit_s": 120,
        "speaking_time_warning_s": 20,
        "max_floor_holders": 2,
        "grant_releases_current_holder": False,
        "queue_while_held": True,
        "rollcall_deadline_s": 90,
        "rollcall_max_headcount": 300,
    }
    session_fields = {
        "title": "Phiên mới",
        "hall_name": "Hội trường",
        "description": "Mô tả",
        "scheduled_start": "2030-02-01T08:00:00+07:00",
        "scheduled_end": "2030-02-01T11:00:00+07:00",
        "settings": settings,
    }
    return {
        ("POST", f"{API}/auth/login"): (
            f"{API}/auth/login",
            {"username": "observer", "password": TEST_PASSWORD},
        ),
        ("POST", f"{API}/accounts"): (
            f"{API}/accounts",
            {
                "username": "newbie",
                "display_name": "New",
                "role": "observer",
                "password": "long enough password",
            },
        ),
        ("PATCH", f"{API}/accounts/{{account_id}}"): (
            f"{API}/accounts/{a}",
            {"display_name": "Target Two", "role": "moderator", "active": True},
        ),
        ("POST", f"{API}/accounts/{{account_id}}/password"): (
            f"{API}/accounts/{a}/password",
            {"password": "a long new password"},
        ),
        ("POST", f"{API}/points"): (f"{API}/points", {"code": "P100", **point_fields}),
        ("PATCH", f"{API}/points/{{code}}"): (f"{API}/points/P002", point_fields),
        ("POST", f"{API}/sessions"): (f"{API}/sessions", session_fields),
        ("PATCH", f"{API}/sessions/{{session_id}}"): (f"{API}/sessions/{s}", session_fields),
        ("POST", f"{API}/sessions/{{session_id}}/invitations"): (
            f"{API}/sessions/{s}/invitations",
            {
                "all": False,
                "point_codes": ["P002"],
                "district_codes": ["D1"],
                "province_codes": [],
                "expected_attendees": 30,
            },
        ),
        ("POST", f"{API}/sessions/{{session_id}}/join-links"): (
            f"{API}/sessions/{s}/join-links",
            {"point_codes": ["P001"], "district_codes": [], "province_codes": [], "rotate": False},
        ),
        ("POST", f"{API}/join/verify"): (f"{API}/join/verify", {"credential": w.credential}),
        ("POST", f"{API}/sessions/{{session_id}}/whip-tokens"): (
            f"{API}/sessions/{s}/whip-tokens",
            {"label": "OBS"},
        ),
        ("POST", f"{API}/join/readiness"): (
            f"{API}/join/readiness",
            {
                "credential": w.credential,
                "camera": True,
                "microphone": False,
                "rtt_ms": 42.5,
                "camera_label": "Camera phòng họp",
                "microphone_label": "Micrô",
            },
        ),
        ("POST", f"{API}/qr"): (f"{API}/qr", {"text": "https://diemcau.test/join#dc1_x"}),
        ("POST", f"{API}/sessions/{{session_id}}/rollcalls"): (
            f"{API}/sessions/{w.open_session_id}/rollcalls",
            {"deadline_s": 90.0, "message": "Điểm danh đầu phiên"},
        ),
        ("POST", f"{API}/sessions/{{session_id}}/rollcalls/{{number}}/records/{{point_code}}"): (
            f"{API}/sessions/{w.open_session_id}/rollcalls/1/records/P002",
            {"status": "present", "headcount": 12, "reason": "Báo qua điện thoại"},
        ),
    }


def body_routes(settings: Settings) -> set[tuple[str, str]]:
    app = create_app(settings)
    found = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.body_field is not None:
            found.update((method, context.path) for method in route.methods)
    return found


@SQLITE_ONLY
def test_every_body_route_is_covered(settings: Settings) -> None:
    placeholder = World(url="", admin={}, session_id=1, target_account_id=1, credential="x")
    assert body_routes(settings) == set(valid_bodies(placeholder))


# --- malformed JSON -----------------------------------------------------------------------------

MALFORMED = [
    b'{"title": "x"',
    b"not json at all",
    b"[1, 2, 3]",
    b'["title", "x"]',
    b'{"title": NaN}',
    b'{"title": Infinity, "password": -Infinity}',
    b"null",
    b'"a string"',
    b"42",
    b"true",
    b'{"title": "x",}',
    b"{'title': 'x'}",
    b'{"title": "x"}{"title": "y"}',
    b"\xff\xfe{\x00",
    b'{"title": "tab\there"}',
    b"{" * 5000,
    b"",
]
# Bodies that FastAPI fails to decode outside the JSON parser (a UnicodeDecodeError, a
# RecursionError): they answer its generic 400, which we map to `bad_request`.
UNDECODABLE = [b'{"title": "\xff"}', b"[" * 100_000]


@SQLITE_ONLY
async def test_malformed_json_is_a_typed_error(client: httpx.AsyncClient, world: World) -> None:
    before = await snapshot(world.url)
    for method, path in ((m, p) for (m, _), (p, _) in valid_bodies(world).items()):
        for body in MALFORMED + UNDECODABLE:
            response = await client.request(
                method,
                path,
                content=body,
                headers={**world.admin, "Content-Type": "application/json"},
            )
            assert response.status_code in (400, 422), (method, path, body[:40], response.text)
            if response.status_code == 422:
                expected = "validation_error"
            elif body in UNDECODABLE:
                expected = "bad_request"
            else:
                expected = "malformed_json"
            assert_error(response, response.status_code, expected)
    response = await client.post(
        f"{API}/sessions",
        content=b'{"title": "x"',
        headers={**world.admin, "Content-Type": "application/json"},
    )
    assert response.json()["details"]["errors"][0]["type"] == "json_invalid"
    # Valid JSON under another content type is not read as JSON.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = await client.post(
            f"{API}/sessions",
            content=b'{"title": "x"}',
            headers={**world.admin, "Content-Type": content_type},
        )
        assert response.status_code in (400, 415, 422), (content_type, response.text)
        assert_error(response, response.status_code, None)
    assert await snapshot(world.url) == before


# --- wrong types, extra fields, long strings ----------------------------------------------------


def wrong_values(valid: Any) -> list[Any]:
    if isinstance(valid, bool):
        return ["maybe", 2, -1, 0.5, [], {}]
    if isinstance(valid, int):
        return ["many", 1.5, [1], {"n": 1}, "1e3"]
    if isinstance(valid, float):
        return ["north", [1.0], {"x": 1}, "nan"]
    if isinstance(valid, str):
        if valid.startswith("20") and "T" in valid:  # a datetime
            return ["yesterday", "2030-02-01T08:00:00", "2030-13-01T08:00:00Z", [], {}]
        return [12345, 1.5, True, [valid], {"value": valid}]
    if isinstance(valid, list):
        return ["P001", 5, {"a": 1}, [5], [["P001"]], [None]]
    if isinstance(valid, dict):
        return ["settings", [1], 5, True]
    raise AssertionError(valid)


def mutations(body: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every body with one field (nested fields too) replaced by a value of a wrong type."""
    for key, value in body.items():
        for wrong in wrong_values(value):
            mutated = copy.deepcopy(body)
            mutated[key] = wrong
            yield (key,), mutated
        if isinstance(value, dict):
            for inner_loc, inner in mutations(value):
                mutated = copy.deepcopy(body)
                mutated[key] = inner
                yield (key, *inner_loc), mutated


@SQLITE_ONLY
async def test_wrong_types_in_every_body_model(client: httpx.AsyncClient, world: World) -> None:
    before = await snapshot(world.url)
    checked = 0
    for (method, _), (path, body) in valid_bodies(world).items():
        for loc, mutated in mutations(body):
            response = await client.request(method, path, json=mutated, headers=world.admin)
            assert_error(response, 422, "validation_error")
            locs = [tuple(e["loc"]) for e in response.json()["details"]["errors"]]
            assert any(found[1 : 1 + len(loc)] == loc for found in locs), (path, loc, locs)
            checked += 1
    assert checked > 300
    assert await snapshot(world.url) == before
    # The bodies the mutations started from are valid: each one is accepted as it is.
    for (method, _), (path, body) in valid_bodies(world).items():
        response = await client.request(method, path, json=body, headers=world.admin)
        assert response.is_success, (method, path, response.text)


@SQLITE_ONLY
async def test_extra_fields_are_refused(client: httpx.AsyncClient, world: World) -> None:
    before = await snapshot(world.url)
    for (method, _), (path, body) in valid_bodies(world).items():
        for extra in ({"unexpected": 1}, {"id": 99}, {"role ": "admin"}, {"Title": "x"}):
            response = await client.request(
                method, path, json={**body, **extra}, headers=world.admin
            )
            assert_error(response, 422, "validation_error")
            types = {e["type"] for e in response.json()["details"]["errors"]}
            assert types == {"extra_forbidden"}, (path, extra, response.text)
    for method, path in (
        ("POST", f"{API}/sessions"),
        ("PATCH", f"{API}/sessions/{world.session_id}"),
    ):
        body = {"title": "x", "settings": {"speaking_time_limit_s": 60, "volume": 11}}
        response = await client.request(method, path, json=body, headers=world.admin)
        assert_error(response, 422, "validation_error")
        assert response.json()["details"]["errors"][0]["loc"] == ["body", "settings", "volume"]
    assert await snapshot(world.url) == before


LONG = [
    ("POST", "/sessions", {"title": "t" * 301}),
    ("POST", "/sessions", {"title": "x", "hall_name": "h" * 201}),
    ("POST", "/sessions", {"title": "x", "description": "d" * 10_001}),
    ("PATCH", "/sessions/{s}", {"title": "t" * 301}),
    ("PATCH", "/sessions/{s}", {"hall_name": "h" * 201}),
    ("POST", "/points", {"code": "P" * 17, "name": "x"}),
    ("POST", "/points", {"code": "P200", "name": "n" * 201}),
    ("POST", "/points", {"code": "P200", "name": "x", "kind": "k" * 51}),
    ("POST", "/points", {"code": "P200", "name": "x", "district_name": "d" * 201}),
    ("POST", "/points", {"code": "P200", "name": "x", "contact_name": "c" * 201}),
    ("POST", "/points", {"code": "P200", "name": "x", "contact_phone": "1" * 33}),
    ("POST", "/points", {"code": "P200", "name": "x", "district_code": "D" * 17}),
    ("PATCH", "/points/P001", {"name": "n" * 201}),
    ("POST", "/accounts", {"username": "u" * 65, "display_name": "x", "role": "observer"}),
    ("POST", "/accounts", {"username": "newbie", "display_name": "d" * 201, "role": "observer"}),
    (
        "POST",
        "/accounts",
        {"username": "newbie", "display_name": "x", "role": "observer", "password": "p" * 1025},
    ),
    ("PATCH", "/accounts/{a}", {"display_name": "d" * 201}),
    ("POST", "/accounts/{a}/password", {"password": "p" * 1025}),
    ("POST", "/auth/login", {"username": "u" * 65, "password": "x"}),
    ("POST", "/auth/login", {"username": "observer", "password": "p" * 1025}),
    ("POST", "/join/verify", {"credential": "dc1_" + "c" * 197}),
    ("POST", "/sessions/{s}/invitations", {"point_codes": ["P001"] * 10_001}),
    ("POST", "/sessions/{s}/join-links", {"district_codes": ["D1"] * 10_001}),
    ("POST", "/sessions/{s}/whip-tokens", {"label": "l" * 101}),
]


async def test_strings_and_lists_over_their_limit(client: httpx.AsyncClient, world: World) -> None:
    before = await snapshot(world.url)
    for method, template, body in LONG:
        path = API + template.format(s=world.session_id, a=world.target_account_id)
        response = await client.request(method, path, json=body, headers=world.admin)
        assert_error(response, 422, "validation_error")
    assert await snapshot(world.url) == before
    # At the limit, they are accepted.
    response = await client.post(
        f"{API}/sessions",
        json={"title": "t" * 300, "hall_name": "h" * 200, "description": "d" * 10_000},
        headers=world.admin,
    )
    assert response.status_code == 201, response.text
    response = await client.post(
        f"{API}/points", json={"code": "P" * 16, "name": "n" * 200}, headers=world.admin
    )
    assert response.status_code == 201, response.text


async def test_text_that_no_database_stores_is_refused_alike(
    client: httpx.AsyncClient, world: World
) -> None:
    """NUL characters and lone surrogates: SQLite would keep them, PostgreSQL cannot; both refuse."""
    before = await snapshot(world.url)
    s = world.session_id
    cases: list[tuple[str, str, bytes | None]] = [
        ("POST", "/sessions", b'{"title": "a\\u0000b"}'),
        ("POST", "/sessions", b'{"title": "a\\ud800b"}'),
        ("POST", "/sessions", b'{"title": "t", "description": "\\udfff"}'),
        ("PATCH", f"/sessions/{s}", b'{"hall_name": "\\u0000"}'),
        ("POST", "/points", b'{"code": "P300", "name": "x\\u0000"}'),
        ("PATCH", "/points/P001", b'{"contact_name": "\\u0000"}'),
        (
            "POST",
            "/accounts",
            b'{"username": "zed", "display_name": "\\u0000", "role": "observer"}',
        ),
        ("POST", "/auth/login", b'{"username": "observer\\u0000", "password": "x"}'),
        ("POST", "/join/verify", b'{"credential": "dc1_\\u0000"}'),
        ("POST", f"/sessions/{s}/whip-tokens", b'{"label": "\\u0000"}'),
        ("POST", f"/sessions/{s}/whip-tokens", b'{"label": "\\ud800"}'),
        ("GET", "/points?q=%00", None),
        ("GET", "/points?district_code=%00&province_code=x%00", None),
        ("GET", f"/sessions/{s}/invitations?q=a%00", None),
        ("GET", "/points/P%00", None),
        ("GET", f"/sessions/{s}/invitations/P%00", None),
    ]
    for method, path, body in cases:
        response = await client.request(
            method,
            API + path,
            content=body,
            headers={**world.admin, "Content-Type": "application/json"},
        )
        # Reads of a NUL key may also answer "not found" or an empty list; never a 500.
        if response.status_code == 200:
            assert method == "GET", (path, response.text)
            continue
        assert_error(response, (401, 404, 422), None)
    assert await snapshot(world.url) == before


@SQLITE_ONLY
async def test_datetimes_past_the_calendar_are_refused(
    client: httpx.AsyncClient, world: World
) -> None:
    """A start at 0001-01-01 00:30+01:00 is year 0 in UTC: a typed 422, not an overflow."""
    before = await snapshot(world.url)
    for start in ("0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"):
        for method, path in (("POST", "/sessions"), ("PATCH", f"/sessions/{world.session_id}")):
            body = {"title": "x", "scheduled_start": start}
            response = await client.request(method, API + path, json=body, headers=world.admin)
            assert_error(response, 422, "validation_error")
    assert await snapshot(world.url) == before


async def test_names_whose_search_key_grows_are_stored(
    client: httpx.AsyncClient, world: World
) -> None:
    """Case folding lengthens some names (ß → ss); a 200-character name must still be stored."""
    name = "ß" * 200
    response = await client.post(
        f"{API}/points", json={"code": "P400", "name": name}, headers=world.admin
    )
    assert response.status_code == 201, response.text
    response = await client.patch(
        f"{API}/points/P001", json={"name": "ﬃ" * 200}, headers=world.admin
    )
    assert response.status_code == 200, response.text
    csv = ("code,name\nP401," + "가" * 200 + "\n").encode()
    response = await client.post(
        f"{API}/points/import", content=csv, headers={**world.admin, "Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    response = await client.get(f"{API}/points", params={"q": "ss" * 20}, headers=world.admin)
    assert [p["code"] for p in response.json()["items"]] == ["P400"]


# --- body size ----------------------------------------------------------------------------------


@pytest.fixture
async def small_client(tmp_path: Path, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose bodies may be 2 KiB at most (imports 4 KiB)."""
    settings = make_settings(
        tmp_path, database_url, max_body_bytes=2048, max_import_bytes=4096, login_max_failures=3
    )
    await create_staff(settings, "admin", Role.ADMIN)
    await create_staff(settings, "observer", Role.OBSERVER)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://diemcau.test") as http:
            yield http


async def chunks(data: bytes, size: int = 500) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def session_body(total: int) -> bytes:
    body = json.dumps({"title": "x", "description": ""}).encode()
    return json.dumps({"title": "x", "description": "d" * (total - len(body))}).encode()


@SQLITE_ONLY
async def test_body_over_the_limit(
    small_client: httpx.AsyncClient, tmp_path: Path, database_url: str
) -> None:
    admin = await login(small_client, "admin")
    url = make_settings(tmp_path, database_url).effective_database_url
    before = await snapshot(url)
    big = session_body(2049)
    assert len(big) == 2049
    json_headers = {**admin, "Content-Type": "application/json"}
    for content in (big, session_body(100_000)):
        response = await small_client.post(f"{API}/sessions", content=content, headers=json_headers)
        assert_error(response, 413, "payload_too_large")
        assert response.json()["details"] == {"limit": 2048}
        # Sent in chunks with no Content-Length, the limit holds all the same.
        response = await small_client.post(
            f"{API}/sessions", content=chunks(content), headers=json_headers
        )
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "payload_too_large")
    # Without a token too: nobody gets to make the server read a huge body.
    for path in ("/auth/login", "/sessions", "/nope"):
        response = await small_client.post(
            API + path, content=big, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, "payload_too_large")
    for path in ("/auth/login", "/sessions"):
        response = await small_client.post(
            API + path, content=chunks(big), headers={"Content-Type": "application/json"}
        )
        assert_error(response, 413, "payload_too_large")
    csv_body = b"code,name\n" + b"".join(b"P%04d,Point %04d\n" % (i, i) for i in range(300))
    assert len(csv_body) > 4096
    csv_headers = {**admin, "Content-Type": "text/csv"}
    for content in (csv_body, chunks(csv_body)):
        response = await small_client.post(
            f"{API}/points/import", content=content, headers=csv_headers
        )
        assert_error(response, 413, "payload_too_large")
    assert await snapshot(url) == before
    # Just under the limits, the same requests are served.
    response = await small_client.post(
        f"{API}/sessions", content=chunks(session_body(2048)), headers=json_headers
    )
    assert response.status_code == 201, response.text
    response = await small_client.post(
        f"{API}/points/import",
        content=chunks(csv_body[:4000].rsplit(b"\n", 1)[0]),
        headers=csv_headers,
    )
    assert response.status_code == 200, response.text


@SQLITE_ONLY
async def test_default_body_limit_is_one_megabyte(client: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json"}
    for content in (session_body(1_000_001), chunks(session_body(1_000_001), 65_536)):
        response = await client.post(f"{API}/sessions", content=content, headers=headers)
        assert_error(response, 413, "payload_too_large")
        assert "1000000 bytes" in response.json()["message"]
    # One byte less is read, and refused for what it is: a request without a token.
    response = await client.post(
        f"{API}/sessions", content=session_body(1_000_000), headers=headers
    )
    assert_error(response, 401, "unauthenticated")


# --- routes and methods -------------------------------------------------------------------------


@SQLITE_ONLY
async def test_unknown_routes_are_not_found(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    for headers in ({}, staff["admin"]):
        for method, path in (
            ("GET", "/nope"),
            ("GET", "/api/v1"),
            ("GET", "/api/v1/nope"),
            ("POST", "/api/v1/nope"),
            ("GET", "/api/v2/sessions"),
            ("GET", "/api/v1/sessions/1/nope"),
            ("POST", "/api/v1/sessions/1/actions/open/now"),
            ("GET", "/api/v1/points/P001/extra/parts"),
            ("DELETE", "/api/v1/join"),
            ("GET", "/.env"),
            ("GET", "/%2e%2e/%2e%2e/etc/passwd"),
        ):
            response = await client.request(method, path, headers=headers)
            assert_error(response, 404, "not_found")


@SQLITE_ONLY
async def test_wrong_method_is_method_not_allowed(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    for method, path, allowed in (
        ("DELETE", "/api/v1/sessions", {"GET", "POST"}),
        ("PUT", "/api/v1/points/P001", {"GET", "PATCH", "DELETE"}),
        ("GET", "/api/v1/auth/login", {"POST"}),
        ("PATCH", "/healthz", {"GET"}),
        ("GET", "/api/v1/join/verify", {"POST"}),
        ("GET", "/api/v1/sessions/1/actions/open", {"POST"}),
        ("PUT", "/api/v1/accounts/1", {"GET", "PATCH"}),
        ("DELETE", "/api/v1/sessions/1/events", {"GET"}),
    ):
        response = await client.request(method, path, headers=staff["admin"])
        assert_error(response, 405, "method_not_allowed")
        # Starlette names the methods of the first route matching the path, not of all of them.
        named = set(response.headers["allow"].replace(" ", "").split(","))
        assert named
        assert named <= allowed | {"HEAD"}, path


# --- lifecycle ----------------------------------------------------------------------------------

PATH_TO = {
    SessionStatus.DRAFT: [],
    SessionStatus.SCHEDULED: ["schedule"],
    SessionStatus.OPEN: ["open"],
    SessionStatus.LIVE: ["open", "go-live"],
    SessionStatus.ENDED: ["open", "end"],
    SessionStatus.CANCELLED: ["cancel"],
}


async def test_lifecycle_refuses_what_the_state_forbids(
    client: httpx.AsyncClient, world: World
) -> None:
    refused = 0
    for state, steps in PATH_TO.items():
        response = await client.post(
            f"{API}/sessions",
            json={"title": f"in {state}", "scheduled_start": "2030-01-01T08:00:00Z"},
            headers=world.admin,
        )
        session_id = response.json()["id"]
        for step in steps:
            response = await client.post(
                f"{API}/sessions/{session_id}/actions/{step}", headers=world.admin
            )
            assert response.status_code == 200, response.text
        assert response.json()["status"] == state
        assert response.json()["allowed_actions"] == allowed_commands(state)
        before = await snapshot(world.url)
        for command in LifecycleCommand:
            if (state, command) in TRANSITIONS:
                continue
            response = await client.post(
                f"{API}/sessions/{session_id}/actions/{command}", headers=world.admin
            )
            assert_error(response, 409, "invalid_transition")
            assert response.json()["details"] == {
                "machine": "session",
                "state": state.value,
                "command": command.value,
            }
            refused += 1
        response = await client.post(
            f"{API}/sessions/{session_id}/actions/explode", headers=world.admin
        )
        assert_error(response, 422, "validation_error")
        assert await snapshot(world.url) == before
        response = await client.get(f"{API}/sessions/{session_id}", headers=world.admin)
        assert response.json()["status"] == state
    assert refused == len(PATH_TO) * len(LifecycleCommand) - len(TRANSITIONS)


async def test_a_finished_session_refuses_edits(client: httpx.AsyncClient, world: World) -> None:
    s, admin = world.session_id, world.admin
    for step in ("open", "end"):
        assert (await client.post(f"{API}/sessions/{s}/actions/{step}", headers=admin)).is_success
    before = await snapshot(world.url)
    for method, path, body, command in (
        ("PATCH", f"/sessions/{s}", {"title": "late"}, "edit"),
        ("DELETE", f"/sessions/{s}", None, "delete"),
        ("POST", f"/sessions/{s}/invitations", {"point_codes": ["P002"]}, "invite"),
        ("POST", f"/sessions/{s}/join-links", {"rotate": True}, "issue join links"),
        ("POST", f"/sessions/{s}/invitations/P001/revoke", None, "revoke invitation"),
        ("POST", f"/sessions/{s}/invitations/P001/credential", None, "rotate credential"),
    ):
        response = await client.request(method, API + path, json=body, headers=admin)
        assert_error(response, 409, "invalid_transition")
        assert response.json()["details"] == {
            "machine": "session",
            "state": "ended",
            "command": command,
        }
    assert await snapshot(world.url) == before


@SQLITE_ONLY
async def test_schedule_needs_a_start(client: httpx.AsyncClient, world: World) -> None:
    response = await client.post(f"{API}/sessions", json={"title": "no start"}, headers=world.admin)
    session_id = response.json()["id"]
    before = await snapshot(world.url)
    response = await client.post(
        f"{API}/sessions/{session_id}/actions/schedule", headers=world.admin
    )
    assert_error(response, 409, "conflict")
    assert response.json()["details"] == {"field": "scheduled_start"}
    assert await snapshot(world.url) == before
    response = await client.get(f"{API}/sessions/{session_id}", headers=world.admin)
    assert response.json()["status"] == "draft"


@SQLITE_ONLY
async def test_schedule_window_must_run_forward(client: httpx.AsyncClient, world: World) -> None:
    before = await snapshot(world.url)
    start = "2030-01-01T08:00:00+07:00"
    for end in ("2030-01-01T07:00:00+07:00", start, "2030-01-01T01:00:00Z"):
        response = await client.post(
            f"{API}/sessions",
            json={"title": "x", "scheduled_start": start, "scheduled_end": end},
            headers=world.admin,
        )
        assert_error(response, 422, "validation_error")
        # The session already starts at `start`: an end alone at or before it is refused too.
        response = await client.patch(
            f"{API}/sessions/{world.session_id}", json={"scheduled_end": end}, headers=world.admin
        )
        assert_error(response, 422, "validation_error")
    response = await client.patch(
        f"{API}/sessions/{world.session_id}",
        json={"scheduled_start": "2030-01-02T08:00:00+07:00", "scheduled_end": start},
        headers=world.admin,
    )
    assert_error(response, 422, "validation_error")
    assert await snapshot(world.url) == before


@SQLITE_ONLY
async def test_session_settings_warning_before_limit(
    client: httpx.AsyncClient, world: World
) -> None:
    before = await snapshot(world.url)
    for settings in (
        {"speaking_time_limit_s": 60, "speaking_time_warning_s": 60},
        {"speaking_time_limit_s": 60, "speaking_time_warning_s": 61},
        {"speaking_time_limit_s": 10},  # the default warning is 30
        {"speaking_time_limit_s": 9},
        {"max_floor_holders": 0},
        {"rollcall_max_headcount": 100_001},
    ):
        response = await client.post(
            f"{API}/sessions", json={"title": "x", "settings": settings}, headers=world.admin
        )
        assert_error(response, 422, "validation_error")
    # A patch is merged with the stored settings (limit 180, warning 30), then checked whole.
    for patch in (
        {"speaking_time_warning_s": 180},
        {"speaking_time_limit_s": 30},
        {"speaking_time_limit_s": 20, "speaking_time_warning_s": 25},
    ):
        response = await client.patch(
            f"{API}/sessions/{world.session_id}", json={"settings": patch}, headers=world.admin
        )
        assert_error(response, 422, "validation_error")
    assert await snapshot(world.url) == before
    response = await client.patch(
        f"{API}/sessions/{world.session_id}",
        json={"settings": {"speaking_time_limit_s": 20, "speaking_time_warning_s": 5}},
        headers=world.admin,
    )
    assert response.status_code == 200, response.text


# --- login --------------------------------------------------------------------------------------


@SQLITE_ONLY
async def test_bad_login_is_refused_alike(client: httpx.AsyncClient, world: World) -> None:
    before = await snapshot(world.url)
    bodies = []
    for body in (
        {"username": "observer", "password": "wrong password"},
        {"username": "nobody", "password": TEST_PASSWORD},
        {"username": "", "password": TEST_PASSWORD},
        {"username": "observer", "password": TEST_PASSWORD.upper()},
    ):
        response = await client.post(f"{API}/auth/login", json=body)
        assert_error(response, 401, "unauthenticated")
        bodies.append(response.json())
    # Unknown user and wrong password are indistinguishable.
    assert all(b == bodies[0] for b in bodies)
    for body in ({"username": "observer"}, {"password": "x"}, {}):
        response = await client.post(f"{API}/auth/login", json=body)
        assert_error(response, 422, "validation_error")
    assert await snapshot(world.url) == before


@SQLITE_ONLY
async def test_login_throttle(
    small_client: httpx.AsyncClient, tmp_path: Path, database_url: str
) -> None:
    url = make_settings(tmp_path, database_url).effective_database_url
    before = await snapshot(url)
    wrong = {"username": "observer", "password": "wrong password"}
    for _ in range(3):
        response = await small_client.post(f"{API}/auth/login", json=wrong)
        assert_error(response, 401, "unauthenticated")
    for username in ("observer", " OBSERVER ", "Observer"):
        for password in ("wrong password", TEST_PASSWORD):
            response = await small_client.post(
                f"{API}/auth/login", json={"username": username, "password": password}
            )
            assert_error(response, 429, "rate_limited")
            retry_after = int(response.headers["retry-after"])
            assert 1 <= retry_after <= 301
            assert response.json()["details"]["retry_after_s"] <= retry_after
    assert await snapshot(url) == before  # not even last_login_at moved
    # Another account is not throttled with it.
    admin = await login(small_client, "admin")
    assert (await small_client.get(f"{API}/auth/me", headers=admin)).status_code == 200


# --- domain refusals change nothing --------------------------------------------------------------


async def test_domain_refusals_change_nothing(client: httpx.AsyncClient, world: World) -> None:
    s, admin = world.session_id, world.admin
    response = await client.patch(f"{API}/points/P003", json={"active": False}, headers=admin)
    assert response.status_code == 200
    before = await snapshot(world.url)
    admin_id = (await client.get(f"{API}/auth/me", headers=admin)).json()["id"]
    csv_headers = {**admin, "Content-Type": "text/csv"}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"/sessions/{s}/invitations", {"json": {"point_codes": ["P002", "NOPE"]}}),
        ("POST", f"/sessions/{s}/invitations", {"json": {"point_codes": ["P002", "P003"]}}),
        ("POST", f"/sessions/{s}/invitations", {"json": {"district_codes": ["D1", "D9"]}}),
        ("POST", f"/sessions/{s}/invitations", {"json": {"all": True, "point_codes": ["P2"]}}),
        ("POST", f"/sessions/{s}/invitations", {"json": {}}),
        ("POST", f"/sessions/{s}/join-links", {"json": {"point_codes": ["P001", "P002"]}}),
        ("POST", f"/sessions/{s}/invitations/P002/revoke", {}),
        ("POST", "/points", {"json": {"code": "P001", "name": "again"}}),
        ("PATCH", "/points/P001", {"json": {"name": None}}),
        ("PATCH", "/points/P001", {"json": {"active": None}}),
        ("DELETE", "/points/P001", {}),
        ("DELETE", "/points/NOPE", {}),
        (
            "POST",
            "/accounts",
            {"json": {"username": "target", "display_name": "x", "role": "admin"}},
        ),
        (
            "POST",
            "/accounts",
            {
                "json": {
                    "username": "newbie",
                    "display_name": "x",
                    "role": "admin",
                    "password": "short",
                }
            },
        ),
        (
            "POST",
            "/accounts",
            {"json": {"username": "newbie", "display_name": "x", "role": "root"}},
        ),
        (
            "POST",
            "/accounts",
            {"json": {"username": "Bad Name", "display_name": "x", "role": "admin"}},
        ),
        ("POST", f"/accounts/{world.target_account_id}/password", {"json": {"password": "target"}}),
        ("PATCH", f"/accounts/{admin_id}", {"json": {"role": "observer"}}),
        ("PATCH", f"/accounts/{admin_id}", {"json": {"active": False}}),
        ("PATCH", "/accounts/987654", {"json": {"active": False}}),
        ("PATCH", f"/sessions/{s}", {"json": {"title": None}}),
        ("PATCH", f"/sessions/{s}", {"json": {"title": "   "}}),
        ("DELETE", "/sessions/987654", {}),
        (
            "POST",
            "/points/import",
            {"content": b"code,name\nP500,ok\n,missing code\n", "headers": csv_headers},
        ),
        (
            "POST",
            "/points/import",
            {"content": b"code,name\nP500,ok\nP500,dup\n", "headers": csv_headers},
        ),
        ("POST", "/points/import", {"content": b"name,kind\nx,y\n", "headers": csv_headers}),
        ("POST", "/points/import", {"content": b"code,code,name\n", "headers": csv_headers}),
        (
            "POST",
            "/points/import",
            {"content": b"code,name\nP500,\xff\xfe\n", "headers": csv_headers},
        ),
        ("POST", "/points/import", {"content": b"", "headers": csv_headers}),
        (
            "POST",
            "/points/import",
            {"content": b'code,name\nP500,"unclosed\n', "headers": csv_headers},
        ),
        (
            "POST",
            "/points/import",
            {"content": b"code,name\nP500,x,extra\n", "headers": csv_headers},
        ),
        (
            "POST",
            "/points/import",
            {"content": b"code,name,active\nP500,x,perhaps\n", "headers": csv_headers},
        ),
        (
            "POST",
            "/points/import",
            {"content": b"code,name\nP500,x\n", "headers": {**admin, "Content-Type": "image/png"}},
        ),
        ("POST", "/points/import", {"content": b"code,name\nP500,x\n", "headers": {**admin}}),
        (
            "POST",
            "/points/import",
            {"files": {"wrong": ("p.csv", b"code,name\nP500,x\n")}, "headers": admin},
        ),
        (
            "POST",
            "/points/import",
            {
                "content": b"--x\r\nbroken",
                "headers": {**admin, "Content-Type": "multipart/form-data; boundary=x"},
            },
        ),
    ]
    for method, path, kwargs in cases:
        kwargs.setdefault("headers", admin)
        response = await client.request(method, API + path, **kwargs)
        assert 400 <= response.status_code < 500, (method, path, response.text)
        assert_error(response, response.status_code, None)
    assert await snapshot(world.url) == before
    # The admin's token survived the refused self-demotion.
    assert (await client.get(f"{API}/accounts", headers=admin)).status_code == 200
