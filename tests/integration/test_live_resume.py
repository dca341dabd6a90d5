"""Dropping and coming back over a real socket: resume, heartbeat, slow clients cut and resumed."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from signaling.codes import CloseCode
from tests.integration.conftest import PHUC_XA, Client, Live, point_hello, wall_point


def states_of(client: Client, code: str) -> list[str]:
    """The states a point went through in the wall deltas a staff client received (no repeats)."""
    states: list[str] = []
    for message in client.seen:
        if message["type"] != "wall.delta":
            continue
        for point in message["points"]:
            if point["code"] == code and (not states or states[-1] != point["state"]):
                states.append(point["state"])
    return states


def shows(code: str, state: str) -> Any:
    return lambda m: any(p["code"] == code and p["state"] == state for p in m["points"])


async def keep_reading(client: Client, done: asyncio.Event) -> None:
    """Read (answering pings) until `done`; what arrives lands in client.seen."""
    while not done.is_set():
        await client.quiet(0.05)


@pytest.mark.parametrize("live_db", ["sqlite", "postgresql"], indirect=True)
async def test_resume_replays_what_was_missed(live_server: Live, live_db: str) -> None:
    live = live_server
    op = await live.hello_staff()
    point = await live.hello_point(live.credentials[PHUC_XA])
    await op.until("wall.delta", where=shows(PHUC_XA, "online"))
    await live.patch(description="trước khi rớt mạng")
    last_seq = (await point.until("event"))["seq"]
    assert last_seq == point.welcome["seq"] + 1
    await op.until("event")

    # Drop without a goodbye: the wall shows the point degraded (in its grace window), not offline.
    await point.ws.close()
    await op.until("wall.delta", where=shows(PHUC_XA, "degraded"))
    # While it is away: an event for everyone, one for staff only, another for everyone.
    await live.patch(description="lúc vắng mặt 1")
    rotated = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/invitations/00004/credential", headers=live.op
    )
    assert rotated.status_code == 200, rotated.text
    await live.patch(description="lúc vắng mặt 2")
    missed = [await op.until("event") for _ in range(3)]
    assert [e["seq"] for e in missed] == [last_seq + 1, last_seq + 2, last_seq + 3]
    assert [e["event"] for e in missed] == [
        "session.updated",
        "credential.rotated",
        "session.updated",
    ]

    back = await live.hello_point(live.credentials[PHUC_XA], last_seq=last_seq)
    assert back.welcome["resumed"] is True
    assert back.welcome["replayed"] == 2
    assert back.welcome["seq"] == last_seq + 3
    # The welcome is current: its session snapshot has the description of the last event.
    assert back.welcome["session"]["id"] == live.session_id
    replay = [await back.next(), await back.next()]
    assert [m["type"] for m in replay] == ["event", "event"]
    assert [m["seq"] for m in replay] == [last_seq + 1, last_seq + 3]
    assert [m["payload"]["changes"]["description"] for m in replay] == [
        "lúc vắng mặt 1",
        "lúc vắng mặt 2",
    ]
    assert replay == [missed[0], missed[2]]
    await op.until("wall.delta", where=shows(PHUC_XA, "online"))
    assert "offline" not in states_of(op, PHUC_XA)
    assert states_of(op, PHUC_XA)[-3:] == ["online", "degraded", "online"]

    # Live events continue after the replay, with no duplicates.
    await live.patch(description="đã trở lại")
    event = await back.until("event")
    assert event["seq"] == last_seq + 4
    assert [m for m in await back.quiet(0.3) if m["type"] == "event"] == []

    # Staff resume too, and their replay includes staff-only events.
    op_last = missed[0]["seq"]
    await op.ws.close()
    op_back = await live.hello_staff(last_seq=op_last)
    assert (op_back.welcome["resumed"], op_back.welcome["replayed"]) == (True, 3)
    assert op_back.events() == [missed[1], missed[2], event]
    assert op_back.snapshot["counts"]["online"] == 1


@pytest.mark.parametrize("live_server", [{"resume_max_events": 2}], indirect=True)
async def test_unknown_or_too_old_seq_gets_a_fresh_snapshot(live_server: Live) -> None:
    live = live_server
    credential = live.credentials[PHUC_XA]
    point = await live.hello_point(credential)
    start = point.welcome["seq"]
    await point.ws.close()

    # A seq from the future (another server's, a corrupted client): no resume, a fresh snapshot.
    future = await live.hello_point(credential, last_seq=start + 100)
    assert (future.welcome["resumed"], future.welcome["replayed"]) == (False, 0)
    assert future.welcome["seq"] == start
    await future.ws.close()

    # More missed events than resume_max_events: a fresh snapshot, no replay.
    for n in range(3):
        await live.patch(description=f"bỏ lỡ {n}")
    stale = await live.hello_point(credential, last_seq=start)
    assert (stale.welcome["resumed"], stale.welcome["replayed"]) == (False, 0)
    assert stale.welcome["seq"] == start + 3
    assert stale.welcome["session"]["id"] == live.session_id
    assert (await live.get_session())["last_seq"] == start + 3
    assert [m for m in await stale.quiet(0.3) if m["type"] == "event"] == []
    await stale.ws.close()

    # Exactly resume_max_events behind: replayed.
    for n in range(2):
        await live.patch(description=f"vừa đủ {n}")
    fits = await live.hello_point(credential, last_seq=start + 3)
    assert (fits.welcome["resumed"], fits.welcome["replayed"]) == (True, 2)
    replay = [await fits.next(), await fits.next()]
    assert [m["seq"] for m in replay] == [start + 4, start + 5]


@pytest.mark.parametrize("live_server", [{"resume_max_events": 2}], indirect=True)
async def test_staff_only_events_do_not_count_against_a_points_resume(live_server: Live) -> None:
    """Found by a national rehearsal: 3,256 roll-call answers (staff-only events) in a few seconds
    made a room that dropped meanwhile miss its resume, though it had missed one event."""
    live = live_server
    credential = live.credentials[PHUC_XA]
    point = await live.hello_point(credential)
    start = point.welcome["seq"]
    await point.ws.close()
    for _ in range(4):
        rotated = await live.http.post(
            f"/api/v1/sessions/{live.session_id}/invitations/00004/credential", headers=live.op
        )
        assert rotated.status_code == 200, rotated.text
    await live.patch(description="trong lúc điểm danh")
    assert (await live.get_session())["last_seq"] == start + 5

    back = await live.hello_point(credential, last_seq=start)
    assert (back.welcome["resumed"], back.welcome["replayed"]) == (True, 1)
    (replayed,) = [await back.next()]
    assert (replayed["seq"], replayed["event"]) == (start + 5, "session.updated")
    await back.ws.close()

    # Staff replay staff-only events too, so for them the five count: a fresh snapshot.
    op = await live.hello_staff(last_seq=start)
    assert (op.welcome["resumed"], op.welcome["replayed"]) == (False, 0)

    # Three events for points behind is still too many for a point.
    for n in range(3):
        await live.patch(description=f"bỏ lỡ {n}")
    stale = await live.hello_point(credential, last_seq=start + 5)
    assert (stale.welcome["resumed"], stale.welcome["replayed"]) == (False, 0)


@pytest.mark.parametrize("live_server", [{"resume_window_s": 0.5}], indirect=True)
async def test_reconnect_after_the_window_is_a_fresh_join(live_server: Live) -> None:
    live = live_server
    op = await live.hello_staff()
    point = await live.hello_point(live.credentials[PHUC_XA])
    await op.until("wall.delta", where=shows(PHUC_XA, "online"))
    last_seq = point.welcome["seq"]
    await point.ws.close()
    await op.until("wall.delta", where=shows(PHUC_XA, "offline"))
    assert states_of(op, PHUC_XA)[-3:] == ["online", "degraded", "offline"]
    await live.patch(description="sau khi hết hạn")
    await op.until("event")

    back = await live.hello_point(live.credentials[PHUC_XA], last_seq=last_seq)
    assert (back.welcome["resumed"], back.welcome["replayed"]) == (False, 0)
    assert back.welcome["seq"] == last_seq + 1
    assert [m for m in await back.quiet(0.3) if m["type"] == "event"] == []
    await op.until("wall.delta", where=shows(PHUC_XA, "online"))
    wall = await op.wall()
    assert wall_point(wall, PHUC_XA)["state"] == "online"
    assert wall["counts"]["online"] == 1
    assert wall["counts"]["offline"] == 0


@pytest.mark.parametrize(
    "live_server",
    [{"heartbeat_interval_s": 0.2, "heartbeat_timeout_s": 1.0, "resume_window_s": 0.5}],
    indirect=True,
)
async def test_heartbeat(live_server: Live) -> None:
    live = live_server
    op = await live.hello_staff()
    silent = await live.hello_point(live.credentials[PHUC_XA], answer_pings=False)
    good = await live.hello_point(live.credentials["00004"])
    done = asyncio.Event()

    async def watch() -> None:
        try:
            await op.until("wall.delta", within=10, where=shows(PHUC_XA, "offline"))
        finally:
            done.set()

    closed, _, _ = await asyncio.gather(silent.closed(within=10), watch(), keep_reading(good, done))
    assert closed == (CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
    # Pings were sent and unanswered, then the link was judged bad before the close.
    assert states_of(op, PHUC_XA)[-3:] == ["online", "degraded", "offline"]
    assert good.pings >= 3
    assert silent.pings >= 3

    # The point that answers stays, with a measured round trip on the wall.
    reply = await good.request({"type": "ping", "id": "alive"})
    assert reply["type"] == "ack"
    wall = await op.wall()
    answered = wall_point(wall, "00004")
    assert answered["state"] == "online"
    assert answered["rtt_ms"] is not None
    assert answered["rtt_ms"] >= 0
    print(f"measured rtt {answered['rtt_ms']} ms")
    assert wall_point(wall, PHUC_XA)["state"] == "offline"
    assert wall_point(wall, PHUC_XA)["rtt_ms"] is None
    metrics = await live.metrics()
    assert metrics['diemcau_ws_closes_total{code="4000"}'] == 1
    assert metrics['diemcau_ws_messages_in_total{type="pong"}'] >= 3


def slow_socket(port: int) -> socket.socket:
    """A connected socket with a tiny receive buffer, so an unread stream backs up quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


