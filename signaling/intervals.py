"""Persisting connected intervals in small batches, off the join path.

A join storm of thousands of points must not wait on one commit each: opens and closes are queued
and written together every half second, in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import PresenceInterval

logger = logging.getLogger("diemcau.intervals")


@dataclass(frozen=True)
class Opened:
    session_id: int
    point_id: int
    at: float
    client: str | None


@dataclass(frozen=True)
class Closed:
    session_id: int
    point_id: int
    at: float
    reason: str


def _dt(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=UTC)


class IntervalWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, flush_s: float = 0.5) -> None:
        self._sessions = sessions
        self._flush_s = flush_s
        self._pending: list[Opened | Closed] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="interval-writer")

    def add(self, item: Opened | Closed) -> None:
        self._pending.append(item)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._flush_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            async with self._sessions() as db:
                opened: list[dict[str, object]] = []
                for item in batch:
                    if isinstance(item, Opened):
                        opened.append(
                            {
                                "session_id": item.session_id,
                                "point_id": item.point_id,
                                "connected_at": _dt(item.at),
                                "client": (item.client or "")[:300] or None,
                            }
                        )
                        continue
                    if opened:
                        await db.execute(insert(PresenceInterval), opened)
                        opened = []
                    await db.execute(
                        update(PresenceInterval)
                        .where(
                            PresenceInterval.session_id == item.session_id,
                            PresenceInterval.point_id == item.point_id,
                            PresenceInterval.disconnected_at.is_(None),
                        )
                        .values(disconnected_at=_dt(item.at), close_reason=item.reason)
                    )
                if opened:
                    await db.execute(insert(PresenceInterval), opened)
                await db.commit()
            self.written += len(batch)
        except Exception:
            logger.exception("writing %d presence interval changes failed; retrying", len(batch))
            self._pending[:0] = batch
            self._wake.set()
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


async def close_dangling(sessions: async_sessionmaker[AsyncSession], at: float) -> int:
    """Intervals left open by a crash end at the restart; their points reconnect as new joins."""
    async with sessions() as db:
        result = await db.execute(
            update(PresenceInterval)
            .where(PresenceInterval.disconnected_at.is_(None))
            .values(disconnected_at=_dt(at), close_reason="server_restart")
        )
        await db.commit()
        return int(getattr(result, "rowcount", 0) or 0)
