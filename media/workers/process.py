"""One media worker process: its own event loop, an `EmbeddedMedia`, the relay, the control channel.

Started by `WorkerPool` with the `spawn` start method (a fresh interpreter: the API process has
threads and a running loop, which a fork would copy half-way). It answers requests from the API
process concurrently, as the embedded backend answers concurrent callers on one loop, and exits when
the control channel closes: a stopped pool, or an API process that was killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from app.errors import DiemcauError
from app.logging_setup import configure_logging, request_id_var
from app.settings import Settings
from media.embedded.backend import EmbeddedMedia
from media.factory import embedded_backend
from media.interface import (
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
    describe_error,
    encode_frame,
    read_frame,
)
from media.workers.relay import Address, Relay, RelayStats

logger = logging.getLogger("diemcau.media.worker")

STOP_TIMEOUT_S = 5.0


def run_worker(
    index: int, settings_data: dict[str, Any], channel: socket.socket, parent_pid: int
) -> None:
    """Process entry point (must stay importable by name for `spawn`)."""
    # Ctrl-C in a terminal reaches the whole process group: the API process decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = Settings.model_validate(settings_data)
    configure_logging(settings.log_level, settings.log_format)
    request_id_var.set(f"media-worker-{index}")
    asyncio.run(_main(index, settings, channel, parent_pid))


async def _main(index: int, settings: Settings, channel: socket.socket, parent_pid: int) -> None:
    media = embedded_backend(settings, worker=index)
    await media.start()
    relay = Relay(index, media)
    address = await relay.open()
    reader, writer = await asyncio.open_connection(sock=channel)
    worker = Worker(index, media, relay, writer)
    worker.send(("hello", index, address, os.getpid()))
    watchdog = asyncio.ensure_future(_watch_parent(parent_pid))
    serving = asyncio.ensure_future(worker.serve(reader))
    stopped = asyncio.ensure_future(worker.stopped.wait())
    try:
        await asyncio.wait({watchdog, serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (watchdog, serving, stopped):
            task.cancel()
        await worker.shutdown()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    logger.info("media worker %d stopped", index)


async def _watch_parent(parent_pid: int) -> None:
    """Backstop for the channel's end-of-file (a dup of the API's end held elsewhere would keep
    it open): returns when the API process exits, watched through a pidfd, without polling."""
    if os.getppid() != parent_pid:
        return
    try:
        fd = os.pidfd_open(parent_pid)
    except (AttributeError, OSError):
        await asyncio.Future()  # no pidfd (old kernel): the channel's end-of-file alone
        return
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, gone.set)
    try:
        await gone.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    logger.warning("the API process %d is gone: stopping", parent_pid)


class Worker:
    """Runs the pool's requests against this process's backend and relay."""

    def __init__(
        self, index: int, media: EmbeddedMedia, relay: Relay, writer: asyncio.StreamWriter
    ) -> None:
        self.index = index
        self.media = media
        self.relay = relay
        self.writer = writer
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopped = asyncio.Event()
        self.shut = False
        self.ops: dict[str, Callable[..., Awaitable[Any]]] = {
            "create_room": self.create_room,
            "close_room": self.close_room,
            "add_publisher": self.add_publisher,
            "add_subscriber": self.add_subscriber,
            "remove_participant": self.remove_participant,
            "remove_publisher": self.remove_publisher,
            "remove_subscriber": self.remove_subscriber,
            "route": self.route,
            "request_keyframe": self.request_keyframe,
            "stats": self.stats,
            "backend_stats": self.backend_stats,
            "relay_stats": self.relay_stats,
            "peers": self.peers,
            "relay_targets": self.relay_targets,
            "stop": self.stop,
        }

    def send(self, message: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode_frame(message))

    async def serve(self, reader: asyncio.StreamReader) -> None:
        while not self.stopped.is_set():
            try:
                message = await read_frame(reader)
            except ChannelClosed:
                logger.info("control channel closed: stopping media worker %d", self.index)
                return
            if not isinstance(message, Request):
                logger.error("unexpected control message %r", type(message).__name__)
                continue
            task = asyncio.ensure_future(self._run(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, request: Request) -> None:
        op = self.ops.get(request.op)
        try:
            if op is None:
                raise ValueError(f"unknown media worker operation {request.op!r}")
            reply = Reply(request.id, True, await op(*request.args))
        except DiemcauError as exc:
            reply = Reply(request.id, False, describe_error(exc))
        except Exception as exc:
            logger.exception("media worker %d: %s failed", self.index, request.op)
            reply = Reply(request.id, False, describe_error(exc))
        try:
            self.send(reply)
        except Exception as exc:
            logger.exception("media worker %d: reply to %s not sendable", self.index, request.op)
            self.send(Reply(request.id, False, describe_error(exc)))
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def shutdown(self) -> None:
        if self.shut:
            return
        self.shut = True
        for task in list(self.tasks):
            if not task.done() and task is not asyncio.current_task():
                task.cancel()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.media.stop()
        except TimeoutError:
            logger.warning(
                "media worker %d: closing peers took over %s s", self.index, STOP_TIMEOUT_S
            )
        self.relay.close()

    # ---- operations ------------------------------------------------------------------------

    async def create_room(self, room: str) -> None:
        await self.media.create_room(room)

    async def close_room(self, room: str) -> None:
        self.relay.forget_room(room)
        await self.media.close_room(room)

    async def add_publisher(
        self, room: str, participant: str, offer_sdp: str, role: PublisherRole
    ) -> PeerAnswer:
        await self.relay.make_local(room, participant)
        answer = await self.media.add_publisher(room, participant, offer_sdp, role=role)
        self.relay.attach_local(room, participant)
        return answer

    async def add_subscriber(
        self, room: str, participant: str, offer_sdp: str, slots: Sequence[str]
    ) -> PeerAnswer:
        await self.relay.make_local(room, participant)
        return await self.media.add_subscriber(room, participant, offer_sdp, slots=slots)

    async def remove_participant(self, room: str, participant: str) -> None:
        """Removes a local participant, or this worker's relayed copy of one held elsewhere."""
        self.relay.forget(room, participant)
        await self.media.remove_participant(room, participant)

    async def remove_publisher(self, room: str, participant: str) -> None:
        await self.media.remove_publisher(room, participant)

    async def remove_subscriber(self, room: str, participant: str) -> None:
        await self.media.remove_subscriber(room, participant)

    async def route(self, room: str, routes: Mapping[SinkKey, str | None]) -> None:
        await self.media.route(room, routes)

    async def request_keyframe(self, room: str, participant: str) -> None:
        await self.media.request_keyframe(room, participant)

    async def stats(
        self, room: str
    ) -> tuple[dict[str, ParticipantMediaStats], dict[str, dict[str, KindStats]]]:
        """This worker's participants, and apart from them what it forwarded of relayed sources
        (the pool adds that to the publisher's own counters, as one loop would count it)."""
        local: dict[str, ParticipantMediaStats] = {}
        relayed: dict[str, dict[str, KindStats]] = {}
        for name, stats in (await self.media.stats(room)).items():
            if self.relay.is_remote(room, name):
                relayed[name] = stats.published
            else:
                local[name] = stats
        return local, relayed

    async def backend_stats(self) -> BackendStats:
        return await self.media.backend_stats()

    async def relay_stats(self) -> RelayStats:
        return self.relay.snapshot()

    async def peers(self, peers: dict[int, Address]) -> None:
        self.relay.set_peers(peers)

    async def relay_targets(self, room: str, targets: dict[str, Sequence[int]]) -> None:
        self.relay.set_targets(room, targets)

    async def stop(self) -> None:
        await self.shutdown()
        self.stopped.set()
