"""Staff accounts and login over HTTP (SQLite and PostgreSQL), and the login throttle."""

from __future__ import annotations

import httpx
import pytest

from app.auth.throttle import LoginThrottle
from app.auth.tokens import issue_access_token
from app.main import create_app
from app.settings import Settings
from models import Role
from tests.conftest import TEST_PASSWORD, TEST_SECRET, assert_error, create_staff

Headers = dict[str, str]
ACCOUNTS = "/api/v1/accounts"


async def login_as(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )


def bearer(response: httpx.Response) -> Headers:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def account_id(client: httpx.AsyncClient, admin: Headers, username: str) -> int:
    response = await client.get(ACCOUNTS, headers=admin)
    assert response.status_code == 200, response.text
    (found,) = [a["id"] for a in response.json() if a["username"] == username]
    value: int = found
    return value


async def me(client: httpx.AsyncClient, headers: Headers) -> httpx.Response:
    return await client.get("/api/v1/auth/me", headers=headers)


# ---- login and /auth/me --------------------------------------------------------------------


async def test_login_returns_token_and_account(
    client: httpx.AsyncClient, staff: dict[str, Headers]
) -> None:
    response = await login_as(client, "operator", TEST_PASSWORD)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["expires_at"] > 0
    assert body["access_token"].count(".") == 2
    account = body["account"]
    assert (account["username"], account["role"], account["active"]) == (
        "operator",
        "operator",
        True,
    )
    assert account["last_login_at"] is not None
    assert "password" not in str(body["account"]).lower()
    assert "password_hash" not in account

    response = await me(client, bearer(response))
    assert response.status_code == 200
    assert response.json()["username"] == "operator"
    assert response.json()["role"] == "operator"
    # Usernames are matched case-insensitively at login.
    assert (await login_as(client, "  Operator ", TEST_PASSWORD)).status_code == 200


async def test_bad_logins_and_tokens(client: httpx.AsyncClient, staff: dict[str, Headers]) -> None:
    body = assert_error(
        await login_as(client, "operator", "wrong password!"), 401, "unauthenticated"
    )
    assert "password" in body["message"]
    unknown = assert_error(await login_as(client, "nobody", TEST_PASSWORD), 401, "unauthenticated")
    assert unknown["message"] == body["message"]  # no hint whether the username exists
    assert_error(
        await client.post("/api/v1/auth/login", json={"username": "operator"}),
        422,
        "validation_error",
    )

    assert_error(await client.get("/api/v1/auth/me"), 401, "unauthenticated")
    assert_error(await me(client, {"Authorization": "Bearer nonsense"}), 401, "unauthenticated")
    assert_error(await me(client, {"Authorization": "Basic b3A6cGFzcw=="}), 401, "unauthenticated")
    forged, _ = issue_access_token(
        "another-secret-" + "y" * 40, account_id=1, generation=0, role=Role.ADMIN, ttl_s=600
    )
    body = assert_error(
        await me(client, {"Authorization": f"Bearer {forged}"}), 401, "unauthenticated"
    )
    assert body["details"] == {"reason": "invalid"}
    expired, _ = issue_access_token(
        TEST_SECRET, account_id=1, generation=0, role=Role.ADMIN, ttl_s=60, now=1_000_000
    )
    body = assert_error(
        await me(client, {"Authorization": f"Bearer {expired}"}), 401, "unauthenticated"
    )
    assert body["details"] == {"reason": "expired"}