# A 10,000-character description of 4-byte characters: events of ~40 KB, to fill socket buffers.
BIG = "𝐘" * 9_990


async def slow_point(live: Live, code: str) -> Client:
    """A welcomed point that then stops reading its socket (its library buffers one message)."""
    slow = await live.connect(sock=slow_socket(live.settings.port), max_queue=1, answer_pings=False)
    await slow.send(point_hello(live.credentials[code]))
    slow.welcome = await slow.next()
    assert slow.welcome["type"] == "welcome"
    return slow


async def overflow(live: Live, readers: list[Client], after: int = 3) -> int:
    """Big session events until a queue overflows, then `after` more; the readers keep reading
    and must have received every one. Returns the number of events made."""
    start = (await live.get_session())["last_seq"]
    done = asyncio.Event()
    tasks = [asyncio.create_task(keep_reading(c, done)) for c in readers]
    made = 0
    try:
        async with asyncio.timeout(60):
            while (await live.metrics())["diemcau_ws_queue_overflows_total"] == 0:
                await live.patch(description=f"{made:04d} {BIG}")
                made += 1
                assert made < 400, "no queue overflowed"
            print(f"overflow after {made} events of ~40 KB")
            for _ in range(after):
                await live.patch(description=f"after {made} {BIG}")
                made += 1
            last = start + made
            while not all(c.events() and c.events()[-1]["seq"] == last for c in readers):
                await asyncio.sleep(0.05)
    finally:
        done.set()
        await asyncio.gather(*tasks)
    for client in readers:
        got = [e["seq"] for e in client.events() if e["seq"] > start]
        assert got == list(range(start + 1, last + 1))
    return made


