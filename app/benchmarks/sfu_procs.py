"""Subscriber processes of the side-by-side benchmark: the same aiortc clients for both servers.

Our media plane is offered to (the client sends a receive-only offer, as the point page does);
Janus VideoRoom offers (the client answers, as a Janus subscriber does). Past the negotiation the
clients are the same: load-only subscribers count RTP packets at a tap before any decoder (the
media benchmark's `CountingSubscriber` hooks), and one decoding subscriber per process checks
that what arrives is a picture. Commands come over a pipe (`media_procs.Endpoint`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from multiprocessing.connection import Connection
from typing import Any

from app.benchmarks.media_procs import (
    CLOSE_TIMEOUT_S,
    JOIN_TIMEOUT_S,
    CountingSubscriber,
    Endpoint,
    StreamCount,
    _counter,
    _prepare_process,
    _run,
)


class AnsweringSubscriber:
    """A subscriber that answers the server's offer (Janus), counting or decoding."""

    def __init__(self, decoding: bool) -> None:
        from media.loadgen import TrackLog, client_peer

        self.pc = client_peer(None)
        self.decoding = decoding
        self.streams: dict[str, StreamCount] = {}
        self.logs: dict[str, TrackLog] = {}
        self.tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            if self.decoding:
                log = self.logs.setdefault(f"program/{track.kind}", TrackLog(track.kind))
                self.tasks.append(asyncio.ensure_future(_consume(track, log)))

    async def answer(self, offer_sdp: str) -> str:
        from aiortc import RTCSessionDescription

        from media.embedded import hooks

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        if not self.decoding:
            for transceiver in self.pc.getTransceivers():
                stream = StreamCount()
                self.streams[f"program/{transceiver.kind}"] = stream
                hooks.receive_without_decoder(transceiver.receiver)
                hooks.tap_rtp(transceiver.receiver, _counter(stream), keep_aiortc_handling=False)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        assert self.pc.localDescription is not None
        return str(self.pc.localDescription.sdp)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def _consume(track: Any, log: Any) -> None:
    import av
    from aiortc.mediastreams import MediaStreamError

    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        now = time.monotonic()
        log.frames += 1
        log.first_at = log.first_at or now
        log.last_at = now
        if isinstance(frame, av.VideoFrame):
            log.sizes.append((now, frame.width, frame.height))


class SideBySideSubscribers:
    """The subscribers of one process; the first one named in `decoding` decodes."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.clients: dict[str, Any] = {}
        endpoint.handlers = {
            "offer": self.offer,
            "accept": self.accept,
            "answer": self.answer,
            "wait": self.wait,
            "window": self.window,
            "close": self.close,
        }

    async def offer(self, command: dict[str, Any]) -> dict[str, Any]:
        """Our plane: a receive-only offer per subscriber (one audio and one video section)."""
        from media.loadgen import SubscriberClient

        decoding = set(command.get("decoding", []))
        offers: dict[str, str] = {}
        for name in command["names"]:
            client: Any = (
                SubscriberClient(("program",))
                if name in decoding
                else CountingSubscriber(("program",))
            )
            self.clients[name] = client
            offers[name] = await client.offer()
        return {"offers": offers}

    async def accept(self, command: dict[str, Any]) -> dict[str, Any]:
        answers: dict[str, str] = command["answers"]
        await asyncio.gather(*(self.clients[n].accept(sdp) for n, sdp in answers.items()))
        return await self._connected(list(answers))

    async def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        """Janus: answer each offer; the caller sends the answers back with `start`."""
        decoding = set(command.get("decoding", []))
        answers: dict[str, str] = {}
        for name, sdp in command["offers"].items():
            client = AnsweringSubscriber(decoding=name in decoding)
            self.clients[name] = client
            answers[name] = await client.answer(sdp)
        return {"answers": answers}

    async def wait(self, command: dict[str, Any]) -> dict[str, Any]:
        return await self._connected(list(command["names"]))

    async def _connected(self, names: list[str]) -> dict[str, Any]:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        failed: list[str] = []
        for name in names:
            pc = self.clients[name].pc
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                    failed.append(name)
                    break
                await asyncio.sleep(0.02)
        return {"connected": len(names) - len(failed), "failed": failed}

    async def window(self, command: dict[str, Any]) -> dict[str, Any]:
        """Per subscriber in the window (monotonic since..until): video and audio packets counted
        at the tap (load-only) or decoded video frames (decoding); packets lost overall."""
        since, until = float(command["since"]), float(command["until"])
        counted: dict[str, dict[str, int]] = {}
        decoded: dict[str, int] = {}
        for name, client in self.clients.items():
            streams: dict[str, StreamCount] = getattr(client, "streams", {})
            if streams:
                counted[name] = {
                    "video": streams["program/video"].between(since, until)
                    if "program/video" in streams
                    else 0,
                    "audio": streams["program/audio"].between(since, until)
                    if "program/audio" in streams
                    else 0,
                    "lost": sum(s.lost() for s in streams.values()),
                }
            logs = getattr(client, "logs", {})
            if "program/video" in logs:
                decoded[name] = sum(
                    1 for at, _w, _h in logs["program/video"].sizes if since <= at < until
                )
        return {"counted": counted, "decoded": decoded}

    async def close(self, command: dict[str, Any]) -> dict[str, Any]:
        clients, self.clients = list(self.clients.values()), {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        return {"closed": len(clients)}


def subscriber_worker(commands: Connection, answers: Connection) -> None:
    """Spawn target of one subscriber process."""
    _prepare_process()

    async def main() -> None:
        endpoint = Endpoint(commands, answers)
        subscribers = SideBySideSubscribers(endpoint)
        endpoint.send({"kind": "ready", "pid": os.getpid()})
        try:
            await endpoint.serve()
        finally:
            await subscribers.close({})

    _run(main)
