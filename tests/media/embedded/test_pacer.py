"""The pacer bounds how long forwarding keeps the event loop (a keyframe burst to many sinks).

The clock is the test's: the rule (yield once the slice's budget is spent) is checked exactly,
not with wall-clock timings; `diemcau bench media` measures the real loop.
"""

from __future__ import annotations

import asyncio
import itertools

from media.embedded.forwarding import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_forwarding_yields_once_its_budget_is_spent() -> None:
    clock = FakeClock()
    pacer = Pacer(budget_s=0.004, clock=clock)
    other_task_ran_at: list[float] = []
    done = asyncio.Event()

    async def other_task() -> None:
        while not done.is_set():
            other_task_ran_at.append(clock.now)
            await asyncio.sleep(0)

    async def burst() -> None:
        for _ in range(1000):  # 1000 sends of 0.1 ms: 100 ms of work
            clock.now += 0.0001
            await pacer.checkpoint()
        done.set()

    await asyncio.gather(other_task(), burst())
    gaps = [b - a for a, b in itertools.pairwise(other_task_ran_at)]
    assert max(gaps) <= 0.0041 + 1e-9
    assert 24 <= pacer.yields <= 25  # every 40th or 41st send (float sums)
    assert pacer.longest_slice_s <= 0.0041


async def test_time_spent_elsewhere_does_not_count_against_a_new_burst() -> None:
    clock = FakeClock()
    pacer = Pacer(budget_s=0.004, clock=clock)
    clock.now += 1.0  # the loop was busy with other things
    pacer.idle()
    clock.now += 0.001
    await pacer.checkpoint()
    assert pacer.yields == 0


async def test_the_backend_reports_how_long_its_loop_was_held() -> None:
    import time

    from media.embedded.backend import EmbeddedMedia

    media = EmbeddedMedia()
    await media.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.06)  # noqa: ASYNC251 - on purpose: something holds the loop
        await asyncio.sleep(0.03)
        stats = await media.backend_stats()
        assert stats.loop_lag_max_s >= 0.04
        assert (
            await media.backend_stats()
        ).loop_lag_max_s < stats.loop_lag_max_s  # since last read
    finally:
        await media.stop()
