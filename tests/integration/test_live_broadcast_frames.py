"""Broadcasts go out as one ready frame written to each socket (signaling.wsframe) on the real server."""

from __future__ import annotations

from signaling.wsframe import text_frame
from tests.integration.conftest import PHUC_XA, Live


async def test_live_broadcasts_take_the_raw_path(live_server: Live) -> None:
    live = live_server
    operator = await live.hello_staff()
    point = await live.hello_point(live.credentials[PHUC_XA])
    room = live.state.signaling.rooms[live.session_id]
    (conn,) = room.point_connections
    assert conn._raw is not None
    sent_before = conn.sent

    title = "Đối thoại: Quận Ba Đình — phiên chiều"
    patched = await live.patch(title=title)
    assert patched["title"] == title
    event = await point.until("event", where=lambda m: m["event"] == "session.updated")
    assert event["payload"]["changes"]["title"] == title
    assert conn.sent > sent_before

    # A connection that has sent its close takes the ASGI way (which then refuses).
    protocol = conn._raw._protocol
    protocol.close_sent = True
    try:
        assert conn._raw.write(text_frame("late")) is False
    finally:
        protocol.close_sent = False
    await operator.close()
