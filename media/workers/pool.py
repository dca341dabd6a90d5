"""`WorkerPool`: the media backend that spreads peer connections over worker processes.

One Python event loop forwards on one core; a conference with thousands of points needs them all
(docs/media-plane.md §6.2). Each worker process runs an `EmbeddedMedia` on its own loop. This
object, on the API's loop, implements the same `MediaBackend` Protocol by sending requests to them:

- Placement: a participant's peer connections (publisher and subscriber) live on one worker, the
  least loaded when the participant first negotiates (subscriber slots plus publishers, ties by
  index). Rooms and route tables exist on every worker, so a floor switch is one broadcast.
- Cross-worker media: the pool knows every route and every placement, so it tells each publisher's
  worker which other workers hold a sink routed to it; that worker relays the source's RTP there
  (`media.workers.relay`). A point that never holds the floor is never relayed anywhere.
- Failures: a worker's typed `MediaError` arrives here as the same class; a worker that dies fails
  its calls with `MediaWorkerUnavailable`, its participants are logged and reported as failed in
  `stats` (and to `on_lost`) until they negotiate again on a live worker, and a replacement process
  is started. A call that gets no answer within `call_timeout_s` raises `MediaWorkerUnavailable`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import multiprocessing
import os
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from app.settings import Settings
from media.errors import MediaParticipantNotFound, MediaRoomNotFound, MediaWorkerUnavailable
from media.interface import (
    ANY,
    BackendStats,
    KindStats,
    ParticipantMediaStats,
    PeerAnswer,
    PublisherRole,
    SinkKey,
)
from media.workers.channel import (
    ChannelClosed,
    Reply,
    Request,
    encode_frame,
    read_frame,
    rebuild_error,
)
from media.workers.process import run_worker
from media.workers.relay import Address, RelayStats

logger = logging.getLogger("diemcau.media.pool")

CALL_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0
"""A spawned interpreter imports aiortc and PyAV first: seconds on a loaded machine."""
STOP_TIMEOUT_S = 5.0
RESPAWN_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

LostCallback = Callable[[int, list[tuple[str, str]]], None]
"""(worker index, [(room, participant), ...]) of peers that died with a worker."""


@dataclass(slots=True)
class Placement:
    """Where a participant's peers live, and what they are (for load and relay targets)."""

    worker: int
    publisher: bool = False
    slots: tuple[str, ...] = ()
    pending_publisher: bool = False
    pending_slots: tuple[str, ...] = ()
    lost: bool = False

    @property
    def weight(self) -> int:
        return int(self.publisher or self.pending_publisher) + max(
            len(self.slots), len(self.pending_slots)
        )

    @property
    def publishing(self) -> bool:
        return self.publisher or self.pending_publisher

    @property
    def subscribed(self) -> tuple[str, ...]:
        return self.pending_slots or self.slots


@dataclass(slots=True)
class RoomState:
    """The pool's copy of a room: its route table (replayed to a restarted worker) and members."""

    defaults: dict[str, str | None] = field(default_factory=dict)
    overrides: dict[SinkKey, str | None] = field(default_factory=dict)
    members: dict[str, Placement] = field(default_factory=dict)
    sent_targets: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)

    def source_name(self, participant: str, slot: str) -> str | None:
        """Same rule as `media.embedded.backend.Room.source_name`."""
        key = SinkKey(participant, slot)
        name = self.overrides[key] if key in self.overrides else self.defaults.get(slot)
        return None if name == participant else name

    def table(self) -> dict[SinkKey, str | None]:
        table: dict[SinkKey, str | None] = {
            SinkKey(ANY, slot): name for slot, name in self.defaults.items()
        }
        table.update(self.overrides)
        return table


