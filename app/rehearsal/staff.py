"""The hall of a rehearsal: it sends the program every room watches and shows the floor.

The hall is a staff connection in role `hall`, as the hall page is: it publishes a synthetic
program (a camera and a microphone) with aiortc and receives the floor slot, decoding, so that the
rehearsal can say when each speaker's picture reached the hall. The moderator is the floor
benchmark's (`app.benchmarks.floor_procs.chair_worker`): one staff connection calling on points.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection
from typing import Any

from app.benchmarks.floor_procs import (
    PUBLISH_TIMEOUT_S,
    Hall,
    _prepare_media_process,
    _serve,
)
from app.benchmarks.signaling_procs import _run

PROGRAM_WIDTH = 320
PROGRAM_HEIGHT = 192
PROGRAM_FPS = 15


class ProgramHall(Hall):
    """`Hall` (floor and preview in, decoding) that also sends the program."""

    def __init__(self) -> None:
        super().__init__()
        self.publisher: Any = None

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        from media.loadgen import PublisherClient

        answer = await super().connect(command)
        started = time.perf_counter()
        self.publisher = PublisherClient(
            width=PROGRAM_WIDTH, height=PROGRAM_HEIGHT, fps=PROGRAM_FPS, amplitude=4000
        )
        offer = await self.publisher.offer()
        reply = await self.link.request({"type": "media.publish", "id": "program", "sdp": offer})
        if reply["type"] != "ack":
            raise ConnectionError(f"media.publish refused: {reply.get('code')}")
        await self.publisher.accept(str(reply["result"]["sdp"]))
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            while self.publisher.pc.connectionState != "connected":
                if self.publisher.pc.connectionState in ("failed", "closed"):
                    raise ConnectionError(f"peer {self.publisher.pc.connectionState}")
                await asyncio.sleep(0.02)
        return {**answer, "publish_ms": (time.perf_counter() - started) * 1000}

    async def close(self) -> None:
        if self.publisher is not None:
            await self.publisher.close()
        await super().close()


def hall_worker(commands: Connection, answers: Connection) -> None:
    """Spawn target of the hall's process."""
    _prepare_media_process()
    hall = ProgramHall()

    async def main() -> None:
        try:
            await _serve(commands, answers, {"connect": hall.connect, "report": hall.report})
        finally:
            await hall.close()

    _run(main)
