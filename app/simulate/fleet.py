"""The simulated rooms as one fleet: worker processes started, progress added up, logs gathered.

Synchronous on purpose: `diemcau simulate` and `diemcau rehearse` are command-line programs whose
own work is waiting; everything asynchronous lives in the worker processes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any

from app.simulate.plan import RoomPlan, shard
from app.simulate.worker import fleet_worker


class FleetError(RuntimeError):
    """A worker process died or stopped answering."""


@dataclass(frozen=True)
class FleetStatus:
    rooms: int
    joined: int
    connected: int
    finished: int
    ended: int
    errors: int
    answered: dict[str, int]
    subscribed: int
    published: int
    program_frames: int
    call_on: int

    def line(self) -> str:
        rounds = ", ".join(f"round {k}: {v}" for k, v in sorted(self.answered.items()))
        return (
            f"{self.joined}/{self.rooms} joined, {self.connected} connected, "
            f"{self.errors} errors"
            + (f", answered {rounds}" if rounds else "")
            + (
                f", media {self.subscribed} receiving ({self.program_frames:,} program frames), "
                f"{self.published} publishing"
                if self.subscribed or self.published
                else ""
            )
        )


@dataclass
class _Proc:
    process: SpawnProcess
    commands: Connection
    answers: Connection


class Fleet:
    def __init__(self, plans: list[RoomPlan], url: str, processes: int = 2) -> None:
        self.plans = plans
        self.url = url
        self.shards = shard(plans, processes)
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list[_Proc] = []
        self.lags_ms: list[float] = []
        """The client processes' loop lag samples (ms), as of the last `report`."""

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, delay_s: float = 1.0) -> float:
        """Start the processes; the rooms' plans count from the wall time returned."""
        for k in range(len(self.shards)):
            commands_out, commands_in = self.ctx.Pipe(duplex=False)
            answers_out, answers_in = self.ctx.Pipe(duplex=False)
            process = self.ctx.Process(
                target=fleet_worker,
                args=(commands_out, answers_in),
                name=f"diemcau-simulate-{k}",
                daemon=True,
            )
            process.start()
            commands_out.close()
            answers_in.close()
            self.procs.append(_Proc(process, commands_in, answers_out))
        t0 = time.time() + delay_s
        self._ask(
            [
                {"cmd": "start", "url": self.url, "t0": t0, "plans": [asdict(p) for p in plans]}
                for plans in self.shards
            ],
            timeout_s=60,
        )
        return t0

    def status(self) -> FleetStatus:
        answers = self._ask([{"cmd": "status"}] * len(self.procs), timeout_s=30)
        answered: Counter[str] = Counter()
        for answer in answers:
            answered.update(answer["answered"])
        return FleetStatus(
            rooms=sum(a["rooms"] for a in answers),
            joined=sum(a["joined"] for a in answers),
            connected=sum(a["connected"] for a in answers),
            finished=sum(a["finished"] for a in answers),
            ended=sum(a["ended"] for a in answers),
            errors=sum(a["errors"] for a in answers),
            answered=dict(answered),
            subscribed=sum(a["subscribed"] for a in answers),
            published=sum(a["published"] for a in answers),
            program_frames=sum(a["program_frames"] for a in answers),
            call_on=sum(a["call_on"] for a in answers),
        )

    def wait(
        self,
        done: Callable[[FleetStatus], bool],
        timeout_s: float,
        progress: Callable[[FleetStatus], None] | None = None,
        every_s: float = 1.0,
    ) -> tuple[bool, FleetStatus]:
        """Poll until `done(status)` or the timeout; (reached, the last status)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status()
            if progress is not None:
                progress(status)
            if done(status):
                return True, status
            if time.monotonic() >= deadline:
                return False, status
            time.sleep(min(every_s, max(0.05, deadline - time.monotonic())))

    def report(self) -> list[dict[str, Any]]:
        """Every room's log, in the plan's order."""
        answers = self._ask([{"cmd": "report"}] * len(self.procs), timeout_s=120)
        self.lags_ms = [float(lag) for answer in answers for lag in answer["lags_ms"]]
        rooms = [room for answer in answers for room in answer["rooms"]]
        order = {plan.code: plan.index for plan in self.plans}
        return sorted(rooms, key=lambda room: order.get(room["code"], 0))

    def stop(self) -> None:
        """The rooms leave (media closed, sockets closed); their logs stay for `report`."""
        self._ask([{"cmd": "stop"}] * len(self.procs), timeout_s=90)

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError, ValueError):
                proc.commands.send({"cmd": "quit"})
        deadline = time.monotonic() + 40
        for proc in self.procs:
            proc.process.join(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.process.is_alive():
                proc.process.terminate()
                proc.process.join(10)
            if proc.process.is_alive():
                proc.process.kill()
                proc.process.join(5)
        self.procs = []

    def _ask(self, commands: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
        for proc, command in zip(self.procs, commands, strict=True):
            try:
                proc.commands.send(command)
            except OSError as exc:
                raise FleetError(f"{proc.process.name} is gone: {exc}") from None
        answers: list[dict[str, Any]] = []
        for proc in self.procs:
            answer = self._answer(proc, timeout_s)
            if "error" in answer:
                raise FleetError(f"{proc.process.name}: {answer['error']}")
            answers.append(answer)
        return answers

    @staticmethod
    def _answer(proc: _Proc, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.answers.poll(0.2):
                try:
                    answer: dict[str, Any] = proc.answers.recv()
                    return answer
                except EOFError:
                    break
            if not proc.process.is_alive():
                break
        raise FleetError(
            f"{proc.process.name} did not answer within {timeout_s:.0f} s "
            f"(exit code {proc.process.exitcode})"
        )
