"""Sessions over HTTP on SQLite and PostgreSQL: CRUD, lifecycle actions, and refusals that change nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.sessions.lifecycle import TRANSITIONS, LifecycleCommand, SessionStatus
from app.sessions.schemas import SessionSettings
from app.settings import Settings
from models import Role
from tests.conftest import assert_error, create_staff, login

Staff = dict[str, dict[str, str]]
BASE = "/api/v1/sessions"
START = "2026-12-15T08:00:00+07:00"
TITLE = "Hội nghị đối thoại giữa Chủ tịch UBND Thành phố với Nhân dân năm 2026 – lần thứ nhất"
C = LifecycleCommand
S = SessionStatus
PATHS: dict[SessionStatus, list[LifecycleCommand]] = {
    S.DRAFT: [],
    S.SCHEDULED: [C.SCHEDULE],
    S.OPEN: [C.OPEN],
    S.LIVE: [C.OPEN, C.GO_LIVE],
    S.ENDED: [C.OPEN, C.END],
    S.CANCELLED: [C.CANCEL],
}


@pytest.fixture
async def auth(client: httpx.AsyncClient, settings: Settings) -> Staff:
    """Headers for an operator and an observer only: the full `staff` set costs four logins."""
    headers: Staff = {}
    for role in (Role.OPERATOR, Role.OBSERVER):
        await create_staff(settings, role.value, role)
        headers[role.value] = await login(client, role.value)
    return headers


async def create(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {"title": "Đối thoại", "scheduled_start": START, **fields}
    response = await client.post(BASE, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def drive(
    client: httpx.AsyncClient, headers: dict[str, str], session_id: int, state: SessionStatus
) -> Any:
    response = await client.get(f"{BASE}/{session_id}", headers=headers)
    for command in PATHS[state]:
        response = await client.post(
            f"{BASE}/{session_id}/actions/{command.value}", headers=headers
        )
        assert response.status_code == 200, response.text
    assert response.json()["status"] == state.value
    return response.json()


async def count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get(BASE, headers=headers)
    assert response.status_code == 200
    total: int = response.json()["total"]
    return total


async def test_create_returns_the_session(client: httpx.AsyncClient, auth: Staff) -> None:
    response = await client.post(
        BASE,
        json={
            "title": TITLE,
            "hall_name": "Hội trường Thành ủy",
            "description": "Ý kiến, kiến nghị của cử tri phường Phúc Xá",
            "scheduled_start": START,
            "scheduled_end": "2026-12-15T11:30:00+07:00",
            "settings": {"speaking_time_limit_s": 240, "max_floor_holders": 2},
        },
        headers=auth["operator"],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["title"] == TITLE
    assert body["hall_name"] == "Hội trường Thành ủy"
    assert body["description"] == "Ý kiến, kiến nghị của cử tri phường Phúc Xá"
    assert body["status"] == "draft"
    assert body["last_seq"] == 1
    assert body["invited_points"] == 0
    assert body["allowed_actions"] == ["schedule", "open", "cancel"]
    assert body["settings"] == SessionSettings(
        speaking_time_limit_s=240, max_floor_holders=2
    ).model_dump(mode="json")
    # Stored in UTC, same instant.
    assert body["scheduled_start"] == "2026-12-15T01:00:00Z"
    assert body["scheduled_end"] == "2026-12-15T04:30:00Z"
    assert body["created_at"].endswith("Z")

    fetched = await client.get(f"{BASE}/{body['id']}", headers=auth["observer"])
    assert fetched.status_code == 200
    assert fetched.json() == body
    assert fetched.json()["title"].encode() == TITLE.encode()


async def test_create_defaults(client: httpx.AsyncClient, auth: Staff) -> None:
    response = await client.post(BASE, json={"title": "Tối thiểu"}, headers=auth["operator"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["hall_name"], body["description"]) == ("", "")
    assert (body["scheduled_start"], body["scheduled_end"]) == (None, None)
    assert body["settings"] == SessionSettings().model_dump(mode="json")


BAD_CREATES: list[dict[str, Any]] = [
    {"title": "Giờ không múi", "scheduled_start": "2026-12-15T08:00:00"},
    {"title": "Giờ không múi", "scheduled_end": "2026-12-15T08:00:00"},
    {"title": ""},
    {"title": "   "},
    {"title": "x" * 301},
    {"hall_name": "thiếu tên"},
    {"title": "trường lạ", "colour": "red"},
    {"title": "cài đặt", "settings": {"speaking_time_warning_s": 200}},
    {"title": "cài đặt", "settings": {"unknown": 1}},
    {
        "title": "ngược giờ",
        "scheduled_start": START,
        "scheduled_end": "2026-12-15T07:00:00+07:00",
    },
]


async def test_create_rejects_bad_input(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    for body in BAD_CREATES:
        response = await client.post(BASE, json=body, headers=op)
        assert_error(response, 422, "validation_error")
    response = await client.post(
        BASE, content=b"{not json", headers={**op, "Content-Type": "application/json"}
    )
    assert_error(response, 400, "malformed_json")
    assert await count(client, op) == 0


async def test_only_operators_write(client: httpx.AsyncClient, staff: Staff) -> None:
    for role in ("moderator", "observer"):
        response = await client.post(BASE, json={"title": "x"}, headers=staff[role])
        assert_error(response, 403, "forbidden")
    assert_error(await client.post(BASE, json={"title": "x"}), 401, "unauthenticated")
    assert_error(await client.get(BASE), 401, "unauthenticated")
    assert await count(client, staff["observer"]) == 0
    session = await create(client, staff["operator"])
    for role in ("moderator", "observer"):
        headers = staff[role]
        response = await client.post(f"{BASE}/{session['id']}/actions/open", headers=headers)
        assert_error(response, 403, "forbidden")
        response = await client.patch(
            f"{BASE}/{session['id']}", json={"title": "y"}, headers=headers
        )
        assert_error(response, 403, "forbidden")
        response = await client.delete(f"{BASE}/{session['id']}", headers=headers)
        assert_error(response, 403, "forbidden")
    after = (await client.get(f"{BASE}/{session['id']}", headers=staff["observer"])).json()
    assert after == session


async def test_list_filters_by_status(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    ids = [(await create(client, op, title=f"Phiên {i}"))["id"] for i in range(5)]
    await drive(client, op, ids[1], S.OPEN)
    await drive(client, op, ids[2], S.LIVE)
    await drive(client, op, ids[4], S.OPEN)

    response = await client.get(BASE, headers=auth["observer"])
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 5
    assert [s["id"] for s in page["items"]] == sorted(ids, reverse=True)

    response = await client.get(BASE, params={"status": "open"}, headers=op)
    page = response.json()
    assert page["total"] == 2
    assert [s["id"] for s in page["items"]] == [ids[4], ids[1]]
    assert all(s["allowed_actions"] == ["go-live", "end", "cancel"] for s in page["items"])

    response = await client.get(BASE, params={"status": "draft", "limit": 1}, headers=op)
    page = response.json()
    assert (page["total"], [s["id"] for s in page["items"]]) == (2, [ids[3]])
    response = await client.get(
        BASE, params={"status": "draft", "limit": 1, "offset": 1}, headers=op
    )
    assert [s["id"] for s in response.json()["items"]] == [ids[0]]

    response = await client.get(BASE, params={"status": "ended"}, headers=op)
    assert response.json() == {"items": [], "total": 0}

    assert_error(
        await client.get(BASE, params={"status": "paused"}, headers=op), 422, "validation_error"
    )
    assert_error(await client.get(BASE, params={"limit": 0}, headers=op), 422, "validation_error")


async def test_get_unknown_session(client: httpx.AsyncClient, auth: Staff) -> None:
    body = assert_error(
        await client.get(f"{BASE}/424242", headers=auth["observer"]), 404, "not_found"
    )
    assert body["details"] == {"session_id": 424242}
    response = await client.post(f"{BASE}/424242/actions/open", headers=auth["operator"])
    assert_error(response, 404, "not_found")
    response = await client.patch(f"{BASE}/424242", json={"title": "x"}, headers=auth["operator"])
    assert_error(response, 404, "not_found")
    assert_error(await client.delete(f"{BASE}/424242", headers=auth["operator"]), 404, "not_found")


async def test_patch_changes_given_fields(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    session = await create(client, op, hall_name="Hội trường A", description="mô tả")
    response = await client.patch(
        f"{BASE}/{session['id']}",
        json={"title": "Tiêu đề mới – đợt 2", "settings": {"speaking_time_warning_s": 45}},
        headers=op,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["title"] == "Tiêu đề mới – đợt 2"
    assert (body["hall_name"], body["description"]) == ("Hội trường A", "mô tả")
    assert body["scheduled_start"] == session["scheduled_start"]
    assert body["settings"] == {**session["settings"], "speaking_time_warning_s": 45}
    assert body["last_seq"] == 2

    events = (await client.get(f"{BASE}/{session['id']}/events", headers=op)).json()["items"]
    assert events[-1]["type"] == "session.updated"
    assert events[-1]["actor"] == "account:operator"
    assert events[-1]["payload"] == {
        "changes": {"title": "Tiêu đề mới – đợt 2", "settings": {"speaking_time_warning_s": 45}}
    }

    # Clearing the description is a change; an identical patch is not.
    response = await client.patch(f"{BASE}/{session['id']}", json={"description": None}, headers=op)
    assert response.json()["description"] == ""
    assert response.json()["last_seq"] == 3
    response = await client.patch(f"{BASE}/{session['id']}", json={"description": ""}, headers=op)
    assert response.json()["last_seq"] == 3


BAD_PATCHES: list[dict[str, Any]] = [
    {"title": None},
    {"title": ""},
    {"scheduled_start": "2026-12-15T08:00:00"},
    {"scheduled_end": "2026-12-15T06:00:00+07:00"},
    {"settings": {"speaking_time_limit_s": 20}},
    {"settings": {"max_floor_holders": 0}},
    {"title": "mới", "settings": {"speaking_time_warning_s": 180}},
    {"status": "live"},
    {"last_seq": 0},
]


async def test_patch_rejects_bad_input(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    session = await create(client, op)
    for patch in BAD_PATCHES:
        response = await client.patch(f"{BASE}/{session['id']}", json=patch, headers=op)
        body = assert_error(response, 422, "validation_error")
        assert body["details"], patch
    after = await client.get(f"{BASE}/{session['id']}", headers=op)
    assert after.json() == session


async def test_patch_refused_once_over(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    for state in (S.ENDED, S.CANCELLED):
        session = await drive(client, op, (await create(client, op))["id"], state)
        response = await client.patch(f"{BASE}/{session['id']}", json={"title": "muộn"}, headers=op)
        body = assert_error(response, 409, "invalid_transition")
        assert body["details"] == {"machine": "session", "state": state.value, "command": "edit"}
        assert (await client.get(f"{BASE}/{session['id']}", headers=op)).json() == session


async def test_delete_draft(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    doomed = await create(client, op)
    kept = await create(client, op)
    response = await client.delete(f"{BASE}/{doomed['id']}", headers=op)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get(f"{BASE}/{doomed['id']}", headers=op), 404, "not_found")
    response = await client.get(f"{BASE}/{doomed['id']}/events", headers=op)
    assert_error(response, 404, "not_found")
    assert (await client.get(f"{BASE}/{kept['id']}", headers=op)).json() == kept
    assert await count(client, op) == 1


async def test_delete_refused_after_draft(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    for state in [s for s in SessionStatus if s is not S.DRAFT]:
        session = await drive(client, op, (await create(client, op))["id"], state)
        response = await client.delete(f"{BASE}/{session['id']}", headers=op)
        body = assert_error(response, 409, "invalid_transition")
        assert body["details"] == {"machine": "session", "state": state.value, "command": "delete"}
        assert (await client.get(f"{BASE}/{session['id']}", headers=op)).json() == session


async def test_every_action_in_every_state(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    checked = 0
    for state in SessionStatus:
        for command in LifecycleCommand:
            session = await drive(client, op, (await create(client, op))["id"], state)
            assert session["allowed_actions"] == [c.value for (s, c) in TRANSITIONS if s is state]
            url = f"{BASE}/{session['id']}/actions/{command.value}"
            response = await client.post(url, headers=op)
            target = TRANSITIONS.get((state, command))
            if target is None:
                body = assert_error(response, 409, "invalid_transition")
                assert body["details"] == {
                    "machine": "session",
                    "state": state.value,
                    "command": command.value,
                }
                after = (await client.get(f"{BASE}/{session['id']}", headers=op)).json()
                assert after == session
            else:
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["status"] == target.value
                assert body["last_seq"] == session["last_seq"] + 1
                assert body["allowed_actions"] == [c.value for (s, c) in TRANSITIONS if s is target]
                events = await client.get(
                    f"{BASE}/{session['id']}/events",
                    params={"after_seq": session["last_seq"]},
                    headers=op,
                )
                [event] = events.json()["items"]
                assert (event["type"], event["payload"]) == (
                    "session.status_changed",
                    {"from": state.value, "to": target.value, "command": command.value},
                )
            checked += 1
    assert checked == len(SessionStatus) * len(LifecycleCommand)


async def test_schedule_without_start_is_a_conflict(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    session = await create(client, op, scheduled_start=None)
    response = await client.post(f"{BASE}/{session['id']}/actions/schedule", headers=op)
    body = assert_error(response, 409, "conflict")
    assert body["details"] == {"field": "scheduled_start"}
    assert (await client.get(f"{BASE}/{session['id']}", headers=op)).json() == session


async def test_unknown_command(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    session = await create(client, op)
    for command in ("pause", "GO-LIVE", "go_live", "delete", "edit", "open%20"):
        response = await client.post(f"{BASE}/{session['id']}/actions/{command}", headers=op)
        assert_error(response, 422, "validation_error")
    assert (await client.get(f"{BASE}/{session['id']}", headers=op)).json() == session


async def test_concurrent_actions_have_one_winner(client: httpx.AsyncClient, auth: Staff) -> None:
    op = auth["operator"]
    session = await create(client, op)
    url = f"{BASE}/{session['id']}/actions"
    responses = await asyncio.gather(*(client.post(f"{url}/open", headers=op) for _ in range(6)))
    assert sorted(r.status_code for r in responses) == [200] + [409] * 5
    for response in responses:
        if response.status_code == 409:
            assert response.json()["details"]["state"] == "open"

    # Both commands lead to a terminal state, so only the first one through can succeed.
    responses = await asyncio.gather(
        *(client.post(f"{url}/{c}", headers=op) for c in ("end", "cancel", "end", "cancel"))
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    [winner] = [r.json() for r in responses if r.status_code == 200]
    page = (await client.get(f"{BASE}/{session['id']}/events", headers=op)).json()
    assert [e["type"] for e in page["items"]] == ["session.created"] + [
        "session.status_changed"
    ] * 2
    assert page["items"][-1]["payload"]["to"] == winner["status"]
    assert page["last_seq"] == winner["last_seq"] == 3
