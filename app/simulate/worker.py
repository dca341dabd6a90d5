"""A process of simulated rooms: one asyncio loop, its share of the rooms, commands over a pipe.

Thousands of rooms on two cores need more than one loop (the server shares the machine in a
rehearsal); media rooms decode video, so they are spread over the processes too. The orchestrator
asks for progress while the rooms live their lives: the command loop runs beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

from app.benchmarks.signaling_procs import _recv, _run, die_with_parent, raise_open_files_limit
from app.simulate.plan import RoomPlan
from app.simulate.room import Room

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PROBE_S = 0.1


class FleetWorker:
    def __init__(self, commands: Connection, answers: Connection) -> None:
        self.commands = commands
        self.answers = answers
        self.rooms: list[Room] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.lags_ms: list[float] = []
        self.probe: asyncio.Task[None] | None = None

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                command: dict[str, Any] = await loop.run_in_executor(None, _recv, self.commands)
                name = command.get("cmd")
                if name == "quit":
                    return
                try:
                    answer = await self.handle(str(name), command)
                except Exception as exc:
                    answer = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                self.answers.send(answer)
        finally:
            await self.stop()

    async def handle(self, name: str, command: dict[str, Any]) -> dict[str, Any]:
        if name == "start":
            return self.start(command)
        if name == "status":
            return self.status()
        if name == "report":
            for room in self.rooms:
                room.count_frames()
            return {"rooms": [room.log.as_dict() for room in self.rooms], "lags_ms": self.lags_ms}
        if name == "stop":
            await self.stop()
            return {"stopped": len(self.rooms)}
        raise ValueError(f"unknown command {name!r}")

    def start(self, command: dict[str, Any]) -> dict[str, Any]:
        plans = [RoomPlan(**plan) for plan in command["plans"]]
        url = str(command["url"])
        if any(plan.media for plan in plans):
            _media_network(url)
        # The orchestrator's start time (wall clock) as this process's monotonic clock.
        started = time.monotonic() + (float(command["t0"]) - time.time())
        self.rooms = [Room(plan, url, started) for plan in plans]
        self.tasks = [asyncio.ensure_future(room.run()) for room in self.rooms]
        self.probe = asyncio.ensure_future(self._probe_lag())
        return {"rooms": len(self.rooms)}

    async def _probe_lag(self) -> None:
        """How late this loop wakes up: the rooms stamp events on receipt, so a busy client
        process adds its own delay to what they measure; the report says how much."""
        while True:
            before = time.monotonic()
            await asyncio.sleep(PROBE_S)
            self.lags_ms.append((time.monotonic() - before - PROBE_S) * 1000)

    def status(self) -> dict[str, Any]:
        answered: Counter[str] = Counter()
        for room in self.rooms:
            for number, record in room.log.rollcall.items():
                if record.get("outcome") == "ack":
                    answered[str(number)] += 1
            room.count_frames()
        return {
            "rooms": len(self.rooms),
            "joined": sum(1 for r in self.rooms if r.log.join_ms is not None),
            "connected": sum(1 for r in self.rooms if r.connected.is_set()),
            "finished": sum(1 for r in self.rooms if r.finished),
            "ended": sum(1 for r in self.rooms if r.log.ended),
            "errors": sum(len(r.log.errors) for r in self.rooms),
            "answered": dict(answered),
            "subscribed": sum(1 for r in self.rooms if r.log.subscribe_ms is not None),
            "published": sum(1 for r in self.rooms if r.log.publish_ms is not None),
            "program_frames": sum(r.log.program_frames for r in self.rooms),
            "call_on": sum(len(r.log.call_on) for r in self.rooms),
        }

    async def stop(self) -> None:
        rooms, self.rooms = self.rooms, list(self.rooms)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.gather(*(room.stop() for room in rooms), return_exceptions=True)
        tasks = [*self.tasks, *([self.probe] if self.probe is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks = []
        self.probe = None


def _media_network(url: str) -> None:
    """Against a server on this machine, gather ICE candidates on 127.0.0.1 (aioice skips
    loopback by itself); against another host, let aioice pick the machine's addresses."""
    from media.net import apply_network_policy

    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_HOSTS:
        apply_network_policy(["127.0.0.1"], None)


def fleet_worker(commands: Connection, answers: Connection) -> None:
    """Spawn target of one process of rooms."""
    die_with_parent()
    raise_open_files_limit()
    for key in [k for k in os.environ if k.startswith("DIEMCAU_")]:
        del os.environ[key]
    worker = FleetWorker(commands, answers)
    _run(worker.main)