async def test_login_throttle_over_http(
    client: httpx.AsyncClient, staff: dict[str, Headers]
) -> None:
    for _ in range(10):  # the default limit per username and window
        assert_error(await login_as(client, "observer", "not the password"), 401, "unauthenticated")
    response = await login_as(client, "observer", TEST_PASSWORD)
    body = assert_error(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1
    assert body["details"]["retry_after_s"] > 0
    # Other usernames are not affected, nor existing tokens.
    assert (await login_as(client, "moderator", TEST_PASSWORD)).status_code == 200
    assert (await me(client, staff["observer"])).status_code == 200


# ---- creating accounts ---------------------------------------------------------------------


async def test_admin_creates_accounts(client: httpx.AsyncClient, staff: dict[str, Headers]) -> None:
    admin = staff["admin"]
    response = await client.post(
        ACCOUNTS,
        json={"username": "ward.staff-1", "display_name": "Nguyễn Văn Ánh", "role": "operator"},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    created = response.json()
    generated = created["generated_password"]
    assert isinstance(generated, str)
    assert len(generated) >= 20
    assert created["account"]["display_name"] == "Nguyễn Văn Ánh"
    assert created["account"]["last_login_at"] is None
    response = await login_as(client, "ward.staff-1", generated)
    assert response.json()["account"]["role"] == "operator"

    # The generated password is never shown again.
    response = await client.get(f"{ACCOUNTS}/{created['account']['id']}", headers=admin)
    assert "generated_password" not in response.json()
    assert generated not in response.text

    response = await client.post(
        ACCOUNTS,
        json={
            "username": "chair",
            "display_name": "Chủ tọa",
            "role": "moderator",
            "password": "a long enough password",
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    assert response.json()["generated_password"] is None
    assert (await login_as(client, "chair", "a long enough password")).status_code == 200


async def test_account_creation_refusals_change_nothing(
    client: httpx.AsyncClient, staff: dict[str, Headers]
) -> None:
    admin = staff["admin"]
    before = (await client.get(ACCOUNTS, headers=admin)).json()

    def new(**fields: object) -> dict[str, object]:
        return {"username": "newbie", "display_name": "Người mới", "role": "observer", **fields}

    body = assert_error(
        await client.post(ACCOUNTS, json=new(password="short"), headers=admin),
        422,
        "validation_error",
    )
    assert body["details"] == {"field": "password"}
    assert "10" in body["message"]
    body = assert_error(
        await client.post(
            ACCOUNTS, json=new(username="newbie-0123", password="NEWBIE-0123"), headers=admin
        ),
        422,
        "validation_error",
    )
    assert "username" in body["message"]
    body = assert_error(
        await client.post(ACCOUNTS, json=new(username="operator"), headers=admin), 409, "conflict"
    )
    assert body["details"] == {"username": "operator"}
    # Usernames are lower case: an upper-case one is rejected by the schema (not folded silently).
    body = assert_error(
        await client.post(ACCOUNTS, json=new(username="Operator"), headers=admin),
        422,
        "validation_error",
    )
    assert body["details"]["errors"][0]["loc"] == ["body", "username"]
    assert_error(
        await client.post(ACCOUNTS, json=new(username="NewBie"), headers=admin),
        422,
        "validation_error",
    )
    for bad in (
        new(role="superuser"),
        new(username="a"),
        new(username="bad name"),
        new(username="x" * 65),
        new(display_name="   "),
        new(extra=True),
    ):
        assert_error(await client.post(ACCOUNTS, json=bad, headers=admin), 422, "validation_error")
    for role in ("operator", "moderator", "observer"):
        assert_error(await client.post(ACCOUNTS, json=new(), headers=staff[role]), 403, "forbidden")
    assert_error(await client.post(ACCOUNTS, json=new()), 401, "unauthenticated")
    assert (await client.get(ACCOUNTS, headers=admin)).json() == before


async def test_surrounding_whitespace_in_username_is_trimmed(
    client: httpx.AsyncClient, staff: dict[str, Headers]
) -> None:
    response = await client.post(
        ACCOUNTS,
        json={"username": "  trimmed ", "display_name": "Tên", "role": "observer"},
        headers=staff["admin"],
    )
    assert response.status_code == 201, response.text
    assert response.json()["account"]["username"] == "trimmed"


# ---- listing, reading, updating ------------------------------------------------------------


async def test_list_get_and_patch(client: httpx.AsyncClient, staff: dict[str, Headers]) -> None:
    admin = staff["admin"]
    response = await client.get(ACCOUNTS, headers=admin)
    assert response.status_code == 200
    assert [a["username"] for a in response.json()] == [
        "admin",
        "moderator",
        "observer",
        "operator",
    ]
    assert all("password_hash" not in a for a in response.json())
    for role in ("operator", "moderator", "observer"):
        assert_error(await client.get(ACCOUNTS, headers=staff[role]), 403, "forbidden")

    moderator_id = await account_id(client, admin, "moderator")
    response = await client.get(f"{ACCOUNTS}/{moderator_id}", headers=admin)
    assert response.json()["username"] == "moderator"
    assert_error(await client.get(f"{ACCOUNTS}/99999", headers=admin), 404, "not_found")

    response = await client.patch(
        f"{ACCOUNTS}/{moderator_id}", json={"display_name": "Chủ tọa hội nghị"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == "Chủ tọa hội nghị"
    # A display-name change keeps existing tokens valid.
    assert (await me(client, staff["moderator"])).json()["display_name"] == "Chủ tọa hội nghị"
    assert_error(
        await client.patch(f"{ACCOUNTS}/{moderator_id}", json={"username": "x"}, headers=admin),
        422,
        "validation_error",
    )
    assert_error(
        await client.patch(f"{ACCOUNTS}/{moderator_id}", json={"role": "king"}, headers=admin),
        422,
        "validation_error",
    )
    assert_error(
        await client.patch(f"{ACCOUNTS}/99999", json={"active": False}, headers=admin),
        404,
        "not_found",
    )


async def test_role_change_revokes_old_tokens(
    client: httpx.AsyncClient, staff: dict[str, Headers]
) -> None:
    admin = staff["admin"]
    old = staff["operator"]
    operator_id = await account_id(client, admin, "operator")
    assert (await client.get("/api/v1/sessions", headers=old)).status_code == 200
    response = await client.patch(
        f"{ACCOUNTS}/{operator_id}", json={"role": "observer"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "observer"
    body = assert_error(await me(client, old), 401, "unauthenticated")
    assert body["details"] == {"reason": "revoked"}
    fresh = bearer(await login_as(client, "operator", TEST_PASSWORD))
    assert (await me(client, fresh)).json()["role"] == "observer"
    assert_error(
        await client.post("/api/v1/sessions", json={"title": "x"}, headers=fresh), 403, "forbidden"
    )
    # Setting the same role again is not a change and keeps tokens.
    await client.patch(f"{ACCOUNTS}/{operator_id}", json={"role": "observer"}, headers=admin)
    assert (await me(client, fresh)).status_code == 200


async def test_deactivation_revokes_tokens_and_blocks_login(
    client: httpx.AsyncClient, staff: dict[str, Headers]
) -> None:
    admin = staff["admin"]
    observer_id = await account_id(client, admin, "observer")
    response = await client.patch(
        f"{ACCOUNTS}/{observer_id}", json={"active": False}, headers=admin
    )
    assert response.status_code == 200
    assert response.json()["active"] is False
    assert_error(await me(client, staff["observer"]), 401, "unauthenticated")
    assert_error(await login_as(client, "observer", TEST_PASSWORD), 401, "unauthenticated")
    await client.patch(f"{ACCOUNTS}/{observer_id}", json={"active": True}, headers=admin)
    fresh = bearer(await login_as(client, "observer", TEST_PASSWORD))
    assert (await me(client, fresh)).status_code == 200
    # The token from before deactivation stays dead after reactivation.
    assert_error(await me(client, staff["observer"]), 401, "unauthenticated")


async def test_password_change_revokes_tokens(
    client: httpx.AsyncClient, staff: dict[str, Headers]
) -> None:
    admin = staff["admin"]
    moderator_id = await account_id(client, admin, "moderator")
    url = f"{ACCOUNTS}/{moderator_id}/password"
    response = await client.post(url, json={"password": "a brand new passphrase"}, headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["generated_password"] is None
    assert_error(await me(client, staff["moderator"]), 401, "unauthenticated")
    assert_error(await login_as(client, "moderator", TEST_PASSWORD), 401, "unauthenticated")
    second = bearer(await login_as(client, "moderator", "a brand new passphrase"))
    assert (await me(client, second)).status_code == 200

    response = await client.post(url, json={}, headers=admin)
    generated = response.json()["generated_password"]
    assert isinstance(generated, str)
    assert len(generated) >= 20
    assert_error(await me(client, second), 401, "unauthenticated")
    assert (await login_as(client, "moderator", generated)).status_code == 200

    # A weak password is refused and leaves the current one (and tokens) in place.
    third = bearer(await login_as(client, "moderator", generated))
    body = assert_error(
        await client.post(url, json={"password": "short"}, headers=admin), 422, "validation_error"
    )
    assert body["details"] == {"field": "password"}
    assert (await me(client, third)).status_code == 200
    assert (await login_as(client, "moderator", generated)).status_code == 200
    assert_error(
        await client.post(url, json={"password": "x" * 20}, headers=staff["operator"]),
        403,
        "forbidden",
    )
    assert_error(
        await client.post(f"{ACCOUNTS}/99999/password", json={}, headers=admin), 404, "not_found"
    )


async def test_last_active_admin_cannot_be_demoted_or_deactivated(
    client: httpx.AsyncClient, staff: dict[str, Headers]
) -> None:
    admin = staff["admin"]
    admin_id = await account_id(client, admin, "admin")
    for change in ({"role": "operator"}, {"active": False}, {"role": "observer", "active": False}):
        body = assert_error(
            await client.patch(f"{ACCOUNTS}/{admin_id}", json=change, headers=admin),
            409,
            "conflict",
        )
        assert "admin" in body["message"]
    response = await client.get(f"{ACCOUNTS}/{admin_id}", headers=admin)
    assert (response.json()["role"], response.json()["active"]) == ("admin", True)
    assert (await me(client, admin)).status_code == 200  # tokens untouched

    # An inactive admin does not count as another admin.
    response = await client.post(
        ACCOUNTS,
        json={"username": "deputy", "display_name": "Phó", "role": "admin", "password": "x" * 12},
        headers=admin,
    )
    deputy_id = response.json()["account"]["id"]
    await client.patch(f"{ACCOUNTS}/{deputy_id}", json={"active": False}, headers=admin)
    assert_error(
        await client.patch(f"{ACCOUNTS}/{admin_id}", json={"role": "operator"}, headers=admin),
        409,
        "conflict",
    )

    # With a second active admin, the first may step down.
    await client.patch(f"{ACCOUNTS}/{deputy_id}", json={"active": True}, headers=admin)
    deputy = bearer(await login_as(client, "deputy", "x" * 12))
    response = await client.patch(
        f"{ACCOUNTS}/{admin_id}", json={"role": "operator"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert_error(await client.get(ACCOUNTS, headers=admin), 401, "unauthenticated")
    # Now the deputy is the last one.
    assert_error(
        await client.patch(f"{ACCOUNTS}/{deputy_id}", json={"active": False}, headers=deputy),
        409,
        "conflict",
    )


# ---- LoginThrottle (pure, fake clock) ------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_blocks_after_max_failures_and_window_expires() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("op") is None
        throttle.failed("op")
        clock.now += 5
    # Failures at t=1000, 1005, 1010; now t=1015.
    assert throttle.retry_after("op") == pytest.approx(45.0)
    assert throttle.retry_after("other") is None
    clock.now = 1059
    assert throttle.retry_after("op") == pytest.approx(1.0)
    clock.now = 1060.5  # the first failure left the window
    assert throttle.retry_after("op") is None
    throttle.failed("op")
    # 1005, 1010, 1060.5 are within the window again.
    assert throttle.retry_after("op") == pytest.approx(60 - (1060.5 - 1005))
    clock.now = 1200
    assert throttle.retry_after("op") is None


def test_throttle_success_resets() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=2, window_s=300, clock=clock)
    throttle.failed("op")
    throttle.succeeded("op")
    throttle.failed("op")
    assert throttle.retry_after("op") is None
    throttle.failed("op")
    assert throttle.retry_after("op") is not None
    throttle.succeeded("op")
    assert throttle.retry_after("op") is None


def test_throttle_keys_are_independent_and_forgotten() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=1, window_s=10, clock=clock)
    throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(10.0)
    assert throttle.retry_after("b") is None
    clock.now += 11
    assert throttle.retry_after("a") is None
    assert throttle._failures == {}  # expired keys do not pile up


async def test_throttle_is_per_address(settings: Settings) -> None:
    """Wrong passwords typed on one machine do not lock the account out of another."""
    app = create_app(settings)
    await create_staff(settings, "operator", Role.OPERATOR)
    async with app.router.lifespan_context(app):
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(address, 50000)),
                base_url="http://diemcau.test",
            )
            for address in ("192.0.2.10", "192.0.2.20")
        ]
        guesser, desk = clients
        try:
            for _ in range(10):
                response = await login_as(guesser, "operator", "not the password")
                assert response.status_code == 401
            assert (await login_as(guesser, "operator", TEST_PASSWORD)).status_code == 429
            assert (await login_as(desk, "operator", TEST_PASSWORD)).status_code == 200
        finally:
            for client in clients:
                await client.aclose()
