"""Garbage-collector policy for a process holding thousands of long-lived connections.

Each connection keeps ~180 objects the collector tracks; with 3,321 of them a full collection walks
~800,000 objects, takes ~0.5 s on this hardware, frees almost nothing and stalls every broadcast
(measured: docs/benchmarks.md). Half a second after connections arrive, what is alive is moved out of the
collector's sight (`gc.freeze`, cheap: it moves lists); now and then everything is looked at once
more, so that the cycles of closed connections are reclaimed, at a time chosen here rather than in
the middle of a fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time

logger = logging.getLogger("diemcau.gc")


class GcPolicy:
    def __init__(self, *, settle_s: float, refresh_every_s: float) -> None:
        self._settle_s = settle_s
        self._refresh_every_s = refresh_every_s
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.freezes = 0

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self._task = asyncio.create_task(self._run(), name="gc-policy")

    def arrived(self) -> None:
        """A connection arrived: freeze what is alive shortly (at most once per settle time)."""
        self._arrived.set()

    async def _run(self) -> None:
        last_refresh = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), self._refresh_every_s)
            if self._arrived.is_set():
                # Not waiting for joins to stop: in a join storm that lasts a minute, full
                # collections would walk the growing heap many times meanwhile.
                await asyncio.sleep(self._settle_s)
                self._arrived.clear()
            if time.monotonic() - last_refresh >= self._refresh_every_s:
                started = time.perf_counter()
                gc.unfreeze()
                found = gc.collect()
                last_refresh = time.monotonic()
                logger.info(
                    "full collection: %d objects freed in %.0f ms",
                    found,
                    (time.perf_counter() - started) * 1000,
                )
            gc.freeze()
            self.freezes += 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        gc.unfreeze()
