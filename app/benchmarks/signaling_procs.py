"""The processes of the signaling benchmark besides the orchestrator: the diemcau server, the plain
`websockets` baseline server, and the client workers (one asyncio loop each, many WebSockets).

Every entry point here is a `multiprocessing` spawn target, so it imports what it needs itself.
Workers and the baseline server take commands from the orchestrator over a pipe and answer over
another; every wait is bounded, and a worker whose orchestrator went away exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import os
import resource
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

EVENT_NAME = "session.updated"
BASELINE_EVENT = "bench.baseline"
_PR_SET_PDEATHSIG = 1


# The simulated clients: no compression or library pings (the protocol has its own heartbeat),
# no proxy lookup, and timeouts left to the benchmark's own bounds.
CLIENT_OPTIONS: dict[str, Any] = {
    "compression": None,
    "ping_interval": None,
    "proxy": None,
    "open_timeout": None,
    "close_timeout": 2,
    "max_size": 1 << 20,
    "max_queue": None,
}


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the orchestrator dies, so nothing outlives a killed run."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main())


# ---- the diemcau server ------------------------------------------------------------------------


def serve_diemcau(
    env: dict[str, str],
    phase_dir: str,
    profile: bool = False,
    freeze_gc: bool = False,
    media_workers: int | None = 0,
) -> None:
    """Run the real server (`uvicorn.Server(server_config(settings))`) with DIEMCAU_* from `env`.

    SIGUSR1 starts a measured phase and SIGUSR2 ends it, writing `<phase>.gc.json` (the garbage
    collector's pauses in that phase) to `phase_dir`; with `profile`, also `<phase>.pstats` from
    cProfile on the server's main thread: a hint of where the time goes (it slows the server down).
    With `freeze_gc` (an experiment, not how the service runs), each phase starts with
    `gc.freeze()`, so full collections skip every object that existed before it.
    `media_workers` 0 (the benchmarks negotiate no media, and a daemon process may not start
    worker processes) or, from a process that is not a daemon, as `diemcau serve` (None).
    """
    die_with_parent()
    for key in [k for k in os.environ if k.startswith("DIEMCAU_")]:
        del os.environ[key]
    os.environ.update(env)
    raise_open_files_limit()

    import uvicorn

    from app.logging_setup import configure_logging
    from app.server import server_config
    from app.settings import Settings

    settings = Settings(media_workers=media_workers).with_secret()
    configure_logging(settings.log_level, settings.log_format)
    PhaseRecorder(Path(phase_dir), profile=profile, freeze_gc=freeze_gc).install()
    uvicorn.Server(server_config(settings)).run()


PHASES = ("join", "fanout")


class PhaseRecorder:
    """GC pauses (and optionally cProfile) per phase, between SIGUSR1 and SIGUSR2."""

    def __init__(self, directory: Path, *, profile: bool, freeze_gc: bool) -> None:
        self.directory = directory
        self.profile = profile
        self.freeze_gc = freeze_gc
        self.phase = 0
        self.active = False
        self.profiler: Any = None
        self.gc_started: dict[int, float] = {}
        self.pauses: list[tuple[int, float, int]] = []  # generation, seconds, collected

    def install(self) -> None:
        gc.callbacks.append(self._gc)
        signal.signal(signal.SIGUSR1, self._start)
        signal.signal(signal.SIGUSR2, self._stop)

    def _gc(self, stage: str, info: dict[str, int]) -> None:
        if not self.active:
            return
        generation = info["generation"]
        if stage == "start":
            self.gc_started[generation] = time.perf_counter()
        elif generation in self.gc_started:
            took = time.perf_counter() - self.gc_started.pop(generation)
            self.pauses.append((generation, took, info.get("collected", 0)))

    def _start(self, signum: int, frame: object) -> None:
        if self.freeze_gc:
            gc.freeze()
        self.pauses = []
        self.active = True
        if self.profile:
            import cProfile

            self.profiler = cProfile.Profile()
            self.profiler.enable()

    def _stop(self, signum: int, frame: object) -> None:
        if not self.active:
            return
        self.active = False
        name = PHASES[min(self.phase, len(PHASES) - 1)]
        self.phase += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.profiler is not None:
            self.profiler.disable()
            self.profiler.dump_stats(str(self.directory / f"{name}.pstats"))
            self.profiler = None
        generations: dict[str, dict[str, float]] = {}
        for generation, took, collected in self.pauses:
            entry = generations.setdefault(
                str(generation), {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "collected": 0}
            )
            entry["count"] += 1
            entry["total_ms"] = round(entry["total_ms"] + took * 1000, 3)
            entry["max_ms"] = round(max(entry["max_ms"], took * 1000), 3)
            entry["collected"] += collected
        summary = {
            "collections": generations,
            "objects_tracked": len(gc.get_objects()),
            "objects_frozen": gc.get_freeze_count(),
        }
        partial = self.directory / f"{name}.gc.json.part"
        partial.write_text(json.dumps(summary))
        partial.rename(self.directory / f"{name}.gc.json")


# ---- the baseline: websockets' own broadcast() -------------------------------------------------


def baseline_message(seq: int, size: int) -> str:
    """A message shaped like a session event, `size` bytes long, stamped with the send time."""
    body: dict[str, Any] = {
        "type": "event",
        "seq": seq,
        "event": BASELINE_EVENT,
        "actor": "bench",
        "at": datetime.now(UTC).isoformat(),
        "payload": {"pad": ""},
    }
    bare = len(json.dumps(body, separators=(",", ":")))
    body["payload"]["pad"] = "x" * max(0, size - bare)
    return json.dumps(body, separators=(",", ":"))


def serve_baseline(port: int, commands: Connection, answers: Connection) -> None:
    """A plain websockets server that holds connections and broadcasts when told to."""
    die_with_parent()
    raise_open_files_limit()
    _run(lambda: _baseline_main(port, commands, answers))


async def _baseline_main(port: int, commands: Connection, answers: Connection) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    loop = asyncio.get_running_loop()
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,
        ping_interval=None,
        max_size=65536,
        backlog=2048,
    ):
        answers.send({"ready": True})
        while True:
            command: dict[str, Any] = await loop.run_in_executor(None, _recv, commands)
            kind = command.get("cmd")
            if kind == "broadcast":
                interval = float(command["interval_s"])
                connections = len(clients)
                for seq in range(1, int(command["count"]) + 1):
                    broadcast(clients, baseline_message(seq, int(command["size"])))
                    await asyncio.sleep(interval)
                answers.send({"connections": connections})
            else:
                for ws in list(clients):
                    ws.transport.abort()
                answers.send({"bye": True})
                return


def _recv(conn: Connection) -> Any:
    try:
        return conn.recv()
    except (EOFError, OSError):
        return {"cmd": "quit"}


# ---- client workers ----------------------------------------------------------------------------


@dataclass
class Client:
    """One simulated point (or one plain baseline connection) and what it measured."""

    index: int
    join_ms: float | None = None
    welcomed_at: float | None = None
    failure: str | None = None
    close_code: int | None = None
    # (event name, seq, received wall time, the event's `at`, size in bytes)
    events: list[tuple[str, int, float, str, int]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    task: asyncio.Task[None] | None = None
    ws: Any = None


def _parse_at(at: str) -> float:
    stamp = datetime.fromisoformat(at)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


class Worker:
    """One client process: the points given to it, then the baseline connections."""

    def __init__(self, commands: Connection, answers: Connection) -> None:
        self.commands = commands
        self.answers = answers
        self.points: list[Client] = []
        self.plain: list[Client] = []
        self.open_files = raise_open_files_limit()

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        handlers: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "join": self.join,
            "collect": self.collect,
            "close": self.close_points,
            "baseline_join": self.baseline_join,
            "baseline_collect": self.baseline_collect,
        }
        try:
            while True:
                command: dict[str, Any] = await loop.run_in_executor(None, _recv, self.commands)
                handler = handlers.get(str(command.get("cmd")))
                if handler is None:
                    return
                answer = await handler(command)
                gc.collect()  # between phases, never while measuring
                self.answers.send(answer)
        finally:
            await self._abort(self.points + self.plain)

    # ---- points ----

    async def join(self, command: dict[str, Any]) -> dict[str, Any]:
        url = str(command["url"])
        t0 = float(command["t0"])
        batch = max(1, int(command["batch"]))
        interval = float(command["batch_interval_s"])
        timeout = float(command["timeout_s"])
        joined: list[asyncio.Future[None]] = []
        for index, credential in command["points"]:
            client = Client(index=index)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            start_at = t0 + (index // batch) * interval
            client.task = asyncio.create_task(
                self._point(client, url, credential, start_at, timeout, done)
            )
            self.points.append(client)
            joined.append(done)
        if joined:
            last_start = t0 + max(i // batch for i, _ in command["points"]) * interval
            await asyncio.wait(joined, timeout=max(1.0, last_start - time.time() + timeout + 5))
        failures = Counter(c.failure or "no answer" for c in self.points if c.join_ms is None)
        return {
            "join_ms": [c.join_ms for c in self.points if c.join_ms is not None],
            "welcomed_at": [c.welcomed_at for c in self.points if c.welcomed_at is not None],
            "failures": dict(failures),
            "open_files_limit": self.open_files,
        }

    async def _point(
        self,
        client: Client,
        url: str,
        credential: str,
        start_at: float,
        limit_s: float,
        done: asyncio.Future[None],
    ) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        hello = json.dumps(
            {
                "type": "hello",
                "id": "h",
                "protocol": 1,
                "auth": {"kind": "point", "credential": credential},
                "client": {"name": "diemcau-bench", "version": "1"},
            }
        )
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit_s):
                client.ws = await connect(url, **CLIENT_OPTIONS)
                await client.ws.send(hello)
                while True:
                    message = json.loads(await client.ws.recv())
                    kind = message.get("type")
                    if kind == "welcome":
                        client.join_ms = (time.perf_counter() - started) * 1000
                        client.welcomed_at = time.time()
                        break
                    if kind == "error":
                        client.failure = f"error {message.get('code')}"
                        break
                    if kind == "ping":
                        await client.ws.send(_pong(message))
        except TimeoutError:
            client.failure = "timeout"
        except ConnectionClosed as exc:
            client.failure = f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}"
        except InvalidHandshake as exc:
            client.failure = f"handshake {type(exc).__name__}"
        except OSError as exc:
            client.failure = f"os {exc.strerror or type(exc).__name__}"
        finally:
            if not done.done():
                done.set_result(None)
        if client.join_ms is None:
            if client.ws is not None:
                client.ws.transport.abort()
            return
        await self._read(client)

    async def _read(self, client: Client) -> None:
        from websockets.exceptions import ConnectionClosed

        ws = client.ws
        try:
            async for text in ws:
                received = time.time()
                message = json.loads(text)
                kind = message.get("type")
                if kind == "event":
                    client.counts[message["event"]] += 1
                    client.events.append(
                        (
                            message["event"],
                            message["seq"],
                            received,
                            message["at"],
                            len(text.encode()),
                        )
                    )
                elif kind == "ping":
                    await ws.send(_pong(message))
        except ConnectionClosed as exc:
            client.close_code = exc.rcvd.code if exc.rcvd else -1
        finally:
            if client.close_code is None and ws.close_code is not None:
                client.close_code = ws.close_code

    async def collect(self, command: dict[str, Any]) -> dict[str, Any]:
        return await self._collect(self.points, command, EVENT_NAME)

    async def close_points(self, command: dict[str, Any]) -> dict[str, Any]:
        closed = await self._close(self.points)
        self.points = []
        return {"closed": closed}

    # ---- baseline ----

    async def baseline_join(self, command: dict[str, Any]) -> dict[str, Any]:
        from websockets.asyncio.client import connect

        url = str(command["url"])
        gate = asyncio.Semaphore(int(command.get("concurrency", 100)))
        timeout = float(command["timeout_s"])

        async def one(client: Client) -> None:
            async with gate:
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout):
                        client.ws = await connect(url, **CLIENT_OPTIONS)
                    client.join_ms = (time.perf_counter() - started) * 1000
                except Exception as exc:
                    client.failure = type(exc).__name__
                    return
            client.task = asyncio.create_task(self._read(client))

        clients = [Client(index=i) for i in range(int(command["count"]))]
        self.plain.extend(clients)
        await asyncio.wait_for(asyncio.gather(*(one(c) for c in clients)), timeout + 30)
        failures = Counter(c.failure for c in clients if c.failure)
        return {"connected": sum(c.join_ms is not None for c in clients), "failures": failures}

    async def baseline_collect(self, command: dict[str, Any]) -> dict[str, Any]:
        result = await self._collect(self.plain, command, BASELINE_EVENT)
        await self._close(self.plain)
        self.plain = []
        return result

    # ---- shared ----

    async def _collect(
        self, clients: list[Client], command: dict[str, Any], name: str
    ) -> dict[str, Any]:
        """Wait (bounded) until every open client has `count` events, then report latencies."""
        count = int(command["count"])
        deadline = time.monotonic() + float(command["timeout_s"])
        live = [c for c in clients if c.join_ms is not None]
        while time.monotonic() < deadline:
            if all(_received(c, name) >= count or c.close_code is not None for c in live):
                break
            await asyncio.sleep(0.05)
        latencies: list[tuple[int, float]] = []
        sizes: list[int] = []
        for client in live:
            for event, seq, received, at, size in client.events:
                if event == name:
                    latencies.append((seq, (received - _parse_at(at)) * 1000))
                    sizes.append(size)
        closes = Counter(str(c.close_code) for c in live if c.close_code is not None)
        return {
            "latencies": latencies,
            "sizes": sizes[:50],
            "clients": len(live),
            "complete": sum(_received(c, name) >= count for c in live),
            "closes": dict(closes),
        }

    async def _close(self, clients: list[Client]) -> int:
        async def one(client: Client) -> None:
            if client.ws is not None:
                with contextlib.suppress(Exception):
                    await client.ws.close()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(one(c) for c in clients)), 15)
        await self._abort(clients)
        return len(clients)

    async def _abort(self, clients: list[Client]) -> None:
        tasks = [c.task for c in clients if c.task is not None and not c.task.done()]
        for client in clients:
            if client.ws is not None:
                client.ws.transport.abort()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)


def _received(client: Client, name: str) -> int:
    return client.counts[name]


def _pong(message: dict[str, Any]) -> str:
    return json.dumps({"type": "pong", "nonce": message.get("nonce", 0)})


def client_worker(commands: Connection, answers: Connection) -> None:
    """Spawn target of a client process.

    The collector is off while phases run (and run between them): a full collection over a few
    thousand connections would pause a measuring client for longer than the latencies it measures.
    """
    die_with_parent()
    gc.disable()
    worker = Worker(commands, answers)
    _run(worker.main)
