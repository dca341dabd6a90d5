"""The in-process hub tails the durable log: woken after a commit, or by its poll."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.events.service import PENDING_EVENTS, append_event
from app.sessions import service
from app.sessions.schemas import SessionCreate
from signaling.audience import Audience, audience_of
from signaling.hub import LoggedEvent, LogTailHub, read_events, to_logged

Factory = async_sessionmaker[AsyncSession]


async def new_session(db_factory: Factory) -> int:
    async with db_factory() as db:
        session = await service.create_session(
            db, SessionCreate(title="Đối thoại"), actor="test", account_id=None
        )
        await db.commit()
        return session.id


async def append(db_factory: Factory, session_id: int, n: int) -> list[LoggedEvent]:
    async with db_factory() as db:
        for i in range(n):
            await append_event(db, session_id, "session.updated", "test", {"i": i})
        pending = list(db.info.get(PENDING_EVENTS, []))
        await db.commit()
    return [to_logged(row) for row in pending]


def collector(received: list[LoggedEvent]) -> Callable[[Sequence[LoggedEvent]], Awaitable[None]]:
    async def deliver(batch: Sequence[LoggedEvent]) -> None:
        received.extend(batch)

    return deliver


async def wait_for(received: list[LoggedEvent], count: int) -> None:
    async with asyncio.timeout(5):
        while len(received) < count:
            await asyncio.sleep(0.01)


async def test_notify_delivers_committed_events_in_order(db_factory: Factory) -> None:
    session_id = await new_session(db_factory)  # seq 1: session.created
    hub = LogTailHub(db_factory, poll_interval_s=30)
    received: list[LoggedEvent] = []

    async def deliver(batch: Sequence[LoggedEvent]) -> None:
        received.extend(batch)

    hub.watch(session_id, 1, deliver)
    try:
        await append(db_factory, session_id, 3)
        hub.notify([session_id])
        await wait_for(received, 3)
        assert [e.seq for e in received] == [2, 3, 4]
        assert [e.payload for e in received] == [{"i": 0}, {"i": 1}, {"i": 2}]
        assert all(e.type == "session.updated" and e.actor == "test" for e in received)
    finally:
        await hub.close()


async def test_the_poll_finds_events_committed_elsewhere(db_factory: Factory) -> None:
    session_id = await new_session(db_factory)
    other = await new_session(db_factory)
    hub = LogTailHub(db_factory, poll_interval_s=0.05)
    received: list[LoggedEvent] = []
    hub.watch(session_id, 0, collector(received))
    try:
        await append(db_factory, other, 2)  # another session's events never arrive here
        await append(db_factory, session_id, 1)  # no notify: as if the CLI wrote it
        await wait_for(received, 2)
        await asyncio.sleep(0.2)
        assert [e.seq for e in received] == [1, 2]
    finally:
        await hub.close()


async def test_a_cancelled_watch_delivers_nothing_more(db_factory: Factory) -> None:
    session_id = await new_session(db_factory)
    hub = LogTailHub(db_factory, poll_interval_s=0.05)
    received: list[LoggedEvent] = []
    watch = hub.watch(session_id, 1, collector(received))
    watch.cancel()
    await append(db_factory, session_id, 2)
    hub.notify([session_id])
    await asyncio.sleep(0.3)
    assert received == []
    await hub.close()


async def test_published_events_are_delivered_without_reading_them_back(
    db_factory: Factory,
) -> None:
    session_id = await new_session(db_factory)
    hub = LogTailHub(db_factory, poll_interval_s=30)
    received: list[LoggedEvent] = []
    hub.watch(session_id, 1, collector(received))
    try:
        committed = await append(db_factory, session_id, 2)
        # seq 4 is in no log: it can only arrive from what was published.
        invented = LoggedEvent(seq=4, type="session.updated", actor="x", at="-", payload={})
        hub.publish(session_id, [*committed, invented])
        await wait_for(received, 3)
        assert received == [*committed, invented]
    finally:
        await hub.close()


async def test_a_gap_in_published_events_is_filled_from_the_log(db_factory: Factory) -> None:
    session_id = await new_session(db_factory)
    hub = LogTailHub(db_factory, poll_interval_s=30)
    received: list[LoggedEvent] = []
    hub.watch(session_id, 1, collector(received))
    try:
        committed = await append(db_factory, session_id, 3)
        hub.publish(session_id, committed[2:])  # seq 4 alone: 2 and 3 must come from the log
        await wait_for(received, 3)
        assert [e.seq for e in received] == [2, 3, 4]
        assert [e.payload for e in received] == [{"i": 0}, {"i": 1}, {"i": 2}]
    finally:
        await hub.close()


async def test_a_points_read_leaves_staff_only_events_in_the_database(
    db_factory: Factory,
) -> None:
    """A point resuming in a roll-call must not load every other room's answer to drop it."""
    session_id = await new_session(db_factory)  # seq 1: session.created
    async with db_factory() as db:
        for kind in (
            "rollcall.opened",
            "rollcall.confirmed",
            "invitation.credential_rotated",
            "rollcall.confirmed",
            "floor.call_on",
            "floor.request",
            "rollcall.marked",
            "program.published",
            "rollcall.closed",
            "session.updated",
        ):
            await append_event(db, session_id, kind, "test", {"tên": "Phường Phúc Xá"})
        await db.commit()
    every = await read_events(db_factory, session_id, 1, 100)
    assert [e.seq for e in every] == list(range(2, 12))
    for_points = await read_events(db_factory, session_id, 1, 100, points_only=True)
    assert [(e.seq, e.type) for e in for_points] == [
        (2, "rollcall.opened"),
        (6, "floor.call_on"),
        (9, "program.published"),
        (10, "rollcall.closed"),
        (11, "session.updated"),
    ]
    assert all(audience_of(e.type) is Audience.EVERYONE for e in for_points)
    assert for_points[0].payload == {"tên": "Phường Phúc Xá"}
    # `up_to` bounds the read: what the room has delivered so far, not what was committed since.
    bounded = await read_events(db_factory, session_id, 1, 100, up_to=9, points_only=True)
    assert [e.seq for e in bounded] == [2, 6, 9]
    assert await read_events(db_factory, session_id, 9, 100, up_to=9) == []
