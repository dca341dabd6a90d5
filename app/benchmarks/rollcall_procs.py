"""The processes of the roll-call benchmark besides the orchestrator and the server.

Point processes: connect their share of the points, then, from a common start time, each point
confirms once at its own moment in the window and waits for its `ack` (sending the same message, same
key, again after a dropped connection or `unavailable`). The operator process: one staff connection
that stamps every `rollcall.tally` and `rollcall.confirmed` on receipt, before parsing. All times are
`time.time()`: one machine, one clock.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from app.benchmarks.signaling_procs import _run, die_with_parent, raise_open_files_limit

CONNECT = {
    "open_timeout": 30,
    "close_timeout": 2,
    "ping_interval": None,
    "compression": None,
    "proxy": None,
    "max_size": 1 << 20,
}


async def _welcome(ws: ClientConnection, hello: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(hello))
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong", "nonce": message["nonce"]}))
        elif message["type"] == "welcome":
            return message
        elif message["type"] == "error":
            raise ConnectionError(message["code"])


def _point_hello(credential: str) -> dict[str, Any]:
    return {
        "type": "hello",
        "id": "h",
        "protocol": 1,
        "auth": {"kind": "point", "credential": credential},
        "client": {"name": "diemcau-bench-rollcall", "version": "1"},
    }


class Point:
    def __init__(self, code: str, credential: str, rng: random.Random) -> None:
        self.code = code
        self.credential = credential
        self.key = uuid.uuid4().hex
        self.headcount = rng.randint(0, 300)
        self.ws: ClientConnection | None = None
        self.sent: float | None = None
        self.acked: float | None = None
        self.retries = 0
        self.error: str | None = None

    async def join(self, url: str) -> None:
        self.ws = await connect(url, **CONNECT)  # type: ignore[arg-type]
        await _welcome(self.ws, _point_hello(self.credential))

    async def confirm(self, url: str, at: float, deadline: float) -> None:
        await asyncio.sleep(max(0.0, at - time.time()))
        message = json.dumps(
            {
                "type": "rollcall",
                "id": f"c-{self.code}",
                "action": "confirm",
                "round": 1,
                "headcount": self.headcount,
                "note": "",
                "key": self.key,
            }
        )
        while time.time() < deadline:
            try:
                if self.ws is None:
                    self.ws = await connect(url, **CONNECT)  # type: ignore[arg-type]
                    await _welcome(self.ws, _point_hello(self.credential))
                if self.sent is None:
                    self.sent = time.time()
                await self.ws.send(message)
                while True:
                    reply = json.loads(await self.ws.recv())
                    if reply["type"] == "ping":
                        await self.ws.send(json.dumps({"type": "pong", "nonce": reply["nonce"]}))
                    elif reply["type"] == "ack" and reply["id"] == f"c-{self.code}":
                        self.acked = time.time()
                        return
                    elif reply["type"] == "error" and reply.get("id") == f"c-{self.code}":
                        if reply["code"] != "unavailable":
                            self.error = str(reply["code"])
                            return
                        self.retries += 1
                        break
            except (OSError, ConnectionClosed, InvalidHandshake, ConnectionError, TimeoutError):
                self.retries += 1
                self.ws = None
                await asyncio.sleep(0.2)

    async def keep_answering(self) -> None:
        """After the ack: answer pings until closed, so the server keeps the point online."""
        ws = self.ws
        if ws is None:
            return
        try:
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "nonce": message["nonce"]}))
        except (ConnectionClosed, OSError):
            return


def point_worker(commands: Connection, answers: Connection) -> None:
    die_with_parent()
    raise_open_files_limit()
    _run(lambda: _points_main(commands, answers))


async def _points_main(commands: Connection, answers: Connection) -> None:
    loop = asyncio.get_running_loop()
    job: dict[str, Any] = await loop.run_in_executor(None, commands.recv)
    rng = random.Random(job["seed"])  # noqa: S311 - load timing, not secrets
    points = [Point(code, credential, rng) for code, credential in job["points"]]
    url = job["url"]
    joined = await asyncio.gather(*(p.join(url) for p in points), return_exceptions=True)
    failures = [repr(r) for r in joined if isinstance(r, BaseException)]
    readers = [asyncio.create_task(p.keep_answering()) for p in points if p.ws is not None]
    answers.send({"joined": len(points) - len(failures), "failures": failures[:5]})
    go: dict[str, Any] = await loop.run_in_executor(None, commands.recv)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    t0, window, deadline = go["t0"], go["window_s"], go["deadline"]
    await asyncio.gather(
        *(p.confirm(url, t0 + rng.uniform(0, window), deadline) for p in points),
        return_exceptions=True,
    )
    answers.send(
        {
            "points": [
                {
                    "code": p.code,
                    "headcount": p.headcount,
                    "sent": p.sent,
                    "acked": p.acked,
                    "retries": p.retries,
                    "error": p.error,
                }
                for p in points
            ]
        }
    )
    await asyncio.gather(
        *(p.ws.close() for p in points if p.ws is not None), return_exceptions=True
    )


def operator_worker(commands: Connection, answers: Connection) -> None:
    die_with_parent()
    _run(lambda: _operator_main(commands, answers))


async def _operator_main(commands: Connection, answers: Connection) -> None:
    loop = asyncio.get_running_loop()
    job: dict[str, Any] = await loop.run_in_executor(None, commands.recv)
    hello = {
        "type": "hello",
        "id": "op",
        "protocol": 1,
        "auth": {
            "kind": "staff",
            "token": job["token"],
            "session_id": job["session_id"],
            "role": "operator",
        },
    }
    tallies: list[tuple[float, int, dict[str, int]]] = []
    confirmed: dict[str, int] = {}
    async with connect(job["url"], **CONNECT) as ws:  # type: ignore[arg-type]
        await _welcome(ws, hello)
        answers.send({"ready": True})
        stop = loop.run_in_executor(None, commands.recv)
        while not stop.done():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            at = time.time()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong", "nonce": message["nonce"]}))
            elif kind == "rollcall.tally":
                tallies.append((at, int(message["seq"]), message["counts"]))
            elif kind == "event" and message.get("event") == "rollcall.confirmed":
                confirmed[str(message["payload"]["point_code"])] = int(message["seq"])
    answers.send({"tallies": tallies, "confirmed": confirmed})
