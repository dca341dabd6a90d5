"""What the live side reports: Prometheus metrics and the presence intervals it stores."""

from __future__ import annotations

import asyncio

from signaling.codes import CloseCode
from tests.integration.conftest import HANOI_POINTS, PHUC_XA, Live, wall_point


async def wait_for_metric(live: Live, key: str, value: float) -> dict[str, float]:
    async with asyncio.timeout(5):
        while (metrics := await live.metrics()).get(key) != value:
            await asyncio.sleep(0.05)
    return metrics


async def test_metrics_follow_connections_and_messages(live_server: Live) -> None:
    live = live_server
    metrics = await live.metrics()
    assert metrics.get('diemcau_ws_connections{role="point"}', 0) == 0
    op = await live.hello_staff()
    observer = await live.hello_staff(live.tokens["observer"])
    codes = [PHUC_XA, "00004", "00006"]
    points = [await live.hello_point(live.credentials[c]) for c in codes]
    await op.until("wall.delta", where=lambda m: m["counts"]["online"] == 3)

    metrics = await live.metrics()
    assert metrics['diemcau_ws_connections{role="point"}'] == 3
    assert metrics['diemcau_ws_connections{role="operator"}'] == 1
    assert metrics['diemcau_ws_connections{role="observer"}'] == 1
    assert metrics['diemcau_presence_points{state="online"}'] == 3
    assert metrics['diemcau_presence_points{state="invited"}'] == HANOI_POINTS - 3
    assert metrics['diemcau_presence_points{state="connecting"}'] == 0
    assert metrics['diemcau_ws_messages_in_total{type="hello"}'] == 5
    assert metrics['diemcau_ws_messages_out_total{type="welcome"}'] == 5
    assert metrics['diemcau_ws_messages_out_total{type="wall.snapshot"}'] == 2
    assert metrics['diemcau_ws_messages_out_total{type="wall.delta"}'] >= 2

    # One event to five connections; errors counted by code.
    await live.patch(description="đếm sự kiện")
    for client in [op, observer, *points]:
        await client.until("event")
    await points[0].send("{not json")
    await points[0].send({"type": "wall.get", "id": "w"})
    await points[0].send({"type": "teleport", "id": "t"})
    for code in ("malformed_message", "forbidden", "unknown_type"):
        assert (await points[0].until("error"))["code"] == code
    metrics = await live.metrics()
    assert metrics['diemcau_ws_messages_out_total{type="event"}'] == 5
    assert metrics["diemcau_fanout_seconds_count"] == 1
    assert metrics['diemcau_ws_errors_total{code="malformed_message"}'] == 1
    assert metrics['diemcau_ws_errors_total{code="forbidden"}'] == 1
    assert metrics['diemcau_ws_errors_total{code="unknown_type"}'] == 1
    assert metrics['diemcau_ws_messages_in_total{type="invalid"}'] == 2
    assert metrics['diemcau_ws_messages_in_total{type="wall.get"}'] == 1
    assert metrics["diemcau_event_loop_lag_seconds_count"] >= 1

    # A drop: one point connection fewer, the point degraded; a goodbye: offline at once.
    await points[0].ws.close()
    metrics = await wait_for_metric(live, 'diemcau_ws_connections{role="point"}', 2)
    assert metrics['diemcau_presence_points{state="degraded"}'] == 1
    assert metrics['diemcau_presence_points{state="online"}'] == 2
    reply = await points[1].request({"type": "bye", "id": "bye"})
    assert reply == {"type": "ack", "id": "bye", "result": {}}
    assert (await points[1].closed())[0] == CloseCode.NORMAL
    metrics = await wait_for_metric(live, 'diemcau_ws_connections{role="point"}', 1)
    assert metrics['diemcau_presence_points{state="offline"}'] == 1
    assert metrics['diemcau_presence_points{state="online"}'] == 1
    assert metrics['diemcau_ws_closes_total{code="1000"}'] == 1
    assert sum(v for k, v in metrics.items() if k.startswith("diemcau_presence_points{")) == (
        HANOI_POINTS
    )
    wall = await op.wall()
    assert wall_point(wall, PHUC_XA)["state"] == "degraded"
    assert wall_point(wall, "00004")["state"] == "offline"
    assert wall_point(wall, "00006")["state"] == "online"


async def test_presence_intervals_are_stored(live_server: Live) -> None:
    live = live_server
    credential = live.credentials[PHUC_XA]
    point = await live.hello_point(credential)
    last_seq = point.welcome["seq"]
    await asyncio.sleep(0.1)
    await point.ws.close()
    await asyncio.sleep(0.1)
    back = await live.hello_point(credential, last_seq=last_seq)
    assert back.welcome["resumed"] is True

    async with asyncio.timeout(5):
        while len(rows := await live.intervals()) < 2 or rows[0].disconnected_at is None:
            await asyncio.sleep(0.2)
    point_id = live.state.signaling.rooms[live.session_id].by_code[PHUC_XA].point_id
    assert [(r.point_id, r.session_id) for r in rows] == [(point_id, live.session_id)] * 2
    first, second = rows
    assert first.close_reason == "disconnect"
    assert first.disconnected_at is not None
    assert first.connected_at < first.disconnected_at <= second.connected_at
    assert first.client == "diemcau-test 1 (pytest)"
    assert second.disconnected_at is None
    assert second.close_reason is None

    # A goodbye closes the interval as a leave.
    reply = await back.request({"type": "bye", "id": "bye"})
    assert reply["type"] == "ack"
    async with asyncio.timeout(5):
        while (rows := await live.intervals())[1].disconnected_at is None:
            await asyncio.sleep(0.2)
    assert len(rows) == 2
    assert rows[1].close_reason == "leave"
