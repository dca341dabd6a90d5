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