class WorkerHandle:
    """The API side of one worker process: its channel and its calls in flight."""

    def __init__(
        self,
        index: int,
        process: BaseProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pid: int,
        relay_address: Address,
    ) -> None:
        self.index = index
        self.process = process
        self.reader = reader
        self.writer = writer
        self.pid = pid
        self.relay_address = relay_address
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.alive = True
        self.ready = False
        self.reader_task: asyncio.Task[None] | None = None

    @property
    def usable(self) -> bool:
        return self.alive and self.ready

    def unavailable(self, op: str, reason: str) -> MediaWorkerUnavailable:
        return MediaWorkerUnavailable(
            f"media worker {self.index} {reason}", details={"worker": self.index, "op": op}
        )

    async def call(self, op: str, *args: Any, timeout_s: float) -> Any:
        if not self.alive:
            raise self.unavailable(op, "is not running")
        request_id = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        try:
            self.writer.write(encode_frame(Request(request_id, op, args)))
            async with asyncio.timeout(timeout_s):
                await self.writer.drain()
                return await future
        except TimeoutError as exc:
            raise self.unavailable(op, f"did not answer {op} within {timeout_s:g} s") from exc
        except (ConnectionError, OSError) as exc:
            raise self.unavailable(op, f"is unreachable: {exc}") from exc
        finally:
            self.pending.pop(request_id, None)

    def fail_pending(self) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(self.unavailable("call", "stopped while a call was in flight"))
        self.pending.clear()


