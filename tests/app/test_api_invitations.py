"""Invitations, join links and the join-credential check over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io

import httpx
import pytest

from tests.conftest import HANOI_CSV, assert_error

Headers = dict[str, str]


@pytest.fixture
async def op(client: httpx.AsyncClient, staff: dict[str, Headers]) -> Headers:
    response = await client.post(
        "/api/v1/points/import",
        content=HANOI_CSV.read_bytes(),
        headers={**staff["operator"], "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 526
    return staff["operator"]


@pytest.fixture
async def session_id(client: httpx.AsyncClient, op: Headers) -> int:
    response = await client.post(
        "/api/v1/sessions",
        json={"title": "Đối thoại với Nhân dân", "hall_name": "Hội trường Thành ủy"},
        headers=op,
    )
    assert response.status_code == 201, response.text
    value: int = response.json()["id"]
    return value


async def total_invited(client: httpx.AsyncClient, session_id: int, headers: Headers) -> int:
    response = await client.get(f"/api/v1/sessions/{session_id}/invitations", headers=headers)
    assert response.status_code == 200, response.text
    value: int = response.json()["total"]
    return value


async def event_types(client: httpx.AsyncClient, session_id: int, headers: Headers) -> list[str]:
    response = await client.get(f"/api/v1/sessions/{session_id}/events", headers=headers)
    assert response.status_code == 200, response.text
    return [e["type"] for e in response.json()["items"]]


async def verify(client: httpx.AsyncClient, credential: str) -> httpx.Response:
    return await client.post("/api/v1/join/verify", json={"credential": credential})


async def test_invite_all_then_by_district_and_codes(
    client: httpx.AsyncClient, op: Headers, session_id: int
) -> None:
    url = f"/api/v1/sessions/{session_id}/invitations"
    response = await client.post(url, json={"district_codes": ["001"]}, headers=op)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "invited": 13,
        "already_invited": 0,
        "reinstated": 0,
        "total_invited": 13,
    }
    response = await client.post(url, json={"point_codes": ["00001", "09556"]}, headers=op)
    assert response.json()["invited"] + response.json()["already_invited"] == 2
    response = await client.post(url, json={"all": True}, headers=op)
    body = response.json()
    assert body["total_invited"] == 526
    assert body["invited"] + body["already_invited"] == 526
    response = await client.post(url, json={"all": True}, headers=op)
    assert response.json() == {
        "invited": 0,
        "already_invited": 526,
        "reinstated": 0,
        "total_invited": 526,
    }
    response = await client.get(f"/api/v1/sessions/{session_id}", headers=op)
    assert response.json()["invited_points"] == 526


async def test_invite_refusals_change_nothing(
    client: httpx.AsyncClient, op: Headers, staff: dict[str, Headers], session_id: int
) -> None:
    url = f"/api/v1/sessions/{session_id}/invitations"
    await client.post(url, json={"point_codes": ["00001"]}, headers=op)
    before = await event_types(client, session_id, op)

    body = assert_error(
        await client.post(url, json={"point_codes": ["00004", "99999"]}, headers=op),
        422,
        "validation_error",
    )
    assert body["details"] == {"unknown_codes": ["99999"]}
    body = assert_error(
        await client.post(url, json={"district_codes": ["001", "999"]}, headers=op),
        422,
        "validation_error",
    )
    assert body["details"] == {"unknown_district_codes": ["999"]}
    # Schema errors: nothing chosen, both all and a list, a code with bad characters, extra field.
    for bad in (
        {},
        {"all": True, "point_codes": ["00001"]},
        {"point_codes": ["00 01; DROP"]},
        {"all": True, "bogus": 1},
        {"all": True, "expected_attendees": -1},
    ):
        assert_error(await client.post(url, json=bad, headers=op), 422, "validation_error")
    assert_error(
        await client.post(url, json={"all": True}, headers=staff["observer"]), 403, "forbidden"
    )
    assert_error(
        await client.post(url, json={"all": True}, headers=staff["moderator"]), 403, "forbidden"
    )
    assert_error(await client.post(url, json={"all": True}), 401, "unauthenticated")
    assert_error(
        await client.post("/api/v1/sessions/9999/invitations", json={"all": True}, headers=op),
        404,
        "not_found",
    )
    assert await total_invited(client, session_id, op) == 1
    assert await event_types(client, session_id, op) == before


async def test_list_filters_pagination_and_get_one(
    client: httpx.AsyncClient, op: Headers, staff: dict[str, Headers], session_id: int
) -> None:
    url = f"/api/v1/sessions/{session_id}/invitations"
    await client.post(url, json={"district_codes": ["001", "268"]}, headers=op)
    observer = staff["observer"]

    response = await client.get(url, params={"q": "phuc xa"}, headers=observer)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 1
    assert page["items"][0]["point_name"] == "Phường Phúc Xá"
    assert page["items"][0]["district_name"] == "Quận Ba Đình"

    response = await client.get(url, params={"q": "Phúc Xá"}, headers=observer)
    assert [i["point_code"] for i in response.json()["items"]] == ["00001"]

    response = await client.get(url, params={"district_code": "268"}, headers=observer)
    page = response.json()
    assert page["total"] == 15
    assert {i["district_code"] for i in page["items"]} == {"268"}

    first = (await client.get(url, params={"limit": 10}, headers=observer)).json()
    last = (await client.get(url, params={"limit": 10, "offset": 20}, headers=observer)).json()
    assert (first["total"], first["limit"], first["offset"], len(first["items"])) == (
        28,
        10,
        0,
        10,
    )
    assert (last["offset"], len(last["items"])) == (20, 8)
    everything = (await client.get(url, params={"limit": 100}, headers=observer)).json()["items"]
    codes = [i["point_code"] for i in everything]
    assert codes == sorted(codes)
    assert [i["point_code"] for i in first["items"] + last["items"]] == codes[:10] + codes[20:]

    assert_error(
        await client.get(url, params={"limit": 0}, headers=observer), 422, "validation_error"
    )
    assert_error(await client.get(url), 401, "unauthenticated")

    response = await client.get(f"{url}/00001", headers=observer)
    assert response.status_code == 200
    one = response.json()
    assert (one["point_code"], one["point_name"], one["has_credential"], one["revoked"]) == (
        "00001",
        "Phường Phúc Xá",
        False,
        False,
    )
    assert_error(await client.get(f"{url}/00002", headers=observer), 404, "not_found")
    assert_error(await client.get(f"{url}/99999", headers=observer), 404, "not_found")


async def test_join_links_json_and_csv(
    client: httpx.AsyncClient, op: Headers, session_id: int
) -> None:
    base = f"/api/v1/sessions/{session_id}"
    await client.post(f"{base}/invitations", json={"district_codes": ["001"]}, headers=op)

    response = await client.post(
        f"{base}/join-links", json={"point_codes": ["00001", "00004"]}, headers=op
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["session_id"], body["issued"], body["skipped_with_credential"]) == (
        session_id,
        2,
        0,
    )
    first = body["links"][0]
    assert first["point_name"] == "Phường Phúc Xá"
    assert first["link"] == f"http://diemcau.test/join#{first['credential']}"
    assert first["credential"].startswith("dc1_")

    response = await client.post(f"{base}/join-links?format=csv", json={}, headers=op)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["cache-control"] == "no-store"
    assert "attachment" in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    text = response.content.decode("utf-8-sig")
    assert text.splitlines()[0] == "code,name,district,province,link"
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 11  # 13 in Ba Đình, 2 already had a link
    names = {row["name"] for row in rows}
    assert "Phường Trúc Bạch" not in names  # 00004 already has one
    assert "Phường Vĩnh Phúc" in names
    assert {row["district"] for row in rows} == {"Quận Ba Đình"}
    assert {row["province"] for row in rows} == {"Thành phố Hà Nội"}
    for row in rows:
        assert row["link"].startswith("http://diemcau.test/join#dc1_")
        response = await verify(client, row["link"].split("#", 1)[1])
        assert response.status_code == 200
        assert response.json()["point_code"] == row["code"]
        assert response.json()["point_name"] == row["name"]

    response = await client.post(f"{base}/join-links", json={}, headers=op)
    assert (response.json()["issued"], response.json()["skipped_with_credential"]) == (0, 13)

    response = await client.post(f"{base}/join-links", json={"rotate": True}, headers=op)
    assert response.json()["issued"] == 13
    assert_error(await verify(client, first["credential"]), 401, "unauthenticated")

    assert_error(
        await client.post(f"{base}/join-links", json={"point_codes": ["00002"]}, headers=op),
        404,
        "not_found",
    )
    assert_error(
        await client.post(f"{base}/join-links?format=xml", json={}, headers=op),
        422,
        "validation_error",
    )
    assert_error(
        await client.post(f"{base}/join-links", json={"bogus": True}, headers=op),
        422,
        "validation_error",
    )


async def test_join_links_need_an_operator(
    client: httpx.AsyncClient, op: Headers, staff: dict[str, Headers], session_id: int
) -> None:
    base = f"/api/v1/sessions/{session_id}"
    await client.post(f"{base}/invitations", json={"point_codes": ["00001"]}, headers=op)
    for role in ("observer", "moderator"):
        assert_error(
            await client.post(f"{base}/join-links", json={}, headers=staff[role]),
            403,
            "forbidden",
        )
        assert_error(
            await client.post(f"{base}/invitations/00001/credential", headers=staff[role]),
            403,
            "forbidden",
        )
        assert_error(
            await client.post(f"{base}/invitations/00001/revoke", headers=staff[role]),
            403,
            "forbidden",
        )
    response = await client.get(f"{base}/invitations/00001", headers=op)
    assert response.json()["has_credential"] is False
    assert response.json()["revoked"] is False
    response = await client.post(f"{base}/join-links", json={}, headers=staff["admin"])
    assert response.json()["issued"] == 1


async def test_verify_revoke_and_rotate(
    client: httpx.AsyncClient, op: Headers, session_id: int
) -> None:
    base = f"/api/v1/sessions/{session_id}"
    await client.post(f"{base}/invitations", json={"point_codes": ["00001"]}, headers=op)
    links = (await client.post(f"{base}/join-links", json={}, headers=op)).json()["links"]
    credential = links[0]["credential"]

    response = await verify(client, credential)
    assert response.status_code == 200, response.text
    identity = response.json()
    assert identity == {
        "session_id": session_id,
        "session_title": "Đối thoại với Nhân dân",
        "session_status": "draft",
        "hall_name": "Hội trường Thành ủy",
        "point_code": "00001",
        "point_name": "Phường Phúc Xá",
        "district_name": "Quận Ba Đình",
        "province_name": "Thành phố Hà Nội",
        "admitted": False,
    }

    # Rotation: the old credential stops working, the new one works.
    response = await client.post(f"{base}/invitations/00001/credential", headers=op)
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["credential"] != credential
    assert rotated["link"] == f"http://diemcau.test/join#{rotated['credential']}"
    assert_error(await verify(client, credential), 401, "unauthenticated")
    assert (await verify(client, rotated["credential"])).status_code == 200

    # Revocation: the current credential stops working; revoking twice is fine.
    response = await client.post(f"{base}/invitations/00001/revoke", headers=op)
    assert response.status_code == 200, response.text
    assert (response.json()["revoked"], response.json()["has_credential"]) == (True, False)
    assert_error(await verify(client, rotated["credential"]), 401, "unauthenticated")
    response = await client.post(f"{base}/invitations/00001/revoke", headers=op)
    assert response.status_code == 200
    assert response.json()["revoked"] is True
    assert await total_invited(client, session_id, op) == 1
    response = await client.get(f"/api/v1/sessions/{session_id}", headers=op)
    assert response.json()["invited_points"] == 0

    # Rotating reinstates the revoked point.
    response = await client.post(f"{base}/invitations/00001/credential", headers=op)
    reinstated = response.json()["credential"]
    response = await verify(client, reinstated)
    assert response.status_code == 200
    assert response.json()["point_code"] == "00001"

    for action in ("open", "go-live"):
        await client.post(f"{base}/actions/{action}", headers=op)
        assert (await verify(client, reinstated)).json()["admitted"] is True

    assert_error(
        await client.post(f"{base}/invitations/00002/revoke", headers=op), 404, "not_found"
    )
    assert_error(
        await client.post(f"{base}/invitations/00002/credential", headers=op), 404, "not_found"
    )
    types = await event_types(client, session_id, op)
    assert types.count("credential.rotated") == 2
    assert types.count("invitation.revoked") == 1


GARBAGE = (
    "dc1_" + "A" * 43,
    "not-a-credential",
    "Bearer dc1_abc",
    "dc1_Phường",
    hashlib.sha256(b"x").hexdigest(),
)


async def test_verify_rejects_garbage(
    client: httpx.AsyncClient, op: Headers, session_id: int
) -> None:
    base = f"/api/v1/sessions/{session_id}"
    await client.post(f"{base}/invitations", json={"point_codes": ["00001"]}, headers=op)
    links = (await client.post(f"{base}/join-links", json={}, headers=op)).json()["links"]
    # The stored hash itself is not a credential either.
    digest = hashlib.sha256(links[0]["credential"].encode()).hexdigest()
    for garbage in (*GARBAGE, digest, links[0]["credential"][:-1]):
        body = assert_error(await verify(client, garbage), 401, "unauthenticated")
        assert garbage not in body["message"]
    assert (await verify(client, links[0]["credential"])).status_code == 200


async def test_verify_rejects_malformed_bodies(client: httpx.AsyncClient) -> None:
    for bad in ({}, {"credential": ""}, {"credential": "x" * 201}, {"credential": 5}):
        assert_error(await client.post("/api/v1/join/verify", json=bad), 422, "validation_error")
    assert_error(
        await client.post(
            "/api/v1/join/verify",
            json={"credential": "dc1_x", "point_code": "00001"},
        ),
        422,
        "validation_error",
    )
    response = await client.post(
        "/api/v1/join/verify", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "malformed_json")


@pytest.mark.parametrize("final", ["end", "cancel"])
async def test_over_sessions_refuse_changes(
    client: httpx.AsyncClient, op: Headers, session_id: int, final: str
) -> None:
    base = f"/api/v1/sessions/{session_id}"
    await client.post(f"{base}/invitations", json={"point_codes": ["00001"]}, headers=op)
    credential = (await client.post(f"{base}/join-links", json={}, headers=op)).json()["links"][0][
        "credential"
    ]
    for action in ("open", final):
        response = await client.post(f"{base}/actions/{action}", headers=op)
        assert response.status_code == 200, response.text
    before = await event_types(client, session_id, op)
    for method_url, body in (
        (f"{base}/invitations", {"all": True}),
        (f"{base}/join-links", {"rotate": True}),
        (f"{base}/join-links?format=csv", {}),
        (f"{base}/invitations/00001/credential", None),
        (f"{base}/invitations/00001/revoke", None),
    ):
        response = await client.post(method_url, json=body, headers=op)
        error = assert_error(response, 409, "invalid_transition")
        assert error["details"]["state"] == ("ended" if final == "end" else "cancelled")
    assert await total_invited(client, session_id, op) == 1
    assert await event_types(client, session_id, op) == before
    response = await verify(client, credential)
    assert response.status_code == 200
    assert response.json()["admitted"] is False


async def test_join_links_refuse_unknown_areas(
    client: httpx.AsyncClient, op: Headers, session_id: int
) -> None:
    await client.post(
        f"/api/v1/sessions/{session_id}/invitations", json={"district_codes": ["001"]}, headers=op
    )
    before = await event_types(client, session_id, op)
    response = await client.post(
        f"/api/v1/sessions/{session_id}/join-links",
        json={"district_codes": ["001", "999"]},
        headers=op,
    )
    body = assert_error(response, 422, "validation_error")
    assert body["details"] == {"unknown_district_codes": ["999"]}
    assert await event_types(client, session_id, op) == before
    listed = await client.get(f"/api/v1/sessions/{session_id}/invitations", headers=op)
    assert not any(item["has_credential"] for item in listed.json()["items"])
