"""Floor control over the real WebSocket: raise hand, grant, revoke — and the media follows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from media.loadgen import PublisherClient, SubscriberClient
from signaling.media import room_name
from tests.integration.conftest import Client, Live
from tests.integration.test_live_media import negotiate, wait_for


def floor_of(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["type"] == "ack", reply
    floor: dict[str, Any] = reply["result"]["floor"]
    return floor


async def act(client: Client, action: str, **fields: Any) -> dict[str, Any]:
    return await client.request({"type": "floor", "id": f"f-{action}", "action": action, **fields})


async def test_hand_raised_granted_heard_revoked(live_server: Live) -> None:
    live = live_server
    speaker_code, listener_code = sorted(live.credentials)[:2]
    moderator = await live.hello_staff(live.tokens["moderator"])
    hall = await live.hello_staff(role="hall")
    speaker = await live.hello_point(live.credentials[speaker_code])
    listener = await live.hello_point(live.credentials[listener_code])

    hall_rx = SubscriberClient(("floor", "preview"))
    await negotiate(hall, "subscribe", hall_rx)
    listener_rx = SubscriberClient(("program", "floor"))
    await negotiate(listener, "subscribe", listener_rx)
    speaker_tx = PublisherClient(width=160, height=96, amplitude=2000)
    await negotiate(speaker, "publish", speaker_tx)

    reply = await act(speaker, "request", topic="Đường ngõ 12 bị ngập khi mưa")
    request_id = reply["result"]["request_id"]
    assert floor_of(reply)["queue"][0]["point_code"] == speaker_code
    assert floor_of(reply)["queue"][0]["topic"] == "Đường ngõ 12 bị ngập khi mưa"
    # The desk sees the hand; other points do not (nobody's place moved), the speaker has its
    # place in its ack.
    event = await moderator.until("event", where=lambda m: m["event"] == "floor.request")
    assert event["payload"]["floor"]["queue"][0]["position"] == 1
    assert abs(event["payload"]["floor"]["queue"][0]["requested_at"] - time.time()) < 30
    assert floor_of(reply)["queue"][0]["position"] == 1

    # A client that did not resume asks for the floor as it is.
    assert floor_of(await act(listener, "get"))["queue"][0]["request_id"] == request_id
    granted = floor_of(await act(moderator, "grant", request_id=request_id))
    assert granted["holders"][0]["point_code"] == speaker_code
    assert granted["queue"] == []
    event = await speaker.until("event", where=lambda m: m["event"] == "floor.grant")
    assert event["payload"]["effects"][0]["kind"] == "granted"
    # The grant reaches every point, the hand never reached them.
    await listener.until("event", where=lambda m: m["event"] == "floor.grant")
    for point in (speaker, listener):
        assert not [m for m in point.seen if m.get("event") == "floor.request"]

    # Media follows the floor: the speaker reaches the hall and the listener.
    for rx in (hall_rx, listener_rx):
        await wait_for(lambda rx=rx: rx.logs["floor/video"].frames >= 10, what="speaker frames")
    # A point that joins now learns the floor from its welcome.
    latecomer = await live.hello_point(live.credentials[sorted(live.credentials)[2]])
    assert latecomer.welcome["floor"]["holders"][0]["point_code"] == speaker_code
    assert latecomer.welcome["floor"]["queue"] == []

    revoked_at = time.monotonic()
    reply = await act(moderator, "revoke", point_code=speaker_code, note="Hết giờ")
    assert floor_of(reply)["holders"] == []
    await asyncio.sleep(0.3)
    stats = await live.state.media.stats(room_name(live.session_id))
    speaker_video = stats[speaker.welcome["media"]["participant"]].published["video"]
    out_then = speaker_video.packets_out
    await asyncio.sleep(0.5)
    stats = await live.state.media.stats(room_name(live.session_id))
    assert stats[speaker.welcome["media"]["participant"]].published["video"].packets_out == out_then
    assert time.monotonic() - revoked_at < 5
    for peer in (hall_rx, listener_rx, speaker_tx):
        await peer.close()


async def test_floor_commands_are_checked_and_change_nothing(start_live: Any) -> None:
    live = await start_live()
    first, second = sorted(live.credentials)[:2]
    point = await live.hello_point(live.credentials[first])
    neighbour = await live.hello_point(live.credentials[second])
    observer = await live.hello_staff(live.tokens["observer"])
    moderator = await live.hello_staff(live.tokens["moderator"])

    async def refused(client: Client, action: str, code: str, **fields: Any) -> dict[str, Any]:
        reply = await act(client, action, **fields)
        assert reply["type"] == "error", reply
        assert reply["code"] == code, reply
        return reply

    mine = (await act(point, "request"))["result"]["request_id"]
    await refused(point, "grant", "forbidden", request_id=mine)  # a point granting itself
    await refused(neighbour, "release", "invalid_transition")  # nothing to release
    await refused(neighbour, "cancel", "invalid_transition", request_id=mine)  # another's hand
    await refused(observer, "grant", "forbidden", request_id=mine)
    await refused(moderator, "grant", "invalid_transition", request_id=999)  # not in this session
    await refused(moderator, "revoke", "validation_error", point_code="nope")
    await refused(moderator, "extend", "validation_error", point_code=first)
    bad = await moderator.request(
        {"type": "floor", "id": "x", "action": "grant", "request_id": "1"}
    )
    assert bad["code"] == "validation_error"
    await refused(point, "request", "invalid_transition")  # one hand per point
    # Nothing changed: still exactly one raised hand, nobody holds the floor.
    desk = live.state.signaling.floors[live.session_id]
    assert [w.request for w in desk.state.queue] == [mine]
    assert desk.state.holders == ()
    # With the floor granted, the neighbour can neither release it nor cancel the holder's turn.
    await act(moderator, "grant", request_id=mine)
    await refused(neighbour, "release", "invalid_transition")
    await refused(neighbour, "cancel", "invalid_transition", request_id=mine)
    assert [h.request for h in desk.state.holders] == [mine]


@pytest.mark.parametrize("live_server", [{"resume_window_s": 0.5}], indirect=True)
async def test_a_holder_that_goes_away_loses_the_floor(live_server: Live) -> None:
    live = live_server
    code = sorted(live.credentials)[0]
    moderator = await live.hello_staff(live.tokens["moderator"])
    point = await live.hello_point(live.credentials[code])
    await act(moderator, "grant", point_code=code)  # called on without a raised hand
    point.ws.transport.abort()
    event = await moderator.until(
        "event", within=5, where=lambda m: m["event"] == "floor.point_offline"
    )
    assert event["payload"]["effects"][0]["reason"] == "disconnected"
    assert event["payload"]["floor"]["holders"] == []


async def test_the_floor_survives_a_restart(start_live: Any) -> None:
    live = await start_live()
    code, waiting_code = sorted(live.credentials)[:2]
    moderator = await live.hello_staff(live.tokens["moderator"])
    holder = await live.hello_point(live.credentials[code])
    waiting = await live.hello_point(live.credentials[waiting_code])
    await act(moderator, "grant", point_code=code)
    await act(waiting, "request", topic="Hỏi về học phí")
    before = live.state.signaling.floors[live.session_id].snapshot()
    assert [h["point_code"] for h in before["holders"]] == [code]
    assert [w["point_code"] for w in before["queue"]] == [waiting_code]
    assert holder.welcome["type"] == "welcome"

    restarted = await start_live(prepare=False)  # a new process on the same database
    await restarted.login_all()
    restarted.session_id = live.session_id
    staff = await restarted.hello_staff(restarted.tokens["moderator"])
    assert staff.welcome["type"] == "welcome"
    after = restarted.state.signaling.floors[live.session_id].snapshot()
    assert after == before


async def test_speaking_times_and_the_current_floor_over_http(live_server: Live) -> None:
    live = live_server
    first, second = sorted(live.credentials)[:2]
    moderator = await live.hello_staff(live.tokens["moderator"])
    a = await live.hello_point(live.credentials[first])
    await live.hello_point(live.credentials[second])
    base = f"/api/v1/sessions/{live.session_id}/floor"

    await act(moderator, "grant", point_code=first)
    await asyncio.sleep(0.2)
    floor = (await live.http.get(base, headers=live.headers["observer"])).json()
    assert [h["point_code"] for h in floor["holders"]] == [first]
    await act(a, "release")
    await act(moderator, "grant", point_code=second)
    await act(moderator, "grant", point_code=first)  # replaces the second speaker
    await asyncio.sleep(0.1)

    response = await live.http.get(f"{base}/speaking-times", headers=live.op)
    assert response.status_code == 200, response.text
    rows = {row["point_code"]: row for row in response.json()["points"]}
    assert rows[first]["turns"] == 2
    assert rows[first]["speaking_now"] is True
    assert rows[first]["total_s"] >= 0.2
    assert rows[second]["turns"] == 1
    assert rows[second]["speaking_now"] is False
    assert rows[first]["point_name"]  # the ward's name, with its diacritics, from the directory
    assert (await live.http.get(f"{base}/speaking-times")).status_code == 401
    assert (
        await live.http.get("/api/v1/sessions/999999/floor", headers=live.op)
    ).status_code == 404


async def test_speaking_time_warns_then_ends_the_turn(live_server: Live) -> None:
    live = live_server
    await live.patch(settings={"speaking_time_limit_s": 10, "speaking_time_warning_s": 8})
    code = sorted(live.credentials)[0]
    moderator = await live.hello_staff(live.tokens["moderator"])
    point = await live.hello_point(live.credentials[code])
    await asyncio.sleep(0.2)  # the settings change reaches the live side
    granted = floor_of(await act(moderator, "grant", point_code=code))
    holder = granted["holders"][0]
    assert holder["deadline"] - holder["granted_at"] == pytest.approx(10)

    warning = await point.until("event", within=5, where=lambda m: m["event"] == "floor.tick")
    assert [e["kind"] for e in warning["payload"]["effects"]] == ["timerwarning", "deadlinechanged"]
    ended = await point.until("event", within=12, where=lambda m: m["event"] == "floor.tick")
    revoked = ended["payload"]["effects"][0]
    assert (revoked["kind"], revoked["reason"], revoked["point_code"]) == (
        "revoked",
        "time_up",
        code,
    )
    assert ended["payload"]["floor"]["holders"] == []


async def test_another_sessions_requests_and_points_are_out_of_reach(live_server: Live) -> None:
    live = live_server
    other_id, other_links = await live.new_session("Phiên khác", {"point_codes": ["00001"]})
    moderator = await live.hello_staff(live.tokens["moderator"])  # session A
    visitor = await live.hello_point(other_links["00001"])  # a point of session B
    assert visitor.welcome["session"]["id"] == other_id
    theirs = (await act(visitor, "request"))["result"]["request_id"]
    reply = await act(moderator, "grant", request_id=theirs)
    assert reply["type"] == "error"
    assert reply["code"] == "invalid_transition"
    floors = live.state.signaling.floors
    assert [w.request for w in floors[other_id].state.queue] == [theirs]
    assert floors[other_id].state.holders == ()
    assert floors[live.session_id].state.holders == ()
