"""The garbage-collector policy freezes after joins settle and unfreezes when it stops."""

from __future__ import annotations

import asyncio
import gc

from signaling.gc_policy import GcPolicy


async def test_freezes_shortly_after_arrivals_and_refreshes() -> None:
    policy = GcPolicy(settle_s=0.05, refresh_every_s=0.3)
    policy.start()
    try:
        assert gc.get_freeze_count() > 0
        survivors = [object() for _ in range(10)]  # allocated after the start: not frozen yet
        policy.arrived()
        policy.arrived()
        async with asyncio.timeout(2):
            while policy.freezes < 1:
                await asyncio.sleep(0.01)
        assert policy.freezes == 1  # two joins within the settle time: one freeze
        frozen = gc.get_freeze_count()
        assert frozen > 0
        async with asyncio.timeout(2):  # the periodic refresh freezes again without joins
            while policy.freezes < 2:
                await asyncio.sleep(0.05)
        assert survivors
    finally:
        await policy.close()
    assert gc.get_freeze_count() == 0
