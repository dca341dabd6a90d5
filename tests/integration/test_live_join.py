"""Joining the live side over a real socket: welcome, the wall, events, replacement, roles, origins."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from signaling.codes import CloseCode, ErrorCode
from tests.integration.conftest import (
    HANOI_POINTS,
    PHUC_XA,
    Live,
    point_hello,
    staff_hello,
    wall_point,
)

STATES = ("invited", "connecting", "online", "degraded", "offline")


@pytest.mark.parametrize("live_db", ["sqlite", "postgresql"], indirect=True)
async def test_point_and_operator_join(live_server: Live, live_db: str) -> None:
    live = live_server
    session = await live.get_session()
    assert session["status"] == "open"

    op = await live.hello_staff()
    welcome = op.welcome
    assert welcome["role"] == "operator"
    assert welcome["identity"]["kind"] == "staff"
    assert welcome["identity"]["username"] == "operator"
    assert welcome["seq"] == session["last_seq"]
    assert welcome["resumed"] is False
    assert welcome["replayed"] == 0
    wall = op.snapshot
    assert len(wall["points"]) == HANOI_POINTS
    assert len({p["code"] for p in wall["points"]}) == HANOI_POINTS
    assert wall["counts"] == {
        **dict.fromkeys(STATES, 0),
        "invited": HANOI_POINTS,
        "total": HANOI_POINTS,
    }
    assert sum(a["counts"]["invited"] for a in wall["areas"]) == HANOI_POINTS
    ba_dinh = [a for a in wall["areas"] if a["code"] == "001"]
    assert ba_dinh == [
        {
            "code": "001",
            "name": "Quận Ba Đình",
            "counts": {**dict.fromkeys(STATES, 0), "invited": 13},
        }
    ]
    before = wall_point(wall, PHUC_XA)
    assert before["state"] == "invited"
    assert before["name"] == "Phường Phúc Xá"
    assert before["area_name"] == "Quận Ba Đình"

    point = await live.hello_point(live.credentials[PHUC_XA])
    welcome = point.welcome
    assert welcome["id"] == "h1"
    assert welcome["protocol"] == 1
    assert welcome["role"] == "point"
    assert welcome["identity"] == {
        "kind": "point",
        "point_code": PHUC_XA,
        "point_name": "Phường Phúc Xá",
        "district_name": "Quận Ba Đình",
        "province_name": "Thành phố Hà Nội",
        "username": None,
        "display_name": None,
    }
    assert welcome["session"]["id"] == live.session_id
    assert welcome["session"]["title"] == "Đối thoại trực tuyến với Thành ủy"
    assert welcome["session"]["hall_name"] == "Hội trường Thành ủy"
    assert welcome["session"]["status"] == "open"
    assert welcome["session"]["settings"] == session["settings"]
    assert welcome["seq"] == session["last_seq"]
    assert (welcome["resumed"], welcome["replayed"]) == (False, 0)
    s = live.settings
    assert welcome["heartbeat"] == {
        "ping_interval_s": s.heartbeat_interval_s,
        "timeout_s": s.heartbeat_timeout_s,
        "resume_window_s": s.resume_window_s,
    }
    assert welcome["limits"] == {
        "max_message_bytes": s.ws_max_message_bytes,
        "messages_per_s": s.ws_rate_per_s,
        "burst": s.ws_rate_burst,
    }
    assert len(welcome["connection_id"]) == 16

    delta = await op.until(
        "wall.delta",
        within=3,
        where=lambda m: any(p["code"] == PHUC_XA and p["state"] == "online" for p in m["points"]),
    )
    assert delta["counts"]["online"] == 1
    assert delta["counts"]["invited"] == HANOI_POINTS - 1
    assert delta["counts"]["total"] == HANOI_POINTS
    online = wall_point(delta, PHUC_XA)
    assert online["client"] == "diemcau-test 1 (pytest)"
    assert online["last_seen"] is not None

    observer = await live.hello_staff(live.tokens["observer"])
    assert observer.welcome["role"] == "observer"
    assert wall_point(observer.snapshot, PHUC_XA)["state"] == "online"
    again = await op.wall()
    assert wall_point(again, PHUC_XA)["state"] == "online"
    assert again["counts"]["online"] == 1
    # The point has no wall of its own and got nothing but its welcome.
    assert await point.quiet(0.3) == []


@pytest.mark.parametrize("live_server", [{"invite": {"district_codes": ["001"]}}], indirect=True)
async def test_session_events_reach_their_audience_in_order(live_server: Live) -> None:
    live = live_server
    codes = sorted(live.credentials)
    assert len(codes) == 13
    points = [await live.hello_point(live.credentials[c]) for c in codes[:3]]
    op = await live.hello_staff()
    observer = await live.hello_staff(live.tokens["observer"])
    staff = [op, observer]
    start = (await live.get_session())["last_seq"]
    assert {c.welcome["seq"] for c in [*points, *staff]} == {start}

    descriptions = ["Phiên 1: khai mạc", "Phiên 2: chất vấn — trả lời", "Phiên 3: bế mạc"]
    for text in descriptions:
        assert (await live.patch(description=text))["description"] == text
    for client in [*points, *staff]:
        got = [await client.until("event") for _ in descriptions]
        assert [e["seq"] for e in got] == [start + 1, start + 2, start + 3]
        assert [e["event"] for e in got] == ["session.updated"] * 3
        assert [e["payload"] for e in got] == [
            {"changes": {"description": d}} for d in descriptions
        ]
        assert {e["actor"] for e in got} == {got[0]["actor"]}
        assert "operator" in got[0]["actor"]

    # Inviting more points is for the control desk only; points see a gap in seq, not the event.
    response = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/invitations",
        json={"district_codes": ["002"]},
        headers=live.op,
    )
    assert response.status_code == 200, response.text
    assert response.json()["invited"] == 18
    await live.patch(description="Sau khi mời thêm")
    for client in staff:
        added = await client.until("event")
        assert (added["seq"], added["event"]) == (start + 4, "invitations.added")
        assert added["payload"]["count"] == 18
        updated = await client.until("event")
        assert (updated["seq"], updated["event"]) == (start + 5, "session.updated")
    for client in points:
        updated = await client.until("event")
        assert (updated["seq"], updated["event"]) == (start + 5, "session.updated")
    for client in [*points, *staff]:
        assert [m for m in await client.quiet(0.3) if m["type"] == "event"] == []
        seqs = [e["seq"] for e in client.events()]
        assert seqs == sorted(set(seqs))
    for client in points:
        assert "invitations.added" not in {e["event"] for e in client.events()}

    # The room learned the new invitations: the wall lists all 31 points.
    async with asyncio.timeout(5):
        while len((wall := await op.wall())["points"]) != 31:
            await asyncio.sleep(0.05)
    assert wall["counts"]["total"] == 31
    assert wall["counts"]["online"] == 3
    assert wall["counts"]["invited"] == 28


async def test_second_connection_replaces_the_first(live_server: Live) -> None:
    live = live_server
    op = await live.hello_staff()
    first = await live.hello_point(live.credentials[PHUC_XA])
    await op.until(
        "wall.delta",
        where=lambda m: any(p["code"] == PHUC_XA and p["state"] == "online" for p in m["points"]),
    )
    second = await live.hello_point(live.credentials[PHUC_XA])
    assert second.welcome["connection_id"] != first.welcome["connection_id"]
    assert await first.closed() == (CloseCode.REPLACED, "replaced by a newer connection")

    # The new connection works and gets events; the wall shows the point once, online throughout.
    await live.patch(description="sau khi thay kết nối")
    event = await second.until("event")
    assert event["event"] == "session.updated"
    deltas = [m for m in await op.quiet(0.6) if m["type"] == "wall.delta"]
    deltas += [m for m in op.seen if m["type"] == "wall.delta"]
    for delta in deltas:
        assert [p["state"] for p in delta["points"] if p["code"] == PHUC_XA] in ([], ["online"])
        assert delta["counts"]["online"] == 1
    wall = await op.wall()
    assert [p["state"] for p in wall["points"] if p["code"] == PHUC_XA] == ["online"]
    assert wall["counts"]["online"] == 1
    assert wall["counts"]["total"] == HANOI_POINTS
    assert len(live.state.signaling.rooms[live.session_id].point_connections) == 1


async def test_roles_are_enforced(live_server: Live) -> None:
    live = live_server
    point = await live.hello_point(live.credentials[PHUC_XA])
    reply = await point.request({"type": "wall.get", "id": "w1"})
    assert (reply["type"], reply["id"], reply["code"]) == ("error", "w1", ErrorCode.FORBIDDEN)
    assert reply["details"] == {"role": "point"}
    reply = await point.request({"type": "ping", "id": "p1"})
    assert (reply["type"], reply["id"]) == ("ack", "p1")
    assert isinstance(reply["result"]["server_time"], float)

    # A moderator may act as moderator or observer, never as operator.
    moderator = await live.connect()
    await moderator.send(staff_hello(live.tokens["moderator"], live.session_id, "operator"))
    error = await moderator.next()
    assert (error["type"], error["code"]) == ("error", ErrorCode.FORBIDDEN)
    assert (await moderator.closed())[0] == CloseCode.ROLE_NOT_ALLOWED
    as_moderator = await live.hello_staff(live.tokens["moderator"])
    assert as_moderator.welcome["role"] == "moderator"
    assert len(as_moderator.snapshot["points"]) == HANOI_POINTS
    hall = await live.hello_staff(live.tokens["admin"], role="hall")
    assert hall.welcome["role"] == "hall"
    assert hall.snapshot == {}
    reply = await hall.request({"type": "wall.get", "id": "w2"})
    assert (reply["type"], reply["code"]) == ("error", ErrorCode.FORBIDDEN)

    # Wrong or stale tokens.
    for token in ("not-a-token", live.tokens["operator"] + "x"):
        bad = await live.connect()
        await bad.send(staff_hello(token, live.session_id))
        error = await bad.next()
        assert (error["type"], error["code"]) == ("error", ErrorCode.UNAUTHENTICATED)
        assert (await bad.closed())[0] == CloseCode.UNAUTHENTICATED


async def test_staff_and_point_scope(live_server: Live) -> None:
    live = live_server
    b_id, b_credentials = await live.new_session("Phiên B", {"district_codes": ["002"]})
    assert len(b_credentials) == 18
    # Staff are not scoped to sessions: the same token works for B, but not for a session that
    # does not exist.
    op_b = await live.hello_staff(session_id=b_id)
    assert op_b.welcome["session"]["id"] == b_id
    assert len(op_b.snapshot["points"]) == 18
    missing = await live.connect()
    await missing.send(staff_hello(live.tokens["operator"], 999_999))
    error = await missing.next()
    assert (error["type"], error["code"]) == ("error", ErrorCode.NOT_FOUND)
    assert (await missing.closed())[0] == CloseCode.SESSION_GONE

    point_a = await live.hello_point(live.credentials[PHUC_XA])
    b_code = sorted(b_credentials)[0]
    point_b = await live.hello_point(b_credentials[b_code])
    assert point_b.welcome["session"]["id"] == b_id
    assert point_b.welcome["identity"]["district_name"] == "Quận Hoàn Kiếm"
    # A credential of B names B's session: hello never lands the point in A.
    assert point_a.welcome["session"]["id"] == live.session_id

    await live.patch(b_id, description="chỉ phiên B")
    event = await point_b.until("event")
    assert event["payload"] == {"changes": {"description": "chỉ phiên B"}}
    assert (await op_b.until("event"))["seq"] == event["seq"]
    assert await point_a.quiet(0.5) == []
    # A's own events still reach it.
    await live.patch(description="phiên A")
    assert (await point_a.until("event"))["payload"] == {"changes": {"description": "phiên A"}}
    assert [m for m in await point_b.quiet(0.3) if m["type"] == "event"] == []


async def test_revoked_invitation_is_cut_and_locked_out(live_server: Live) -> None:
    live = live_server
    op = await live.hello_staff()
    credential = live.credentials[PHUC_XA]
    point = await live.hello_point(credential)
    other = await live.hello_point(live.credentials["00004"])
    response = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/invitations/{PHUC_XA}/revoke", headers=live.op
    )
    assert response.status_code == 200, response.text
    assert response.json()["revoked"] is True
    assert await point.closed() == (CloseCode.REVOKED, "credential revoked or rotated")
    revoked = await op.until("event")
    assert (revoked["event"], revoked["payload"]) == ("invitation.revoked", {"point_code": PHUC_XA})

    again = await live.connect()
    await again.send(point_hello(credential))
    error = await again.next()
    assert (error["type"], error["id"], error["code"]) == ("error", "h1", ErrorCode.UNAUTHENTICATED)
    assert (await again.closed())[0] == CloseCode.UNAUTHENTICATED

    wall = await op.wall()
    assert PHUC_XA not in {p["code"] for p in wall["points"]}
    assert wall["counts"]["total"] == HANOI_POINTS - 1
    assert wall["counts"]["online"] == 1
    # The other point is untouched.
    reply = await other.request({"type": "ping", "id": "still-here"})
    assert reply["type"] == "ack"


async def test_rotated_credential_cuts_the_old_link(live_server: Live) -> None:
    live = live_server
    old = live.credentials["00004"]
    point = await live.hello_point(old)
    response = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/invitations/00004/credential", headers=live.op
    )
    assert response.status_code == 200, response.text
    new = response.json()["credential"]
    assert new != old
    assert await point.closed() == (CloseCode.REVOKED, "credential revoked or rotated")
    stale = await live.connect()
    await stale.send(point_hello(old))
    error = await stale.next()
    assert (error["type"], error["code"]) == ("error", ErrorCode.UNAUTHENTICATED)
    assert (await stale.closed())[0] == CloseCode.UNAUTHENTICATED
    fresh = await live.hello_point(new)
    assert fresh.welcome["identity"]["point_name"] == "Phường Trúc Bạch"
    op = await live.hello_staff()
    assert wall_point(op.snapshot, "00004")["state"] == "online"


@pytest.mark.parametrize("live_server", [{"open": False}], indirect=True)
async def test_points_join_only_while_open_and_leave_when_it_ends(live_server: Live) -> None:
    live = live_server
    assert (await live.get_session())["status"] == "draft"
    draft = await live.connect()
    await draft.send(point_hello(live.credentials[PHUC_XA]))
    error = await draft.next()
    assert (error["type"], error["code"]) == ("error", ErrorCode.NOT_ADMITTED)
    assert "draft" in error["message"]
    assert (await draft.closed())[0] == CloseCode.NOT_ADMITTED
    # Staff may watch a draft session.
    op = await live.hello_staff()
    assert op.welcome["session"]["status"] == "draft"

    await live.action(live.session_id, "open")
    point = await live.hello_point(live.credentials[PHUC_XA])
    assert point.welcome["session"]["status"] == "open"
    await live.action(live.session_id, "go-live")
    live_event = await point.until("event")
    assert live_event["payload"]["to"] == "live"
    await live.action(live.session_id, "end")
    ended = await point.until("event")
    assert (ended["event"], ended["payload"]["to"]) == ("session.status_changed", "ended")
    assert (await point.closed())[0] == CloseCode.SESSION_GONE
    # Staff stay to see the end.
    assert await op.until("event", where=lambda m: m["payload"].get("to") == "ended")
    reply = await op.request({"type": "ping", "id": "after-end"})
    assert reply["type"] == "ack"
    late = await live.connect()
    await late.send(point_hello(live.credentials["00004"]))
    error = await late.next()
    assert (error["type"], error["code"]) == ("error", ErrorCode.NOT_ADMITTED)


@pytest.mark.parametrize(
    "live_server", [{"allowed_origins": ["https://hoitruong.example.vn"]}], indirect=True
)
async def test_origin_check(live_server: Live) -> None:
    live = live_server
    for origin in ("http://evil.example", "http://diemcau.test.evil.example", "null"):
        with pytest.raises(InvalidStatus) as refused:
            await live.connect(origin=origin)
        assert refused.value.response.status_code == 403
    accepted: list[Any] = []
    allowed: list[str | None] = ["http://diemcau.test", "https://hoitruong.example.vn", None]
    for allowed_origin in allowed:
        client = await live.connect(origin=allowed_origin)
        await client.send(point_hello(live.credentials[PHUC_XA]))
        welcome = await client.next()
        assert welcome["type"] == "welcome"
        accepted.append(client)
    # Each newer connection replaced the one before.
    for client in accepted[:-1]:
        assert (await client.closed())[0] == CloseCode.REPLACED
    metrics = await live.metrics()
    assert metrics['diemcau_ws_closes_total{code="4003"}'] == 3


@pytest.mark.parametrize("live_server", [{"invite": {"district_codes": ["001"]}}], indirect=True)
async def test_a_joining_point_sees_the_session_as_it_is_now(live_server: Live) -> None:
    """The welcome is answered from the room's memory: it must follow every change."""
    live = live_server
    codes = sorted(live.credentials)
    first = await live.hello_point(live.credentials[codes[0]])  # loads the room
    await live.patch(title="Đối thoại — phiên chiều", hall_name="Hội trường B")
    await live.patch(settings={"speaking_time_limit_s": 240})
    await live.action(live.session_id, "go-live")
    await first.until("event")
    expected = await live.get_session()
    async with asyncio.timeout(5):
        while True:
            late = await live.hello_point(live.credentials[codes[1]])
            if late.welcome["seq"] == expected["last_seq"]:
                break
            await late.close()
            await asyncio.sleep(0.05)
    session = late.welcome["session"]
    assert session["title"] == "Đối thoại — phiên chiều"
    assert session["hall_name"] == "Hội trường B"
    assert session["status"] == "live"
    assert session["settings"] == expected["settings"]
    assert session["settings"]["speaking_time_limit_s"] == 240
    assert late.welcome["replayed"] == 0


