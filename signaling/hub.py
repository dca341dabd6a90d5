"""The session event hub: committed events of a session, delivered in seq order to whoever watches.

The durable log is the source. Events committed in this process are handed over by `publish` right
after their commit and delivered without being read back; a watch reads `seq > last` from the log
when woken by `notify`, to fill a gap, and on a short poll that finds commits made elsewhere (the
CLI, another instance). A Redis implementation for several coordinator instances only has to carry
the events or the wake-ups between processes; the interface stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import SessionEvent
from signaling.audience import for_points

logger = logging.getLogger("diemcau.hub")
_BATCH = 500
_SLICE = 32


@dataclass(frozen=True)
class LoggedEvent:
    seq: int
    type: str
    actor: str
    at: str
    payload: dict[str, Any]


def to_logged(row: SessionEvent) -> LoggedEvent:
    return LoggedEvent(
        seq=row.seq,
        type=row.type,
        actor=row.actor,
        at=row.created_at.isoformat(),
        payload=row.payload,
    )


Deliver = Callable[[Sequence[LoggedEvent]], Awaitable[None]]


class Watch(Protocol):
    def cancel(self) -> None: ...


class EventHub(Protocol):
    def watch(self, session_id: int, after_seq: int, deliver: Deliver) -> Watch: ...

    def publish(self, session_id: int, events: Sequence[LoggedEvent]) -> None:
        """Events this process has just committed: delivered without reading them back."""
        ...

    def notify(self, session_ids: Iterable[int]) -> None:
        """Something was committed for these sessions: read the log now."""
        ...

    async def close(self) -> None: ...


async def read_events(
    sessions: async_sessionmaker[AsyncSession],
    session_id: int,
    after_seq: int,
    limit: int,
    *,
    up_to: int | None = None,
    points_only: bool = False,
) -> list[LoggedEvent]:
    """Logged events after `after_seq` (and up to `up_to`) in order. `points_only` leaves the
    staff-only ones in the database: a point resuming in a roll-call would otherwise load thousands
    of other rooms' answers as rows only to drop them."""
    query = select(SessionEvent).where(
        SessionEvent.session_id == session_id, SessionEvent.seq > after_seq
    )
    if up_to is not None:
        query = query.where(SessionEvent.seq <= up_to)
    if points_only:
        query = query.where(for_points(SessionEvent.type))
    async with sessions() as db:
        rows = await db.scalars(query.order_by(SessionEvent.seq).limit(limit))
        return [to_logged(row) for row in rows]


class _Tail:
    def __init__(
        self,
        hub: LogTailHub,
        session_id: int,
        after_seq: int,
        deliver: Deliver,
    ) -> None:
        self.hub = hub
        self.session_id = session_id
        self.last_seq = after_seq
        self.deliver = deliver
        self.pending: list[LoggedEvent] = []
        self.wake = asyncio.Event()
        self.task = asyncio.create_task(self._run(), name=f"hub-tail-{session_id}")

    def cancel(self) -> None:
        self.task.cancel()
        self.hub._tails.get(self.session_id, set()).discard(self)

    async def _run(self) -> None:
        poll = self.hub.poll_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), poll)
            self.wake.clear()
            try:
                pending, self.pending = self.pending, []
                pending.sort(key=lambda e: e.seq)
                fresh = [e for e in pending if e.seq > self.last_seq]
                contiguous = all(
                    event.seq == self.last_seq + 1 + index for index, event in enumerate(fresh)
                )
                if fresh and contiguous:
                    # Committed here a moment ago and nothing missing before them: no read back.
                    self.last_seq = fresh[-1].seq
                    await self.deliver(fresh)
                    continue
                while True:
                    batch = await read_events(
                        self.hub.sessions, self.session_id, self.last_seq, _BATCH
                    )
                    if not batch:
                        break
                    self.last_seq = batch[-1].seq
                    # Slices with a loop turn between them, so that connection writers drain a
                    # burst of events as it is delivered instead of seeing all of it queued.
                    for start in range(0, len(batch), _SLICE):
                        await self.deliver(batch[start : start + _SLICE])
                        await asyncio.sleep(0)
                    if len(batch) < _BATCH:
                        break
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading the event log of session %s failed", self.session_id)
                await asyncio.sleep(poll)


class LogTailHub:
    """In-process hub: one tail of the log per watched session."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, poll_interval_s: float
    ) -> None:
        self.sessions = sessions
        self.poll_interval_s = poll_interval_s
        self._tails: dict[int, set[_Tail]] = {}

    def watch(self, session_id: int, after_seq: int, deliver: Deliver) -> Watch:
        tail = _Tail(self, session_id, after_seq, deliver)
        self._tails.setdefault(session_id, set()).add(tail)
        return tail

    def publish(self, session_id: int, events: Sequence[LoggedEvent]) -> None:
        for tail in self._tails.get(session_id, ()):
            tail.pending.extend(events)
            tail.wake.set()

    def notify(self, session_ids: Iterable[int]) -> None:
        for session_id in session_ids:
            for tail in self._tails.get(session_id, ()):
                tail.wake.set()

    async def close(self) -> None:
        tails = [tail for group in self._tails.values() for tail in group]
        for tail in tails:
            tail.task.cancel()
        for tail in tails:
            with contextlib.suppress(asyncio.CancelledError):
                await tail.task
        self._tails.clear()