@pytest.mark.parametrize("live_server", [{"ws_queue_messages": 8}], indirect=True)
async def test_slow_client_is_cut_and_resumes(live_server: Live) -> None:
    live = live_server
    op = await live.hello_staff()
    fast = await live.hello_point(live.credentials["00004"])
    slow = await slow_point(live, PHUC_XA)
    start = slow.welcome["seq"]
    made = await overflow(live, [op, fast])
    last = start + made

    # The slow client reads again: what was already on the wire, then the 4408 close.
    code, _ = await slow.closed(within=30)
    assert code == CloseCode.OVERFLOW
    got = [e["seq"] for e in slow.events()]
    assert got == list(range(start + 1, start + 1 + len(got)))
    assert len(got) < made
    resume_from = got[-1] if got else start

    # It resumes from the last event it got; the replay is longer than the queue and still fits.
    back = await live.hello_point(live.credentials[PHUC_XA], last_seq=resume_from)
    assert back.welcome["resumed"] is True
    assert back.welcome["replayed"] == last - resume_from > live.settings.ws_queue_messages
    replay = [await back.next() for _ in range(last - resume_from)]
    assert [m["seq"] for m in replay] == list(range(resume_from + 1, last + 1))
    assert replay[-1]["payload"]["changes"]["description"].startswith(f"after {made - 1} ")
    metrics = await live.metrics()
    assert metrics["diemcau_ws_queue_overflows_total"] == 1
    assert metrics['diemcau_ws_closes_total{code="4408"}'] == 1
    assert metrics['diemcau_ws_connections{role="point"}'] == 2
    wall = await op.wall()
    assert wall_point(wall, PHUC_XA)["state"] == "online"
    assert wall["counts"]["online"] == 2


@pytest.mark.parametrize(
    "live_server",
    [
        {
            "ws_queue_messages": 8,
            "heartbeat_interval_s": 0.5,
            "heartbeat_timeout_s": 60,
            "resume_window_s": 0.5,
        }
    ],
    indirect=True,
)
async def test_cut_client_that_never_reads_again_goes_offline(live_server: Live) -> None:
    """A stalled link's socket stays full, so the 4408 close cannot be sent; the server must still
    let the point go (degraded, then offline after the resume window) instead of keeping it."""
    live = live_server
    op = await live.hello_staff()
    fast = await live.hello_point(live.credentials["00004"])
    slow = await slow_point(live, PHUC_XA)
    await overflow(live, [op, fast], after=0)
    done = asyncio.Event()
    reader = asyncio.create_task(keep_reading(fast, done))
    try:
        await op.until("wall.delta", within=10, where=shows(PHUC_XA, "offline"))
    finally:
        done.set()
        await reader
    assert states_of(op, PHUC_XA)[-2:] == ["degraded", "offline"]
    metrics = await live.metrics()
    assert metrics['diemcau_ws_connections{role="point"}'] == 1
    assert metrics["diemcau_ws_queue_overflows_total"] == 1
    assert metrics['diemcau_presence_points{state="offline"}'] == 1
    assert len(live.state.signaling.rooms[live.session_id].point_connections) == 1
    slow.ws.transport.abort()