@pytest.mark.parametrize("live_server", [{"invite": {"district_codes": ["001"]}}], indirect=True)
async def test_revoking_an_account_ends_its_live_connections(live_server: Live) -> None:
    """A deactivated account, or one whose password changed, is not left watching the wall."""
    live = live_server
    admin = live.headers["admin"]
    accounts = (await live.http.get("/api/v1/accounts", headers=admin)).json()
    ids = {a["username"]: a["id"] for a in accounts}
    moderator = await live.hello_staff(live.tokens["moderator"])
    observer = await live.hello_staff(live.tokens["observer"])
    operator = await live.hello_staff(live.tokens["operator"])

    response = await live.http.patch(
        f"/api/v1/accounts/{ids['moderator']}", json={"active": False}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert (await moderator.closed())[0] == CloseCode.UNAUTHENTICATED

    response = await live.http.post(
        f"/api/v1/accounts/{ids['observer']}/password", json={}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert (await observer.closed())[0] == CloseCode.UNAUTHENTICATED

    # A change that revokes nothing leaves the connection alone.
    response = await live.http.patch(
        f"/api/v1/accounts/{ids['operator']}", json={"display_name": "Trực ban"}, headers=admin
    )
    assert response.status_code == 200, response.text
    reply = await operator.request({"type": "ping", "id": "still-here"})
    assert (reply["type"], reply["id"]) == ("ack", "still-here")
