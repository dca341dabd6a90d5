"""Who may call what: every route of the app against every kind of caller, and token validity.

The matrix is built from the app's own route list, so a route added without an entry here fails
`test_every_route_has_a_policy`. Allowed calls are chosen to be repeatable (a conflict, a dry run, an
idempotent edit), so each role meets the same state and gets the same, exact status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from app.auth.tokens import issue_access_token
from app.main import create_app
from app.settings import Settings
from models import Role
from tests.conftest import TEST_PASSWORD, TEST_SECRET, create_staff, login

API = "/api/v1"
# For checks that end before the database: run them once, on SQLite.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PUBLIC, STAFF, OPERATORS, ADMINS = "public", "staff", "operators", "admins"
CALLERS = ("none", "admin", "operator", "moderator", "observer", "join")
STAFF_ROLES = frozenset(r.value for r in Role)
ALLOWED = {
    PUBLIC: frozenset(CALLERS),
    STAFF: STAFF_ROLES,
    OPERATORS: frozenset({"admin", "operator"}),
    ADMINS: frozenset({"admin"}),
}


@dataclass
class World:
    """A small prepared state: three points, an open session S inviting P001 and P002."""

    session_id: int
    other_session_id: int
    target_account_id: int
    credential: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    policy: str
    path: str
    allowed_status: int
    json: Any = None
    content: bytes | None = None
    content_type: str | None = None


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path template) of every route the app serves; HEAD rides along with GET."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        path = route.path
        assert path is not None, route
        methods = route.methods
        if path == "/static":  # the web app's files: public, checked by test_static_is_public
            continue
        if not methods:  # a WebSocket route
            found.add(("WEBSOCKET", path))
            continue
        found.update((method, path) for method in methods if method != "HEAD")
    return found


def route_table(w: World) -> dict[tuple[str, str], Call]:
    s = w.session_id
    a = w.target_account_id
    point = {"code": "P001", "name": "Point One"}
    return {
        ("GET", "/openapi.json"): Call(PUBLIC, "/openapi.json", 200),
        ("GET", "/docs"): Call(PUBLIC, "/docs", 200),
        ("GET", "/docs/oauth2-redirect"): Call(PUBLIC, "/docs/oauth2-redirect", 200),
        ("GET", "/redoc"): Call(PUBLIC, "/redoc", 200),
        ("GET", "/healthz"): Call(PUBLIC, "/healthz", 200),
        ("GET", "/join"): Call(PUBLIC, "/join", 200),
        ("GET", "/login"): Call(PUBLIC, "/login", 200),
        # Pages hold no data: each asks for a login before it reads anything.
        ("GET", "/console"): Call(PUBLIC, "/console", 200),
        ("GET", "/moderator"): Call(PUBLIC, "/moderator", 200),
        ("GET", "/hall"): Call(PUBLIC, "/hall", 200),
        # A report with a credential that is no join link: refused every time, nothing logged.
        ("POST", f"{API}/join/readiness"): Call(
            PUBLIC,
            f"{API}/join/readiness",
            401,
            json={"credential": "dc1_nope", "camera": True, "microphone": True},
        ),
        ("GET", f"{API}/sessions/{{session_id}}/readiness"): Call(
            STAFF, f"{API}/sessions/{s}/readiness", 200
        ),
        ("POST", f"{API}/qr"): Call(STAFF, f"{API}/qr", 200, json={"text": "https://x/join#y"}),
        ("GET", "/metrics"): Call(PUBLIC, "/metrics", 200),
        ("GET", f"{API}/ws/schema.json"): Call(PUBLIC, f"{API}/ws/schema.json", 200),
        ("GET", "/"): Call(PUBLIC, "/", 307),
        ("POST", f"{API}/auth/login"): Call(
            PUBLIC,
            f"{API}/auth/login",
            200,
            json={"username": "observer", "password": TEST_PASSWORD},
        ),
        ("POST", f"{API}/join/verify"): Call(
            PUBLIC, f"{API}/join/verify", 200, json={"credential": w.credential}
        ),
        ("GET", f"{API}/auth/me"): Call(STAFF, f"{API}/auth/me", 200),
        ("GET", f"{API}/accounts"): Call(ADMINS, f"{API}/accounts", 200),
        ("POST", f"{API}/accounts"): Call(
            ADMINS,
            f"{API}/accounts",
            409,  # the username is taken
            json={"username": "target", "display_name": "T", "role": "observer"},
        ),
        ("GET", f"{API}/accounts/{{account_id}}"): Call(ADMINS, f"{API}/accounts/{a}", 200),
        ("PATCH", f"{API}/accounts/{{account_id}}"): Call(
            ADMINS, f"{API}/accounts/{a}", 200, json={"display_name": "Target"}
        ),
        ("POST", f"{API}/accounts/{{account_id}}/password"): Call(
            ADMINS, f"{API}/accounts/{a}/password", 422, json={"password": "short"}
        ),
        ("GET", f"{API}/points"): Call(STAFF, f"{API}/points", 200),
        ("GET", f"{API}/points/areas"): Call(STAFF, f"{API}/points/areas", 200),
        ("POST", f"{API}/points/import"): Call(
            OPERATORS,
            f"{API}/points/import?dry_run=true",
            200,
            content=b"code,name\nP001,Point One\nP009,Point Nine\n",
            content_type="text/csv",
        ),
        ("POST", f"{API}/points"): Call(OPERATORS, f"{API}/points", 409, json=point),
        ("GET", f"{API}/points/{{code}}"): Call(STAFF, f"{API}/points/P001", 200),
        ("PATCH", f"{API}/points/{{code}}"): Call(
            OPERATORS, f"{API}/points/P001", 200, json={"name": "Point One"}
        ),
        # P001 is invited, so deleting it is a conflict every time.
        ("DELETE", f"{API}/points/{{code}}"): Call(OPERATORS, f"{API}/points/P001", 409),
        ("GET", f"{API}/sessions"): Call(STAFF, f"{API}/sessions", 200),
        ("POST", f"{API}/sessions"): Call(OPERATORS, f"{API}/sessions", 201, json={"title": "T"}),
        ("GET", f"{API}/sessions/{{session_id}}"): Call(STAFF, f"{API}/sessions/{s}", 200),
        ("PATCH", f"{API}/sessions/{{session_id}}"): Call(
            OPERATORS, f"{API}/sessions/{s}", 200, json={"title": "Session S"}
        ),
        # S is open: not deletable, and already open.
        ("DELETE", f"{API}/sessions/{{session_id}}"): Call(OPERATORS, f"{API}/sessions/{s}", 409),
        ("POST", f"{API}/sessions/{{session_id}}/actions/{{command}}"): Call(
            OPERATORS, f"{API}/sessions/{s}/actions/open", 409
        ),
        ("GET", f"{API}/sessions/{{session_id}}/invitations"): Call(
            STAFF, f"{API}/sessions/{s}/invitations", 200
        ),
        ("POST", f"{API}/sessions/{{session_id}}/invitations"): Call(
            OPERATORS, f"{API}/sessions/{s}/invitations", 200, json={"point_codes": ["P001"]}
        ),
        ("GET", f"{API}/sessions/{{session_id}}/invitations/{{code}}"): Call(
            STAFF, f"{API}/sessions/{s}/invitations/P001", 200
        ),
        # P002 carries the revoke/credential calls, so P001's join credential stays valid.
        ("POST", f"{API}/sessions/{{session_id}}/invitations/{{code}}/revoke"): Call(
            OPERATORS, f"{API}/sessions/{s}/invitations/P002/revoke", 200
        ),
        ("POST", f"{API}/sessions/{{session_id}}/invitations/{{code}}/credential"): Call(
            OPERATORS, f"{API}/sessions/{s}/invitations/P002/credential", 200
        ),
        ("POST", f"{API}/sessions/{{session_id}}/join-links"): Call(
            OPERATORS, f"{API}/sessions/{s}/join-links", 200, json={"point_codes": ["P001"]}
        ),
        ("GET", f"{API}/sessions/{{session_id}}/events"): Call(
            STAFF, f"{API}/sessions/{s}/events", 200
        ),
        ("GET", f"{API}/sessions/{{session_id}}/media"): Call(
            STAFF, f"{API}/sessions/{s}/media", 200
        ),
        ("GET", f"{API}/sessions/{{session_id}}/floor"): Call(
            STAFF, f"{API}/sessions/{s}/floor", 200
        ),
        ("GET", f"{API}/sessions/{{session_id}}/floor/speaking-times"): Call(
            STAFF, f"{API}/sessions/{s}/floor/speaking-times", 200
        ),
        ("GET", f"{API}/sessions/{{session_id}}/rollcalls"): Call(
            STAFF, f"{API}/sessions/{s}/rollcalls", 200
        ),
        # A deadline too short: refused every time, so no round is opened.
        ("POST", f"{API}/sessions/{{session_id}}/rollcalls"): Call(
            OPERATORS, f"{API}/sessions/{s}/rollcalls", 422, json={"deadline_s": 5}
        ),
        ("GET", f"{API}/sessions/{{session_id}}/rollcalls/{{number}}"): Call(
            STAFF, f"{API}/sessions/{s}/rollcalls/1", 404
        ),
        ("POST", f"{API}/sessions/{{session_id}}/rollcalls/{{number}}/close"): Call(
            OPERATORS, f"{API}/sessions/{s}/rollcalls/1/close", 409
        ),
        (
            "POST",
            f"{API}/sessions/{{session_id}}/rollcalls/{{number}}/records/{{point_code}}",
        ): Call(
            OPERATORS,
            f"{API}/sessions/{s}/rollcalls/1/records/P001",
            422,
            json={"status": "excused", "reason": ""},
        ),
        ("GET", f"{API}/sessions/{{session_id}}/presence/{{point_code}}"): Call(
            STAFF, f"{API}/sessions/{s}/presence/P001", 200
        ),
        ("GET", f"{API}/sessions/{{session_id}}/attendance"): Call(
            STAFF, f"{API}/sessions/{s}/attendance", 200
        ),
        ("GET", f"{API}/sessions/{{session_id}}/attendance.csv"): Call(
            STAFF, f"{API}/sessions/{s}/attendance.csv", 200
        ),
        ("GET", f"{API}/sessions/{{session_id}}/attendance.xlsx"): Call(
            STAFF, f"{API}/sessions/{s}/attendance.xlsx", 200
        ),
        ("GET", f"{API}/sessions/{{session_id}}/attendance.html"): Call(
            STAFF, f"{API}/sessions/{s}/attendance.html", 200
        ),
        # A label too long: refused every time, so no token piles up.
        ("POST", f"{API}/sessions/{{session_id}}/whip-tokens"): Call(
            OPERATORS, f"{API}/sessions/{s}/whip-tokens", 422, json={"label": "x" * 101}
        ),
        ("GET", f"{API}/sessions/{{session_id}}/whip-tokens"): Call(
            OPERATORS, f"{API}/sessions/{s}/whip-tokens", 200
        ),
        ("DELETE", f"{API}/sessions/{{session_id}}/whip-tokens/{{token_id}}"): Call(
            OPERATORS, f"{API}/sessions/{s}/whip-tokens/999999", 404
        ),
        # WHIP takes its own bearer token (tests/whip): no caller here has one.
        ("POST", f"{API}/whip/{{session_id}}"): Call(
            PUBLIC, f"{API}/whip/{s}", 401, content=b"v=0\r\n", content_type="application/sdp"
        ),
        ("DELETE", f"{API}/whip/{{session_id}}/resources/{{resource_id}}"): Call(
            PUBLIC, f"{API}/whip/{s}/resources/r1", 401
        ),
        ("PATCH", f"{API}/whip/{{session_id}}/resources/{{resource_id}}"): Call(
            PUBLIC, f"{API}/whip/{s}/resources/r1", 405
        ),
        ("OPTIONS", f"{API}/whip/{{session_id}}"): Call(PUBLIC, f"{API}/whip/{s}", 204),
        ("OPTIONS", f"{API}/whip/{{session_id}}/resources/{{resource_id}}"): Call(
            PUBLIC, f"{API}/whip/{s}/resources/r1", 204
        ),
    }


async def make_world(client: httpx.AsyncClient, staff: dict[str, dict[str, str]]) -> World:
    admin = staff["admin"]
    for code, name in (("P001", "Point One"), ("P002", "Point Two"), ("P003", "Point Three")):
        response = await client.post(
            f"{API}/points", json={"code": code, "name": name}, headers=admin
        )
        assert response.status_code == 201, response.text
    response = await client.post(
        f"{API}/accounts",
        json={"username": "target", "display_name": "Target", "role": "observer"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    target = response.json()["account"]["id"]
    ids = []
    for title, codes in (("Session S", ["P001", "P002"]), ("Session B", ["P003"])):
        response = await client.post(f"{API}/sessions", json={"title": title}, headers=admin)
        assert response.status_code == 201, response.text
        session_id = response.json()["id"]
        ids.append(session_id)
        response = await client.post(
            f"{API}/sessions/{session_id}/invitations", json={"point_codes": codes}, headers=admin
        )
        assert response.status_code == 200, response.text
    response = await client.post(f"{API}/sessions/{ids[0]}/join-links", json={}, headers=admin)
    assert response.status_code == 200, response.text
    links = {link["point_code"]: link["credential"] for link in response.json()["links"]}
    response = await client.post(f"{API}/sessions/{ids[0]}/actions/open", headers=admin)
    assert response.status_code == 200, response.text
    credential = links["P001"]
    headers = {**staff, "none": {}, "join": {"Authorization": f"Bearer {credential}"}}
    return World(
        session_id=ids[0],
        other_session_id=ids[1],
        target_account_id=target,
        credential=credential,
        headers=headers,
    )


async def send(
    client: httpx.AsyncClient, method: str, call: Call, headers: dict[str, str]
) -> httpx.Response:
    headers = dict(headers)
    if call.content_type:
        headers["Content-Type"] = call.content_type
    return await client.request(
        method,
        call.path,
        json=call.json,
        content=call.content,
        headers=headers,
        follow_redirects=False,
    )


@SQLITE_ONLY
def test_every_route_has_a_policy(settings: Settings) -> None:
    """A route without an entry in the table fails here, so its roles get decided."""
    world = World(session_id=1, other_session_id=2, target_account_id=1, credential="x")
    app = create_app(settings)
    served = app_routes(app)
    # The live endpoint authenticates in its first message: tests/integration checks its roles.
    websockets = {route for route in served if route[0] == "WEBSOCKET"}
    assert websockets == {("WEBSOCKET", f"{API}/ws")}
    served -= websockets
    table = route_table(world)
    assert served - table.keys() == set(), "routes with no role policy in test_roles.py"
    assert table.keys() - served == set(), "policies for routes the app does not serve"
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert documented <= served


async def test_role_matrix(client: httpx.AsyncClient, staff: dict[str, dict[str, str]]) -> None:
    world = await make_world(client, staff)
    table = route_table(world)
    failures: list[str] = []
    checked = 0
    for (method, _template), call in sorted(table.items(), key=lambda kv: kv[0][::-1]):
        for caller in CALLERS:
            response = await send(client, method, call, world.headers[caller])
            checked += 1
            if caller in ALLOWED[call.policy]:
                expected, code = call.allowed_status, None
            elif caller in ("none", "join"):
                expected, code = 401, "unauthenticated"
            else:
                expected, code = 403, "forbidden"
            ok = response.status_code == expected
            if ok and code is not None:
                body = response.json()
                ok = body.get("code") == code and isinstance(body.get("message"), str)
            if not ok:
                failures.append(
                    f"{method} {call.path} as {caller}: expected {expected} {code or ''}, "
                    f"got {response.status_code} {response.text[:200]}"
                )
    assert failures == [], "\n".join(failures)
    assert checked == len(table) * len(CALLERS)
    # The repeated calls kept the prepared state: P001 still joins, S is still open.
    response = await client.post(f"{API}/join/verify", json={"credential": world.credential})
    assert response.status_code == 200
    assert response.json()["session_status"] == "open"


@SQLITE_ONLY
async def test_forbidden_body_names_role_and_allowed(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    response = await client.get(f"{API}/accounts", headers=staff["operator"])
    assert response.status_code == 403
    assert response.json() == {
        "code": "forbidden",
        "message": "your role may not do this",
        "details": {"role": "operator", "allowed": ["admin"]},
    }
    response = await client.post(f"{API}/sessions", json={"title": "x"}, headers=staff["observer"])
    assert response.status_code == 403
    assert response.json()["details"]["allowed"] == ["admin", "operator"]


@SQLITE_ONLY
async def test_join_credential_opens_no_staff_route(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    """The point's credential works at /join/verify and nowhere else, in any header shape."""
    world = await make_world(client, staff)
    shapes = [
        {"Authorization": f"Bearer {world.credential}"},
        {"Authorization": f"bearer {world.credential}"},
        {"Authorization": world.credential},
        {"Authorization": f"Basic {world.credential}"},
    ]
    table = route_table(world)
    for (method, _), call in table.items():
        if call.policy == PUBLIC:
            continue
        for headers in shapes:
            response = await send(client, method, call, headers)
            assert response.status_code == 401, (method, call.path, headers, response.text)
            assert response.json()["code"] == "unauthenticated"


