"""The processes of the floor benchmark besides the orchestrator and the server.

- The point clients are the signaling benchmark's (`signaling_procs.Worker`: one asyncio loop, many
  WebSockets, every event stamped on receipt); `FloorWorker` only changes what `collect` reports:
  for each floor pass, the time from the moderator's command to the event's arrival at each point.
- `MediaPointWorker` is the same for the M points that also publish: after its `welcome`, each
  of them sends `media.publish` on its own WebSocket with an aiortc publisher (`media.loadgen`,
  small video of a height no other point has), then reads events like the others.
- The chair: one moderator connection that sends the floor commands, one pass at a time.
- The hall: a staff connection in role `hall` whose aiortc subscriber (slots floor and preview)
  decodes the floor and records each decoded frame's size and time.

Times compared across processes: event latencies use `time.time()` (the workers stamp receipts with
it); first-frame times use `time.monotonic()` (CLOCK_MONOTONIC, one clock for the whole machine).
Every entry point is a `multiprocessing` spawn target; commands come over a pipe, one answer each.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from app.benchmarks.signaling_procs import (
    CLIENT_OPTIONS,
    Client,
    Worker,
    _pong,
    _recv,
    _run,
    die_with_parent,
    raise_open_files_limit,
)

FLOOR_EVENT = "floor.call_on"
"""The event one `grant` with a point_code (a call-on) writes; every client gets it."""
PUBLISH_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 10.0


def _prepare_media_process() -> None:
    """Die with the orchestrator, many sockets, aioice gathering on 127.0.0.1 only (as the server
    does)."""
    die_with_parent()
    raise_open_files_limit()
    for key in [k for k in os.environ if k.startswith("DIEMCAU_")]:
        del os.environ[key]
    from media.net import apply_network_policy

    apply_network_policy(["127.0.0.1"], None)


# ---- point clients -------------------------------------------------------------------------------


def floor_latencies(
    clients: list[Client], sent: dict[int, float]
) -> tuple[list[tuple[int, float]], int]:
    """(seq, ms from the command's send time to receipt) for every floor event a client got whose
    seq is one of the passes'; and how many (client, pass) pairs got nothing."""
    latencies: list[tuple[int, float]] = []
    missing = 0
    for client in clients:
        got: set[int] = set()
        for event, seq, received, _at, _size in client.events:
            if event == FLOOR_EVENT and seq in sent and seq not in got:
                got.add(seq)
                latencies.append((seq, (received - sent[seq]) * 1000))
        missing += len(sent) - len(got)
    return latencies, missing


class FloorWorker(Worker):
    """A signaling-benchmark client process whose `collect` measures the floor passes."""

    async def collect(self, command: dict[str, Any]) -> dict[str, Any]:
        """Wait (bounded) until every open point has every pass's event, then report latencies.

        `sent`: (seq, the moderator's wall-clock send time) of each accepted pass.
        """
        sent = {int(seq): float(at) for seq, at in command["sent"]}
        deadline = time.monotonic() + float(command["timeout_s"])
        live = [c for c in self.points if c.join_ms is not None]
        while time.monotonic() < deadline:
            if all(c.counts[FLOOR_EVENT] >= len(sent) or c.close_code is not None for c in live):
                break
            await asyncio.sleep(0.05)
        latencies, missing = floor_latencies(live, sent)
        closes = Counter(str(c.close_code) for c in live if c.close_code is not None)
        sizes = [
            size for c in live[:20] for event, _, _, _, size in c.events if event == FLOOR_EVENT
        ]
        return {
            "latencies": latencies,
            "sizes": sizes,
            "missing": missing,
            "clients": len(live),
            "closes": dict(closes),
        }


def floor_client_worker(commands: Connection, answers: Connection) -> None:
    """Spawn target of a point client process (the collector off while measuring, as in the
    signaling benchmark: a full collection over ~1,700 connections would pause it for longer than
    the latencies it measures)."""
    die_with_parent()
    gc.disable()
    worker = FloorWorker(commands, answers)
    _run(worker.main)


class MediaPointWorker(FloorWorker):
    """Points that publish small video on their own WebSocket (`media.publish`), then read events.

    The `join` command carries `specs` (point index → width, height, fps, codec, audio); its answer
    comes once every point has its welcome *and* its publisher connected (or failed).
    """

    def __init__(self, commands: Connection, answers: Connection) -> None:
        super().__init__(commands, answers)
        self.specs: dict[int, dict[str, Any]] = {}
        self.publishers: dict[int, Any] = {}
        self.published: dict[int, asyncio.Future[float]] = {}

    async def join(self, command: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self.specs = {int(index): spec for index, spec in command["specs"]}
        self.published = {index: loop.create_future() for index in self.specs}
        answer = await super().join(command)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PUBLISH_TIMEOUT_S + 5):
                await asyncio.gather(*self.published.values(), return_exceptions=True)
        publish_ms: list[float] = []
        failures: Counter[str] = Counter()
        for future in self.published.values():
            if not future.done():
                failures["publish: no answer"] += 1
            elif future.exception() is not None:
                failures[f"publish: {future.exception()}"[:120]] += 1
            else:
                publish_ms.append(future.result())
        return {**answer, "publish_ms": publish_ms, "publish_failures": dict(failures)}

    async def _read(self, client: Client) -> None:
        if client.index in self.specs:
            await self._publish(client, self.specs[client.index])
        await super()._read(client)

    async def _publish(self, client: Client, spec: dict[str, Any]) -> None:
        from media.loadgen import PublisherClient

        done = self.published[client.index]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                publisher = PublisherClient(
                    codec=str(spec["codec"]),
                    width=int(spec["width"]),
                    height=int(spec["height"]),
                    fps=int(spec["fps"]),
                    audio=bool(spec.get("audio", False)),
                )
                self.publishers[client.index] = publisher
                offer = await publisher.offer()
                await client.ws.send(
                    json.dumps({"type": "media.publish", "id": "pub", "sdp": offer})
                )
                while True:
                    text = await client.ws.recv()
                    message = json.loads(text)
                    kind = message.get("type")
                    if kind == "ping":
                        await client.ws.send(_pong(message))
                    elif kind == "event":
                        client.counts[message["event"]] += 1
                        client.events.append(
                            (message["event"], message["seq"], time.time(), message["at"], 0)
                        )
                    elif kind in ("ack", "error") and message.get("id") == "pub":
                        break
                if kind == "error":
                    raise ConnectionError(f"error {message.get('code')}")
                await publisher.accept(str(message["result"]["sdp"]))
                while publisher.pc.connectionState != "connected":
                    if publisher.pc.connectionState in ("failed", "closed"):
                        raise ConnectionError(f"peer {publisher.pc.connectionState}")
                    await asyncio.sleep(0.02)
            done.set_result((time.perf_counter() - started) * 1000)
        except TimeoutError:
            done.set_exception(ConnectionError("timeout"))
        except Exception as exc:
            done.set_exception(ConnectionError(f"{type(exc).__name__}: {exc}"[:200]))

    async def close_points(self, command: dict[str, Any]) -> dict[str, Any]:
        await self.close_publishers()
        return await super().close_points(command)

    async def close_publishers(self) -> None:
        publishers = list(self.publishers.values())
        self.publishers = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*(p.close() for p in publishers), return_exceptions=True)

    async def main(self) -> None:
        try:
            await super().main()
        finally:
            await self.close_publishers()


