"""WHIP tokens over HTTP, on SQLite and PostgreSQL: minted once, listed without secrets, revoked."""

from __future__ import annotations

import hashlib

from sqlalchemy import select

from app.logging_setup import scrub
from app.whip.service import MAX_ACTIVE_TOKENS
from app.whip.tokens import looks_like_token, new_token
from bridges.invitations.credentials import looks_like_credential
from models import WhipToken
from tests.conftest import assert_error
from tests.whip.conftest import API, Whip


def test_token_shape() -> None:
    token = new_token()
    assert looks_like_token(token)
    assert token.startswith("dc1_whip_")
    assert len(token) == len("dc1_whip_") + 43
    # Never mistaken for a join credential, and redacted by the log scrubber like one.
    assert not looks_like_credential(token)
    assert new_token() != token
    assert token not in scrub(f"posted with {token} as the key")


async def test_mint_list_revoke(whip: Whip) -> None:
    session_id = await whip.session()
    response = await whip.http.post(
        f"{API}/sessions/{session_id}/whip-tokens", json={"label": " OBS desk 1 "}, headers=whip.op
    )
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    issued = response.json()
    assert looks_like_token(issued["token"])
    assert issued["whip_url"] == f"http://diemcau.test/api/v1/whip/{session_id}"
    assert issued["label"] == "OBS desk 1"
    assert issued["created_by"] == "account:operator"
    assert (issued["revoked"], issued["in_use"], issued["last_used_at"]) == (False, False, None)

    # Only the SHA-256 is stored.
    async with whip.state.sessions() as db:
        row = await db.scalar(select(WhipToken).where(WhipToken.id == issued["id"]))
    assert row is not None
    assert row.token_hash == hashlib.sha256(issued["token"].encode()).hexdigest()

    # The label is optional, the body is not (as everywhere in the API).
    url = f"{API}/sessions/{session_id}/whip-tokens"
    assert_error(await whip.http.post(url, headers=whip.op), 422, "validation_error")
    response = await whip.http.post(url, json={}, headers=whip.op)
    assert response.status_code == 201, response.text
    second = response.json()
    assert second["label"] == ""

    listed = await whip.tokens(session_id)
    assert listed["whip_url"] == issued["whip_url"]
    assert [t["id"] for t in listed["items"]] == [issued["id"], second["id"]]
    assert issued["token"] not in str(listed)
    assert all("token" not in item for item in listed["items"])

    response = await whip.revoke(session_id, issued["id"])
    assert response.status_code == 204, response.text
    # Idempotent, and logged once.
    assert (await whip.revoke(session_id, issued["id"])).status_code == 204
    items = {t["id"]: t for t in (await whip.tokens(session_id))["items"]}
    assert items[issued["id"]]["revoked"] is True
    assert items[issued["id"]]["revoked_at"] is not None
    assert items[second["id"]]["revoked"] is False

    types = [e["type"] for e in await whip.events(session_id)]
    assert types.count("whip_token.issued") == 2
    assert types.count("whip_token.revoked") == 1
    revoked = next(e for e in await whip.events(session_id) if e["type"] == "whip_token.revoked")
    assert revoked["payload"] == {
        "token_id": issued["id"],
        "label": "OBS desk 1",
        "ended_ingest": False,
    }
    assert issued["token"] not in str(await whip.events(session_id))


async def test_tokens_are_scoped_to_their_session(whip: Whip) -> None:
    first = await whip.session()
    other = await whip.session(title="Khác")
    token = await whip.mint(first)
    response = await whip.revoke(other, token["id"])
    assert_error(response, 404, "whip_token_not_found")
    assert (await whip.tokens(other))["items"] == []
    assert_error(await whip.revoke(first, 10**9), 404, "whip_token_not_found")
    assert_error(
        await whip.http.get(f"{API}/sessions/{10**9}/whip-tokens", headers=whip.op),
        404,
        "not_found",
    )
    assert_error(
        await whip.http.post(f"{API}/sessions/{10**9}/whip-tokens", json={}, headers=whip.op),
        404,
        "not_found",
    )


async def test_mint_is_refused_when_it_makes_no_sense(whip: Whip) -> None:
    session_id = await whip.session(open_=False)
    url = f"{API}/sessions/{session_id}/whip-tokens"
    # A draft may get its token ahead of time (OBS set up the day before).
    await whip.mint(session_id)
    for bad in ({"label": "x" * 101}, {"label": 3}, {"labels": "x"}, [1], {"label": "a\x00b"}):
        response = await whip.http.post(
            f"{API}/sessions/{session_id}/whip-tokens", json=bad, headers=whip.op
        )
        assert_error(response, 422, "validation_error")
    response = await whip.http.post(
        f"{API}/sessions/{session_id}/whip-tokens",
        content=b"{not json",
        headers={**whip.op, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "malformed_json")

    tokens = [await whip.mint(session_id, f"enc {i}") for i in range(MAX_ACTIVE_TOKENS - 1)]
    response = await whip.http.post(url, json={}, headers=whip.op)
    body = assert_error(response, 409, "whip_token_limit")
    assert body["details"] == {"limit": MAX_ACTIVE_TOKENS}
    assert (await whip.revoke(session_id, tokens[0]["id"])).status_code == 204
    await whip.mint(session_id)

    await whip.action(session_id, "cancel")
    response = await whip.http.post(url, json={}, headers=whip.op)
    assert_error(response, 409, "invalid_transition")
    # Revoking and listing still work on a session that is over.
    assert (await whip.revoke(session_id, tokens[1]["id"])).status_code == 204
    assert len((await whip.tokens(session_id))["items"]) == MAX_ACTIVE_TOKENS + 1


async def test_only_operators_manage_tokens(whip: Whip) -> None:
    session_id = await whip.session()
    token = await whip.mint(session_id)
    for role in ("moderator", "observer"):
        headers = whip.headers[role]
        url = f"{API}/sessions/{session_id}/whip-tokens"
        assert_error(await whip.http.get(url, headers=headers), 403, "forbidden")
        assert_error(await whip.http.post(url, json={}, headers=headers), 403, "forbidden")
        assert_error(
            await whip.http.delete(f"{url}/{token['id']}", headers=headers), 403, "forbidden"
        )
    # A WHIP token is no staff token.
    response = await whip.http.get(
        f"{API}/sessions/{session_id}/whip-tokens",
        headers={"Authorization": f"Bearer {token['token']}"},
    )
    assert_error(response, 401, "unauthenticated")
    admin = await whip.http.get(
        f"{API}/sessions/{session_id}/whip-tokens", headers=whip.headers["admin"]
    )
    assert admin.status_code == 200