async def account_id(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get(f"{API}/auth/me", headers=headers)
    assert response.status_code == 200, response.text
    value: int = response.json()["id"]
    return value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_refused(
    client: httpx.AsyncClient, headers: dict[str, str], reason: str | None
) -> None:
    for path in (f"{API}/auth/me", f"{API}/sessions", f"{API}/points"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, (path, response.text)
        body = response.json()
        assert body["code"] == "unauthenticated"
        if reason is not None:
            assert body["details"]["reason"] == reason


@SQLITE_ONLY
async def test_expired_token_is_refused(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    admin_id = await account_id(client, staff["admin"])
    token, expires = issue_access_token(
        TEST_SECRET,
        account_id=admin_id,
        generation=0,
        role=Role.ADMIN,
        ttl_s=3600,
        now=time.time() - 7200,
    )
    assert expires < time.time()
    await assert_refused(client, bearer(token), "expired")
    # The same claims, still valid, are accepted: the expiry is what was refused.
    fresh, _ = issue_access_token(
        TEST_SECRET, account_id=admin_id, generation=0, role=Role.ADMIN, ttl_s=3600
    )
    response = await client.get(f"{API}/accounts", headers=bearer(fresh))
    assert response.status_code == 200, response.text


@SQLITE_ONLY
async def test_token_signed_with_another_secret_is_refused(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    admin_id = await account_id(client, staff["admin"])
    token, _ = issue_access_token(
        "another-secret-" + "y" * 40,
        account_id=admin_id,
        generation=0,
        role=Role.ADMIN,
        ttl_s=3600,
    )
    await assert_refused(client, bearer(token), "invalid")
    for garbage in ("", "x", "a.b.c", staff["admin"]["Authorization"][7:-2]):
        response = await client.get(f"{API}/auth/me", headers=bearer(garbage))
        assert response.status_code == 401, garbage
        assert response.json()["code"] == "unauthenticated"


@SQLITE_ONLY
async def test_token_claims_do_not_grant_a_role(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    """The role comes from the account row, not from the (correctly signed) token claim."""
    observer_id = await account_id(client, staff["observer"])
    token, _ = issue_access_token(
        TEST_SECRET, account_id=observer_id, generation=0, role=Role.ADMIN, ttl_s=3600
    )
    response = await client.get(f"{API}/accounts", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["details"]["role"] == "observer"
    ghost, _ = issue_access_token(
        TEST_SECRET, account_id=10**6, generation=0, role=Role.ADMIN, ttl_s=3600
    )
    await assert_refused(client, bearer(ghost), "revoked")


async def test_deactivated_account_token_is_refused(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    operator_id = await account_id(client, staff["operator"])
    response = await client.patch(
        f"{API}/accounts/{operator_id}", json={"active": False}, headers=staff["admin"]
    )
    assert response.status_code == 200, response.text
    await assert_refused(client, staff["operator"], "revoked")
    response = await client.post(
        f"{API}/auth/login", json={"username": "operator", "password": TEST_PASSWORD}
    )
    assert response.status_code == 401
    # Reactivation does not bring the old token back: its generation is gone for good.
    response = await client.patch(
        f"{API}/accounts/{operator_id}", json={"active": True}, headers=staff["admin"]
    )
    assert response.status_code == 200
    await assert_refused(client, staff["operator"], "revoked")
    assert (await client.get(f"{API}/auth/me", headers=await login(client, "operator"))).is_success


async def test_password_change_ends_older_tokens(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    observer_id = await account_id(client, staff["observer"])
    new_password = "a brand new password"
    response = await client.post(
        f"{API}/accounts/{observer_id}/password",
        json={"password": new_password},
        headers=staff["admin"],
    )
    assert response.status_code == 200, response.text
    await assert_refused(client, staff["observer"], "revoked")
    response = await client.post(
        f"{API}/auth/login", json={"username": "observer", "password": TEST_PASSWORD}
    )
    assert response.status_code == 401
    response = await client.post(
        f"{API}/auth/login", json={"username": "observer", "password": new_password}
    )
    assert response.status_code == 200
    fresh = bearer(response.json()["access_token"])
    assert (await client.get(f"{API}/auth/me", headers=fresh)).status_code == 200
    # Other accounts' tokens are untouched.
    assert (await client.get(f"{API}/auth/me", headers=staff["moderator"])).status_code == 200


async def test_role_change_ends_older_tokens(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    moderator_id = await account_id(client, staff["moderator"])
    response = await client.patch(
        f"{API}/accounts/{moderator_id}", json={"role": "operator"}, headers=staff["admin"]
    )
    assert response.status_code == 200
    await assert_refused(client, staff["moderator"], "revoked")
    promoted = await login(client, "moderator")
    response = await client.post(f"{API}/sessions", json={"title": "x"}, headers=promoted)
    assert response.status_code == 201


@SQLITE_ONLY
async def test_token_of_one_app_is_refused_by_an_app_with_another_secret(
    tmp_path: Any, database_url: str, staff: dict[str, dict[str, str]]
) -> None:
    from tests.conftest import make_settings

    other = create_app(make_settings(tmp_path / "other", database_url, secret_key="z" * 48))
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://diemcau.test") as http:
            await assert_refused(http, staff["admin"], "invalid")
            await create_staff(make_settings(tmp_path, database_url), "second", Role.ADMIN)
            assert (
                await http.get(f"{API}/auth/me", headers=await login(http, "second"))
            ).is_success


# --- another session's ids ----------------------------------------------------------------------


async def snapshot_session(
    client: httpx.AsyncClient, headers: dict[str, str], session_id: int
) -> tuple[Any, ...]:
    session = await client.get(f"{API}/sessions/{session_id}", headers=headers)
    invitations = await client.get(f"{API}/sessions/{session_id}/invitations", headers=headers)
    events = await client.get(f"{API}/sessions/{session_id}/events", headers=headers)
    assert session.status_code == invitations.status_code == events.status_code == 200
    return session.json(), invitations.json(), events.json()


async def test_ids_of_another_session_are_not_found(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    world = await make_world(client, staff)
    op = staff["operator"]
    a, b = world.session_id, world.other_session_id
    response = await client.post(f"{API}/sessions/{b}/join-links", json={}, headers=op)
    assert response.status_code == 200
    b_credential = response.json()["links"][0]["credential"]
    before_a = await snapshot_session(client, op, a)
    before_b = await snapshot_session(client, op, b)

    for method, suffix in (("GET", ""), ("POST", "/revoke"), ("POST", "/credential")):
        response = await client.request(
            method, f"{API}/sessions/{a}/invitations/P003{suffix}", headers=op
        )
        assert response.status_code == 404, (method, suffix, response.text)
        assert response.json()["code"] == "not_found"
        assert response.json()["details"] == {"session_id": a, "point_code": "P003"}
    for body in (
        {"point_codes": ["P003"]},
        {"point_codes": ["P003"], "rotate": True},
        {"point_codes": ["P001", "P003"], "rotate": True},
    ):
        response = await client.post(f"{API}/sessions/{a}/join-links", json=body, headers=op)
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"
        assert response.json()["details"] == {"point_codes": ["P003"]}

    assert await snapshot_session(client, op, a) == before_a
    assert await snapshot_session(client, op, b) == before_b
    response = await client.post(f"{API}/join/verify", json={"credential": b_credential})
    assert response.status_code == 200
    assert response.json()["session_id"] == b
    response = await client.post(f"{API}/join/verify", json={"credential": world.credential})
    assert response.json()["session_id"] == a


@SQLITE_ONLY
async def test_events_of_a_missing_session_are_not_found(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    for path in ("events", "invitations", "invitations/P001"):
        response = await client.get(f"{API}/sessions/987654/{path}", headers=staff["observer"])
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
        assert response.json()["details"]["session_id"] == 987654


ODD_IDS = [
    str(2**70),
    str(2**63),
    str(2**63 - 1),
    str(2**31),
    str(-(2**70)),
    "-1",
    "0",
    "abc",
    "1.5",
    "1e3",
    "%20",
    "0x10",
    "١٢",  # Arabic-Indic digits
    "%00",
]


async def test_odd_ids_are_a_typed_error(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    for odd in ODD_IDS:
        await check_odd_id(client, staff["admin"], odd)


async def check_odd_id(client: httpx.AsyncClient, admin: dict[str, str], odd: str) -> None:
    requests: list[tuple[str, str, Any]] = [
        ("GET", f"{API}/sessions/{odd}", None),
        ("PATCH", f"{API}/sessions/{odd}", {"title": "x"}),
        ("DELETE", f"{API}/sessions/{odd}", None),
        ("POST", f"{API}/sessions/{odd}/actions/open", None),
        ("GET", f"{API}/sessions/{odd}/events", None),
        ("GET", f"{API}/sessions/{odd}/invitations", None),
        ("POST", f"{API}/sessions/{odd}/invitations", {"all": True}),
        ("GET", f"{API}/sessions/{odd}/invitations/P001", None),
        ("POST", f"{API}/sessions/{odd}/invitations/P001/revoke", None),
        ("POST", f"{API}/sessions/{odd}/invitations/P001/credential", None),
        ("POST", f"{API}/sessions/{odd}/join-links", {}),
        ("GET", f"{API}/accounts/{odd}", None),
        ("PATCH", f"{API}/accounts/{odd}", {"display_name": "x"}),
        ("POST", f"{API}/accounts/{odd}/password", {}),
        ("GET", f"{API}/points/{odd}", None),
        ("PATCH", f"{API}/points/{odd}", {"name": "x"}),
        ("DELETE", f"{API}/points/{odd}", None),
        ("GET", f"{API}/sessions/1/invitations/{odd}", None),
        ("POST", f"{API}/sessions/1/invitations/{odd}/revoke", None),
    ]
    for method, path, body in requests:
        response = await client.request(method, path, json=body, headers=admin)
        assert response.status_code in (404, 422), (method, path, response.text)
        expected = "not_found" if response.status_code == 404 else "validation_error"
        assert response.json()["code"] == expected, (method, path, response.text)


async def test_static_is_public(client: httpx.AsyncClient) -> None:
    """The web app's pages and scripts hold no secret: anyone may load them, and a path out of the
    folder is not served."""
    for path in ("/static/point.html", "/static/js/live.js", "/static/css/app.css"):
        response = await client.get(path)
        assert response.status_code == 200, path
    assert (await client.get("/static/../app/settings.py")).status_code == 404
    assert (await client.get("/static/%2e%2e/routes.py")).status_code == 404