def media_point_worker(commands: Connection, answers: Connection) -> None:
    """Spawn target of the process of the M publishing points (the collector stays on: aiortc)."""
    _prepare_media_process()
    worker = MediaPointWorker(commands, answers)
    _run(worker.main)


# ---- staff connections: the chair and the hall ---------------------------------------------


class StaffLink:
    """One staff WebSocket: answers pings, resolves requests by id, keeps the events it gets."""

    def __init__(self) -> None:
        self.ws: Any = None
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[tuple[float, dict[str, Any]]] = []  # (wall receipt time, event)
        self.event_arrived = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.closed: str | None = None

    async def connect(self, url: str, token: str, session_id: int, role: str) -> dict[str, Any]:
        from websockets.asyncio.client import connect

        async with asyncio.timeout(REQUEST_TIMEOUT_S * 3):
            self.ws = await connect(url, **CLIENT_OPTIONS)
            hello = {
                "type": "hello",
                "id": "h",
                "protocol": 1,
                "auth": {"kind": "staff", "token": token, "session_id": session_id, "role": role},
                "client": {"name": "diemcau-bench", "version": "1"},
            }
            await self.ws.send(json.dumps(hello))
            while True:
                message: dict[str, Any] = json.loads(await self.ws.recv())
                if message.get("type") == "welcome":
                    break
                if message.get("type") == "error":
                    raise ConnectionError(f"hello refused: {message.get('code')}")
                if message.get("type") == "ping":
                    await self.ws.send(_pong(message))
        self.reader = asyncio.create_task(self._read())
        return message

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for text in self.ws:
                received = time.time()
                message = json.loads(text)
                kind = message.get("type")
                if kind == "ping":
                    await self.ws.send(_pong(message))
                elif kind == "event":
                    self.events.append((received, message))
                    self.event_arrived.set()
                elif kind in ("ack", "error"):
                    future = self.pending.pop(str(message.get("id")), None)
                    if future is not None and not future.done():
                        future.set_result(message)
        except ConnectionClosed as exc:
            self.closed = f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}"
        finally:
            self.closed = self.closed or "closed"
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(self.closed))

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a message with an id; its ack or error (ConnectionError if the socket closes)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[str(message["id"])] = future
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await self.ws.send(json.dumps(message))
            return await future

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.ws.close()
            self.ws.transport.abort()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)