class WorkerPool:
    """Implements `media.interface.MediaBackend` over `settings.effective_media_workers` processes."""

    def __init__(
        self,
        settings: Settings,
        *,
        call_timeout_s: float = CALL_TIMEOUT_S,
        start_timeout_s: float = START_TIMEOUT_S,
        respawn: bool = True,
        on_lost: LostCallback | None = None,
    ) -> None:
        self.count = settings.effective_media_workers
        if self.count < 1:
            raise ValueError("a worker pool needs at least one media worker")
        # Workers sign nothing: the token key stays in the API process.
        self._settings_data = settings.model_dump(exclude={"secret_key"})
        self.call_timeout_s = call_timeout_s
        self.start_timeout_s = start_timeout_s
        self.respawn = respawn
        self.on_lost = on_lost
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[WorkerHandle] = []
        self._rooms: dict[str, RoomState] = {}
        self._table_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._stopping = False

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._stopping = False
        atexit.register(self._abandon)
        started = await asyncio.gather(
            *(self._spawn(index) for index in range(self.count)), return_exceptions=True
        )
        handles = [h for h in started if isinstance(h, WorkerHandle)]
        failures = [e for e in started if isinstance(e, BaseException)]
        self._workers = handles
        if failures:
            await self.stop()
            raise failures[0]
        await self._send_peers()
        if not all(handle.alive for handle in handles):
            await self.stop()
            raise MediaWorkerUnavailable("a media worker died while the pool started")
        for handle in handles:
            handle.ready = True
        logger.info(
            "media worker pool started: %d processes (pids %s)",
            self.count,
            ", ".join(str(h.pid) for h in handles),
        )

    async def stop(self) -> None:
        """Close every room, end the processes (politely, then SIGTERM, then SIGKILL)."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        handles = list(self._workers)
        await asyncio.gather(
            *(h.call("stop", timeout_s=STOP_TIMEOUT_S) for h in handles if h.alive),
            return_exceptions=True,
        )
        for handle in handles:
            handle.writer.close()
        await asyncio.gather(*(self._end_process(h.process) for h in handles))
        for handle in handles:
            handle.alive = False
            handle.fail_pending()
            if handle.reader_task is not None:
                handle.reader_task.cancel()
        self._workers = []
        self._rooms.clear()
        self._started = False
        atexit.unregister(self._abandon)

    def _abandon(self) -> None:
        """At interpreter exit without `stop()`: never leave a worker behind, never hang the exit
        in multiprocessing's own join of its children."""
        for handle in self._workers:
            if handle.process.is_alive():
                handle.process.terminate()
        for handle in self._workers:
            handle.process.join(2.0)
            if handle.process.is_alive():
                handle.process.kill()

    async def _spawn(self, index: int) -> WorkerHandle:
        ours, theirs = socket.socketpair()
        process = self._context.Process(
            target=run_worker,
            args=(index, self._settings_data, theirs, os.getpid()),
            name=f"diemcau-media-{index}",
        )
        try:
            process.start()
        finally:
            theirs.close()
        try:
            reader, writer = await asyncio.open_connection(sock=ours)
            try:
                async with asyncio.timeout(self.start_timeout_s):
                    hello = await read_frame(reader)
                tag, worker, relay_address, pid = hello
                if tag != "hello" or worker != index:
                    raise ChannelClosed(f"unexpected first message {hello!r}")
                address: Address = (str(relay_address[0]), int(relay_address[1]))
            except BaseException:
                writer.close()
                raise
        except (TimeoutError, ChannelClosed, ValueError, TypeError, IndexError) as exc:
            await self._end_process(process, polite_s=0.0)
            raise MediaWorkerUnavailable(
                f"media worker {index} did not start: {exc or type(exc).__name__}",
                details={"worker": index, "exitcode": process.exitcode},
            ) from exc
        except BaseException:
            # Cancelled (a stopping pool): no await is possible any more, end the child now.
            process.kill()
            process.join(1.0)
            raise
        handle = WorkerHandle(index, process, reader, writer, int(pid), address)
        handle.reader_task = asyncio.ensure_future(self._read(handle))
        return handle

    async def _end_process(self, process: BaseProcess, polite_s: float = STOP_TIMEOUT_S) -> None:
        if await _exited(process, polite_s):
            return
        process.terminate()
        if await _exited(process, STOP_TIMEOUT_S):
            return
        logger.warning("media worker %s ignored SIGTERM: killing it", process.pid)
        process.kill()
        await _exited(process, STOP_TIMEOUT_S)

    async def _read(self, handle: WorkerHandle) -> None:
        try:
            while True:
                message = await read_frame(handle.reader)
                if not isinstance(message, Reply):
                    logger.error("media worker %d sent %r", handle.index, type(message).__name__)
                    continue
                future = handle.pending.pop(message.id, None)
                if future is None or future.done():
                    continue
                if message.ok:
                    future.set_result(message.value)
                else:
                    future.set_exception(rebuild_error(message.value, handle.index))
        except (ChannelClosed, ConnectionError, OSError):
            pass
        except Exception:
            logger.exception("media worker %d: unreadable control channel", handle.index)
        finally:
            self._on_exit(handle)

    def _on_exit(self, handle: WorkerHandle) -> None:
        if not handle.alive:
            return
        handle.alive = False
        handle.fail_pending()
        if self._stopping or not handle.ready:
            return  # a worker still starting is the starter's to clean up
        lost: list[tuple[str, str]] = []
        for room, state in self._rooms.items():
            for name, placement in state.members.items():
                if placement.worker == handle.index and not placement.lost:
                    placement.lost = True
                    lost.append((room, name))
        logger.error(
            "media worker %d (pid %d) died; its participants are gone: %s",
            handle.index,
            handle.pid,
            ", ".join(f"{room}/{name}" for room, name in lost) or "none",
        )
        if self.on_lost is not None and lost:
            try:
                self.on_lost(handle.index, lost)
            except Exception:
                logger.exception("on_lost callback failed")
        self._background(self._recover(handle, sorted({room for room, _ in lost})))

    async def _recover(self, handle: WorkerHandle, rooms: list[str]) -> None:
        await self._end_process(handle.process, polite_s=1.0)
        logger.warning("media worker %d exit code %s", handle.index, handle.process.exitcode)
        for room in rooms:
            with contextlib.suppress(MediaWorkerUnavailable):
                await self._update_targets(room)
        if not self.respawn:
            return
        for attempt in itertools.count():
            if self._stopping:
                return
            delay = RESPAWN_DELAYS_S[min(attempt, len(RESPAWN_DELAYS_S) - 1)]
            await asyncio.sleep(delay)
            try:
                replacement = await self._spawn(handle.index)
            except MediaWorkerUnavailable:
                logger.exception("media worker %d could not be restarted", handle.index)
                continue
            try:
                async with self._table_lock:
                    if self._is_stopping():
                        await self._end_process(replacement.process, polite_s=0.0)
                        return
                    self._workers[handle.index] = replacement
                    await self._send_peers()
                    for room, state in list(self._rooms.items()):
                        await replacement.call("create_room", room, timeout_s=self.call_timeout_s)
                        table = state.table()
                        if table:
                            await replacement.call(
                                "route", room, table, timeout_s=self.call_timeout_s
                            )
            except MediaWorkerUnavailable:
                logger.exception("media worker %d failed while restarting", handle.index)
                await self._end_process(replacement.process, polite_s=0.0)
                continue
            replacement.ready = True
            logger.warning("media worker %d restarted (pid %d)", handle.index, replacement.pid)
            return

    def _is_stopping(self) -> bool:
        """Read through a call: `stop()` may have run while this coroutine awaited."""
        return self._stopping

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("media pool task failed", exc_info=task.exception())

    # ---- rooms and routes ----------------------------------------------------------------------

    def _room(self, room: str) -> RoomState:
        found = self._rooms.get(room)
        if found is None:
            raise MediaRoomNotFound(f"no media room {room!r}", details={"room": room})
        return found

    async def create_room(self, room: str) -> None:
        async with self._table_lock:
            self._rooms.setdefault(room, RoomState())
            await self._broadcast("create_room", room)

    async def close_room(self, room: str) -> None:
        async with self._table_lock:
            self._rooms.pop(room, None)
            await self._broadcast("close_room", room)

    async def route(self, room: str, routes: Mapping[SinkKey, str | None]) -> None:
        state = self._room(room)
        async with self._table_lock:
            for key, source in routes.items():
                if key.participant == ANY:
                    state.defaults[key.slot] = source
                else:
                    state.overrides[key] = source
            # Relaying to a new target starts before the switch, so the keyframe the switch asks
            # for reaches every worker; relaying to an old one ends after it.
            await self._update_targets_locked(room, keep_current=True)
            await self._broadcast("route", room, dict(routes))
            await self._update_targets_locked(room)

    # ---- participants --------------------------------------------------------------------------

    async def add_publisher(
        self, room: str, participant: str, offer_sdp: str, *, role: PublisherRole
    ) -> PeerAnswer:
        handle, placement = self._place(room, participant)
        placement.pending_publisher = True
        try:
            await self._update_targets(room)
            answer: PeerAnswer = await handle.call(
                "add_publisher", room, participant, offer_sdp, role, timeout_s=self.call_timeout_s
            )
        except BaseException:
            placement.pending_publisher = False
            self._release(room, participant, placement)
            raise
        placement.pending_publisher = False
        placement.publisher = True
        return answer

    async def add_subscriber(
        self, room: str, participant: str, offer_sdp: str, *, slots: Sequence[str]
    ) -> PeerAnswer:
        handle, placement = self._place(room, participant)
        placement.pending_slots = tuple(slots)
        try:
            await self._update_targets(room)
            answer: PeerAnswer = await handle.call(
                "add_subscriber",
                room,
                participant,
                offer_sdp,
                tuple(slots),
                timeout_s=self.call_timeout_s,
            )
        except BaseException:
            placement.pending_slots = ()
            self._release(room, participant, placement)
            raise
        placement.pending_slots = ()
        placement.slots = tuple(slots)
        return answer

    def _place(self, room: str, participant: str) -> tuple[WorkerHandle, Placement]:
        state = self._room(room)
        placement = state.members.get(participant)
        if placement is not None:
            handle = self._workers[placement.worker]
            if not placement.lost and handle.usable:
                return handle, placement
            # Its peers died with their worker: the participant starts over on a live one.
            state.members.pop(participant)
            state.sent_targets.pop(participant, None)
        usable = [h for h in self._workers if h.usable]
        if not usable:
            raise MediaWorkerUnavailable("no media worker is running", details={"op": "place"})
        loads = self._loads()
        handle = min(usable, key=lambda h: (loads.get(h.index, 0), h.index))
        placement = Placement(handle.index)
        state.members[participant] = placement
        return handle, placement

    def _loads(self) -> dict[int, int]:
        loads: dict[int, int] = {}
        for state in self._rooms.values():
            for placement in state.members.values():
                if not placement.lost:
                    loads[placement.worker] = loads.get(placement.worker, 0) + placement.weight
        return loads

    def _release(self, room: str, participant: str, placement: Placement) -> None:
        """After a failed negotiation: forget a placement that holds nothing, fix relay targets."""
        state = self._rooms.get(room)
        if state is None:
            return
        if placement.weight == 0 and state.members.get(participant) is placement:
            state.members.pop(participant)
            state.sent_targets.pop(participant, None)
        self._background(self._update_targets(room))

    async def remove_participant(self, room: str, participant: str) -> None:
        state = self._rooms.get(room)
        if state is None:
            return
        placement = state.members.pop(participant, None)
        state.sent_targets.pop(participant, None)
        if placement is None:
            return
        owner = self._workers[placement.worker] if placement.worker < len(self._workers) else None
        if owner is not None and owner.usable and not placement.lost:
            await owner.call("remove_participant", room, participant, timeout_s=self.call_timeout_s)
        if placement.publishing:
            # Other workers may hold a relayed copy of its sources.
            others = [h for h in self._workers if h.usable and h is not owner]
            await self._gather(others, "remove_participant", room, participant)
        await self._update_targets(room)

    async def remove_publisher(self, room: str, participant: str) -> None:
        await self._remove_part(room, participant, publisher=True)

    async def remove_subscriber(self, room: str, participant: str) -> None:
        await self._remove_part(room, participant, publisher=False)

    async def _remove_part(self, room: str, participant: str, *, publisher: bool) -> None:
        state = self._rooms.get(room)
        placement = state.members.get(participant) if state is not None else None
        if state is None or placement is None:
            return
        keeps_other = placement.subscribed if publisher else placement.publishing
        if not keeps_other:
            await self.remove_participant(room, participant)
            return
        owner = self._workers[placement.worker] if placement.worker < len(self._workers) else None
        if owner is not None and owner.usable and not placement.lost:
            op = "remove_publisher" if publisher else "remove_subscriber"
            await owner.call(op, room, participant, timeout_s=self.call_timeout_s)
        if publisher:
            placement.publisher = False
            # Other workers may hold a relayed copy of its sources.
            others = [h for h in self._workers if h.usable and h is not owner]
            await self._gather(others, "remove_participant", room, participant)
        else:
            placement.slots = ()
        await self._update_targets(room)

    async def request_keyframe(self, room: str, participant: str) -> None:
        placement = self._room(room).members.get(participant)
        if placement is None:
            raise MediaParticipantNotFound(f"{participant!r} is not in the media room")
        handle = self._workers[placement.worker]
        if placement.lost or not handle.usable:
            raise MediaWorkerUnavailable(
                f"the media worker of {participant!r} died; it must negotiate again",
                details={"worker": placement.worker, "participant": participant},
            )
        await handle.call("request_keyframe", room, participant, timeout_s=self.call_timeout_s)

    # ---- relay targets -------------------------------------------------------------------------

    async def _update_targets(self, room: str) -> None:
        async with self._table_lock:
            await self._update_targets_locked(room)

    async def _update_targets_locked(self, room: str, *, keep_current: bool = False) -> None:
        """Tell each publisher's worker which other workers hold a sink routed to it
        (`keep_current`: only add workers, remove none)."""
        state = self._rooms.get(room)
        if state is None:
            return
        wanted: dict[str, set[int]] = {}
        for name, placement in state.members.items():
            if placement.lost:
                continue
            for slot in placement.subscribed:
                source = state.source_name(name, slot)
                owner = state.members.get(source) if source is not None else None
                if source is None or owner is None or owner.lost:
                    continue
                if owner.worker != placement.worker:
                    wanted.setdefault(source, set()).add(placement.worker)
        changes: dict[int, dict[str, tuple[int, ...]]] = {}
        for name, placement in state.members.items():
            if placement.lost or not placement.publishing:
                continue
            workers = wanted.get(name, set())
            sent = state.sent_targets.get(name)
            if keep_current and sent is not None and sent[0] == placement.worker:
                workers = workers | set(sent[1])
            targets = tuple(sorted(workers))
            if sent != (placement.worker, targets):
                changes.setdefault(placement.worker, {})[name] = targets
        for worker, table in changes.items():
            handle = self._workers[worker]
            if not handle.alive:
                continue
            await handle.call("relay_targets", room, table, timeout_s=self.call_timeout_s)
            for name, targets in table.items():
                state.sent_targets[name] = (worker, targets)

    async def _send_peers(self) -> None:
        peers = {h.index: h.relay_address for h in self._workers if h.alive}
        await self._gather([h for h in self._workers if h.alive], "peers", peers)

    # ---- stats ---------------------------------------------------------------------------------

    async def stats(self, room: str) -> Mapping[str, ParticipantMediaStats]:
        """Each participant from the worker that holds it; a source's `packets_out`/`bytes_out`
        count what every worker forwarded of it, as on one loop."""
        state = self._room(room)
        merged: dict[str, ParticipantMediaStats] = {}
        relayed: list[tuple[str, dict[str, KindStats]]] = []
        for handle, (found, copies) in await self._broadcast("stats", room):
            for name, stats in found.items():
                placement = state.members.get(name)
                if name in merged and placement is not None and placement.worker != handle.index:
                    continue
                merged[name] = stats
            relayed.extend(copies.items())
        for name, published in relayed:
            owner = merged.get(name)
            if owner is None:
                continue
            for kind, copy in published.items():
                total = owner.published.get(kind)
                if total is not None:
                    total.packets_out += copy.packets_out
                    total.bytes_out += copy.bytes_out
                    total.dropped += copy.dropped
        for name, placement in state.members.items():
            if placement.lost and name not in merged:
                merged[name] = ParticipantMediaStats(
                    participant=name,
                    worker=placement.worker,
                    publisher_state="failed" if placement.publisher else None,
                    subscriber_state="failed" if placement.slots else None,
                )
        return merged

    async def backend_stats(self) -> BackendStats:
        """Sums over the live workers; `cpu_s` is the workers' CPU, not the API process's."""
        replies = await self._broadcast("backend_stats")
        parts: list[BackendStats] = [stats for _, stats in replies]
        return BackendStats(
            workers=len(parts),
            peers=sum(p.peers for p in parts),
            forwarded_packets=sum(p.forwarded_packets for p in parts),
            forward_cpu_s=sum(p.forward_cpu_s for p in parts),
            decoders_created=sum(p.decoders_created for p in parts),
            encoders_created=sum(p.encoders_created for p in parts),
            cpu_s=sum(p.cpu_s for p in parts),
            loop_lag_max_s=max((p.loop_lag_max_s for p in parts), default=0.0),
        )

    async def relay_stats(self) -> dict[int, RelayStats]:
        """Per worker: relayed packets, drops, loss, and relay latency (for tests and metrics)."""
        return {handle.index: stats for handle, stats in await self._broadcast("relay_stats")}

    @property
    def worker_pids(self) -> dict[int, int]:
        return {h.index: h.pid for h in self._workers if h.alive}

    # ---- helpers -------------------------------------------------------------------------------

    async def _broadcast(self, op: str, *args: Any) -> list[tuple[WorkerHandle, Any]]:
        """The op on every usable worker; a worker that dies meanwhile is left out (its state died
        with it and a replacement is replayed from the pool's tables), any other error is raised."""
        handles = [h for h in self._workers if h.usable]
        if not handles:
            raise MediaWorkerUnavailable("no media worker is running", details={"op": op})
        results = await asyncio.gather(
            *(h.call(op, *args, timeout_s=self.call_timeout_s) for h in handles),
            return_exceptions=True,
        )
        replies: list[tuple[WorkerHandle, Any]] = []
        error: BaseException | None = None
        for handle, result in zip(handles, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, MediaWorkerUnavailable) and not handle.alive:
                    continue
                error = error or result
            else:
                replies.append((handle, result))
        if error is not None:
            raise error
        return replies

    async def _gather(self, handles: list[WorkerHandle], op: str, *args: Any) -> None:
        results = await asyncio.gather(
            *(h.call(op, *args, timeout_s=self.call_timeout_s) for h in handles),
            return_exceptions=True,
        )
        for handle, result in zip(handles, results, strict=True):
            if isinstance(result, BaseException) and handle.alive:
                raise result


async def _exited(process: BaseProcess, timeout_s: float) -> bool:
    """Wait for a child without blocking the loop (`is_alive` reaps it when it is done)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while process.is_alive():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True