Handlers = dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]]


async def _serve(commands: Connection, answers: Connection, handlers: Handlers) -> None:
    """One command at a time, one answer each; `quit`, a closed pipe or an unknown command ends."""
    loop = asyncio.get_running_loop()
    while True:
        command: dict[str, Any] = await loop.run_in_executor(None, _recv, commands)
        handler = handlers.get(str(command.get("cmd")))
        if handler is None:
            return
        try:
            answer = await handler(command)
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        answers.send(answer)


class Chair:
    """The moderator: calls on one point per pass, times the ack and its own copy of the event."""

    def __init__(self) -> None:
        self.link = StaffLink()

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        await self.link.connect(
            str(command["url"]), str(command["token"]), int(command["session_id"]), "moderator"
        )
        return {"connected": True}

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        """Pass k at `start + k * interval` (or when pass k - 1 was answered, if later)."""
        from websockets.exceptions import ConnectionClosed

        codes: list[str] = list(command["codes"])
        interval = float(command["interval_s"])
        start = time.monotonic() + 0.2
        passes: list[dict[str, Any]] = []
        used: set[int] = set()
        for k, code in enumerate(codes):
            delay = start + k * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            message = {"type": "floor", "id": f"pass-{k}", "action": "grant", "point_code": code}
            sent_wall, sent_mono = time.time(), time.monotonic()
            record: dict[str, Any] = {
                "code": code,
                "sent_wall": sent_wall,
                "sent_mono": sent_mono,
                "ack_ms": None,
                "outcome": "no answer",
                "seq": None,
                "chair_event_ms": None,
            }
            passes.append(record)
            try:
                reply = await self.link.request(message)
            except (TimeoutError, ConnectionError, ConnectionClosed) as exc:
                record["outcome"] = f"{type(exc).__name__}: {exc}"[:200]
                if self.link.closed:
                    break
                continue
            record["ack_ms"] = (time.monotonic() - sent_mono) * 1000
            record["outcome"] = "ack" if reply["type"] == "ack" else f"error {reply.get('code')}"
            if reply["type"] != "ack":
                continue
            # The event went out before the ack on this connection; wait a little if it did not.
            found = await self._event_for(code, used, sent_wall)
            if found is not None:
                index, received, seq = found
                used.add(index)
                record["seq"] = seq
                record["chair_event_ms"] = (received - sent_wall) * 1000
        return {"passes": passes}

    async def _event_for(
        self, code: str, used: set[int], since: float
    ) -> tuple[int, float, int] | None:
        deadline = time.monotonic() + 5.0
        while True:
            for index, (received, event) in enumerate(self.link.events):
                if index in used or event.get("event") != FLOOR_EVENT or received < since:
                    continue
                holders = event.get("payload", {}).get("floor", {}).get("holders", [])
                if any(h.get("point_code") == code for h in holders):
                    return index, received, int(event["seq"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.link.event_arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.link.event_arrived.wait()


def chair_worker(commands: Connection, answers: Connection) -> None:
    """Spawn target of the moderator's process."""
    die_with_parent()
    chair = Chair()

    async def main() -> None:
        try:
            await _serve(commands, answers, {"connect": chair.connect, "run": chair.run})
        finally:
            await chair.link.close()

    _run(main)


class Hall:
    """The hall's screen: an aiortc subscriber to the floor (and preview) slot, decoding."""

    def __init__(self) -> None:
        self.link = StaffLink()
        self.subscriber: Any = None

    async def connect(self, command: dict[str, Any]) -> dict[str, Any]:
        from media.loadgen import SubscriberClient

        await self.link.connect(
            str(command["url"]), str(command["token"]), int(command["session_id"]), "hall"
        )
        started = time.perf_counter()
        self.subscriber = SubscriberClient(("floor", "preview"))
        offer = await self.subscriber.offer()
        reply = await self.link.request({"type": "media.subscribe", "id": "sub", "sdp": offer})
        if reply["type"] != "ack":
            raise ConnectionError(f"media.subscribe refused: {reply.get('code')}")
        await self.subscriber.accept(str(reply["result"]["sdp"]))
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            while self.subscriber.pc.connectionState != "connected":
                if self.subscriber.pc.connectionState in ("failed", "closed"):
                    raise ConnectionError(f"peer {self.subscriber.pc.connectionState}")
                await asyncio.sleep(0.02)
        return {"subscribe_ms": (time.perf_counter() - started) * 1000}

    async def report(self, command: dict[str, Any]) -> dict[str, Any]:
        """Per pass (monotonic send time, the new speaker's width and height): ms to its first
        decoded floor frame of that size, None when none came before the next pass's command."""
        passes = [(float(t), int(w), int(h)) for t, w, h in command["passes"]]
        settle_s = float(command.get("settle_s", 0.0))
        if settle_s > 0:
            await asyncio.sleep(settle_s)
        sizes: list[tuple[float, int, int]] = self.subscriber.logs["floor/video"].sizes
        first_ms: list[float | None] = []
        for index, (sent, width, height) in enumerate(passes):
            ends = passes[index + 1][0] if index + 1 < len(passes) else math.inf
            seen = next(
                (at for at, w, h in sizes if sent <= at < ends and (w, h) == (width, height)), None
            )
            first_ms.append(None if seen is None else (seen - sent) * 1000)
        seen_sizes = Counter(f"{w}x{h}" for _, w, h in sizes)
        return {"first_frame_ms": first_ms, "frames": len(sizes), "sizes_seen": dict(seen_sizes)}

    async def close(self) -> None:
        if self.subscriber is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self.subscriber.close()
        await self.link.close()


def hall_worker(commands: Connection, answers: Connection) -> None:
    """Spawn target of the hall's process."""
    _prepare_media_process()
    hall = Hall()

    async def main() -> None:
        try:
            await _serve(commands, answers, {"connect": hall.connect, "report": hall.report})
        finally:
            await hall.close()

    _run(main)
