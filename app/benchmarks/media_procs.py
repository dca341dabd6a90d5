"""The processes of the media benchmark besides the orchestrator: the media server, the publishers
and the subscriber clients, each with its own asyncio loop.

Every entry point here is a `multiprocessing` spawn target, so it imports what it needs itself.
They take commands from the orchestrator over one pipe and answer over another; a message they send
on their own (a subscriber's offer) carries `"kind": "offer"` and is relayed by the orchestrator to
the server, whose answer comes back as a command. Signaling thus goes through the parent, never
through the app's WebSocket: the benchmark measures the media plane, not the live protocol.

Times that must be compared across processes (a route call in the server, the first decoded frame
of the new source at a subscriber) are `time.monotonic()`, which on Linux is CLOCK_MONOTONIC, one
clock for the whole machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from app.benchmarks.signaling_procs import die_with_parent, raise_open_files_limit

ROOM = "bench"
HALL = "hall"
JOIN_TIMEOUT_S = 30.0
"""From a subscriber's offer to its first program frame (or packet); beyond this it failed."""
CLOSE_TIMEOUT_S = 10.0
VIDEO_TIME_BUCKET_S = 0.1


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop, as uvicorn picks it for the service (loop="auto") when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main())


def _recv(conn: Connection) -> Any:
    try:
        return conn.recv()
    except (EOFError, OSError):
        return {"cmd": "quit"}


def _prepare_process() -> None:
    """Die with the orchestrator, many sockets allowed, aioice gathering on 127.0.0.1 only."""
    die_with_parent()
    raise_open_files_limit()
    for key in [k for k in os.environ if k.startswith("DIEMCAU_")]:
        del os.environ[key]
    from media.net import apply_network_policy

    apply_network_policy(["127.0.0.1"], None)


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Endpoint:
    """Command loop shared by every process: one task per command, answers tagged with its id.

    Commands run concurrently (a hundred subscriber offers may be in flight in the server), so an
    answer names the command it answers; `quit` (or a closed pipe) ends the loop.
    """

    def __init__(self, commands: Connection, answers: Connection) -> None:
        self.commands = commands
        self.answers = answers
        self.handlers: dict[str, Handler] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.answers.send(message)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command: dict[str, Any] = await loop.run_in_executor(None, _recv, self.commands)
            name = str(command.get("cmd"))
            if name == "quit":
                return
            handler = self.handlers.get(name)
            task = asyncio.create_task(self._one(handler, command))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _one(self, handler: Handler | None, command: dict[str, Any]) -> None:
        reply: dict[str, Any]
        try:
            if handler is None:
                raise ValueError(f"unknown command {command.get('cmd')!r}")
            reply = await handler(command)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        if "id" in command:
            self.send({"kind": "reply", "id": command["id"], **reply})


# ---- the media server ----------------------------------------------------------------------------


def serve_media(workers: int, commands: Connection, answers: Connection) -> None:
    """The backend `create_backend(settings)` builds, as the service would, on 127.0.0.1."""
    _prepare_process()
    _run(lambda: _server_main(workers, commands, answers))


async def _server_main(workers: int, commands: Connection, answers: Connection) -> None:
    import resource

    from app.settings import Settings
    from media.factory import create_backend
    from media.interface import ANY, SinkKey

    settings = Settings(
        media_host_addresses=["127.0.0.1"], media_workers=workers, log_level="WARNING"
    )
    backend = create_backend(settings)
    await backend.start()
    await backend.create_room(ROOM)
    endpoint = Endpoint(commands, answers)

    async def publish(command: dict[str, Any]) -> dict[str, Any]:
        answer = await backend.add_publisher(
            ROOM, str(command["participant"]), str(command["sdp"]), role=command["role"]
        )
        return {"sdp": answer.sdp, "codecs": dict(answer.codecs), "worker": answer.worker}

    async def subscribe(command: dict[str, Any]) -> dict[str, Any]:
        answer = await backend.add_subscriber(
            ROOM, str(command["participant"]), str(command["sdp"]), slots=command["slots"]
        )
        return {"sdp": answer.sdp, "codecs": dict(answer.codecs), "worker": answer.worker}

    async def route(command: dict[str, Any]) -> dict[str, Any]:
        routes = {SinkKey(ANY, str(slot)): source for slot, source in command["routes"].items()}
        called = time.monotonic()
        await backend.route(ROOM, routes)
        return {"called_at": called, "took_s": time.monotonic() - called}

    async def stats(command: dict[str, Any]) -> dict[str, Any]:
        backend_stats = await backend.backend_stats()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        detail = set(command.get("detail", ()))
        published: dict[str, dict[str, Any]] = {}
        received: dict[str, dict[str, Any]] = {}
        states: Counter[str] = Counter()
        worker_of: dict[str, int] = {}
        for name, participant in (await backend.stats(ROOM)).items():
            published[name] = {
                kind: {
                    "packets_in": s.packets_in,
                    "bytes_in": s.bytes_in,
                    "packets_out": s.packets_out,
                    "keyframes": s.keyframes,
                    "plis_up": s.plis_up,
                    "codec": s.codec,
                }
                for kind, s in participant.published.items()
            }
            if name in detail:
                received[name] = {
                    key: {"packets_out": s.packets_out, "dropped": s.dropped, "codec": s.codec}
                    for key, s in participant.received.items()
                }
            if participant.subscriber_state is not None:
                states[participant.subscriber_state] += 1
            worker_of[name] = participant.worker
        return {
            "at": time.monotonic(),
            "backend": {
                "workers": backend_stats.workers,
                "peers": backend_stats.peers,
                "forwarded_packets": backend_stats.forwarded_packets,
                "forward_cpu_s": backend_stats.forward_cpu_s,
                "decoders_created": backend_stats.decoders_created,
                "encoders_created": backend_stats.encoders_created,
                "cpu_s": backend_stats.cpu_s,
                "loop_lag_max_s": backend_stats.loop_lag_max_s,
            },
            "self_cpu_s": usage.ru_utime + usage.ru_stime,
            "published": published,
            "received": received,
            "subscriber_states": dict(states),
            "workers_used": sorted(set(worker_of.values())),
        }

    endpoint.handlers = {
        "publish": publish,
        "subscribe": subscribe,
        "route": route,
        "stats": stats,
    }
    endpoint.send({"kind": "ready", "pid": os.getpid()})
    try:
        await endpoint.serve()
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await backend.stop()


# ---- publishers ----------------------------------------------------------------------------------


def pin_video_bitrate(bps: int) -> None:
    """Make aiortc's own VP8 and H264 encoders send `bps`, whatever the receiver's REMB says.

    aiortc starts VP8 at 500 kb/s and lets REMB move it between module-level bounds; the setter
    clamps to `MIN_BITRATE`/`MAX_BITRATE` read at call time, so equal bounds pin the rate. Only the
    hall publisher's process calls this: it changes the modules for the whole process.
    """
    from aiortc.codecs import h264, vpx

    for module in (vpx, h264):
        module.DEFAULT_BITRATE = bps  # type: ignore[attr-defined]
        module.MIN_BITRATE = bps  # type: ignore[attr-defined]
        module.MAX_BITRATE = bps  # type: ignore[attr-defined]


def publisher_worker(video_bitrate: int | None, commands: Connection, answers: Connection) -> None:
    """One or more synthetic publishers (the hall, or the two points that take the floor)."""
    _prepare_process()
    if video_bitrate:
        pin_video_bitrate(video_bitrate)
    _run(lambda: _publisher_main(commands, answers))


def _noisy_track(width: int, height: int, fps: int, noise_rows: int) -> Any:
    """The loadgen's moving gradient with a band of fresh noise on top of every frame.

    The gradient alone compresses to ~0.5 Mb/s whatever bitrate the encoder is given; a band of
    24 noisy rows (a ticker's worth of detail) makes VP8 and H264 use the pinned 1.2 Mb/s, like a
    camera picture of a hall does. Measured with aiortc's encoders on this machine: 1.18-1.21 Mb/s.
    """
    import av

    from media.loadgen import PatternVideoTrack

    class NoisyPatternTrack(PatternVideoTrack):
        async def recv(self) -> av.VideoFrame:
            frame = await super().recv()
            plane = frame.planes[0]
            data = bytearray(bytes(plane))
            size = plane.line_size * noise_rows
            data[:size] = os.urandom(size)
            plane.update(bytes(data))
            return frame

    return NoisyPatternTrack(width, height, fps)


async def _publisher_main(commands: Connection, answers: Connection) -> None:
    from media.loadgen import PublisherClient, prefer

    endpoint = Endpoint(commands, answers)
    clients: dict[str, PublisherClient] = {}

    async def offer(command: dict[str, Any]) -> dict[str, Any]:
        spec = command["spec"]
        noise_rows = int(spec.get("noise_rows", 0))
        client = PublisherClient(
            codec=spec["codec"],
            width=spec["width"],
            height=spec["height"],
            fps=spec["fps"],
            amplitude=spec["amplitude"],
            video=noise_rows == 0,
        )
        if noise_rows:
            track = _noisy_track(spec["width"], spec["height"], spec["fps"], noise_rows)
            client.pc.addTransceiver(track, direction="sendonly")
            prefer(client.pc, "video", f"video/{spec['codec']}")
        clients[str(spec["name"])] = client
        return {"sdp": await client.offer()}

    async def accept(command: dict[str, Any]) -> dict[str, Any]:
        client = clients[str(command["name"])]
        await client.accept(str(command["sdp"]))
        async with asyncio.timeout(JOIN_TIMEOUT_S):
            while client.pc.connectionState != "connected":
                if client.pc.connectionState in ("failed", "closed"):
                    raise ConnectionError(
                        f"publisher {command['name']} {client.pc.connectionState}"
                    )
                await asyncio.sleep(0.02)
        return {"connected": True}

    async def sent(command: dict[str, Any]) -> dict[str, Any]:
        """RTP packets each publisher's senders put on the wire (their `outbound-rtp` stats):
        compared with what the server received, this tells a starved publisher (few sent) from
        packets lost on the way in (sent, not received)."""
        result: dict[str, dict[str, int]] = {}
        for name, client in clients.items():
            for transceiver in client.pc.getTransceivers():
                report = await transceiver.sender.getStats()
                for stat in report.values():
                    if stat.type == "outbound-rtp":
                        result.setdefault(name, {})[str(transceiver.kind)] = int(
                            getattr(stat, "packetsSent", 0) or 0
                        )
        return {"packets": result}

    endpoint.handlers = {"offer": offer, "accept": accept, "sent": sent}
    endpoint.send({"kind": "ready", "pid": os.getpid()})
    try:
        await endpoint.serve()
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*(c.close() for c in clients.values()))


# ---- subscribers ---------------------------------------------------------------------------------


@dataclass
class StreamCount:
    """RTP packets of one m-line seen by a load-only subscriber, without decoding them."""

    packets: int = 0
    first_at: float | None = None
    first_seq: int | None = None
    highest: int = 0  # extended sequence number
    buckets: Counter[int] = field(default_factory=Counter)

    def add(self, seq: int, now: float) -> None:
        self.packets += 1
        self.buckets[int(now / VIDEO_TIME_BUCKET_S)] += 1
        if self.first_seq is None:
            self.first_at = now
            self.first_seq = seq
            self.highest = seq
            return
        # Extend the 16-bit number relative to the highest one seen (RFC 3550 A.1, simplified).
        delta = (seq - (self.highest & 0xFFFF)) & 0xFFFF
        if delta < 0x8000:
            self.highest += delta

    def lost(self) -> int:
        if self.first_seq is None:
            return 0
        return max(0, self.highest - self.first_seq + 1 - self.packets)

    def between(self, since: float, until: float) -> int:
        low = math.ceil(since / VIDEO_TIME_BUCKET_S)
        high = int(until / VIDEO_TIME_BUCKET_S)
        return sum(n for bucket, n in self.buckets.items() if low <= bucket < high)


class CountingSubscriber:
    """A point that receives its slots and counts packets, with no decoder and no jitter buffer.

    Decoding 640x360 video costs a client far more than forwarding it costs the server; with all
    clients on the server's two cores, only a few subscribers can decode. The rest use the same
    hooks as the server's receiving side (no decoder thread; a tap sees each RTP packet) so they
    load the server exactly as decoding ones do (ICE, DTLS, SRTP, one stream per m-line) for a
    small fraction of the client CPU. aiortc's own receive handling is skipped too: no NACKs or
    receiver reports go back, which only spares the server work a real client would ask for.
    """

    def __init__(self, slots: Sequence[str]) -> None:
        from media.embedded import hooks
        from media.loadgen import client_peer

        self.pc = client_peer(None)
        self.started = time.monotonic()
        self.streams: dict[str, StreamCount] = {}
        for slot in slots:
            for kind in ("audio", "video"):
                transceiver = self.pc.addTransceiver(kind, direction="recvonly")
                stream = StreamCount()
                self.streams[f"{slot}/{kind}"] = stream
                hooks.receive_without_decoder(transceiver.receiver)
                hooks.tap_rtp(transceiver.receiver, _counter(stream), keep_aiortc_handling=False)

    async def offer(self) -> str:
        self.started = time.monotonic()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        assert self.pc.localDescription is not None
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def first_program_at(self) -> float | None:
        return self.streams["program/video"].first_at

    async def close(self) -> None:
        await self.pc.close()


def _counter(stream: StreamCount) -> Callable[[Any], Awaitable[None]]:
    async def tap(packet: Any) -> None:
        stream.add(packet.sequence_number, time.monotonic())

    return tap


@dataclass
class Joined:
    name: str
    client: Any
    join_ms: float | None = None
    failure: str | None = None


class SubscriberWorker:
    """Subscribers of one process, all decoding (SubscriberClient) or all counting."""

    def __init__(self, decoding: bool, endpoint: Endpoint) -> None:
        self.decoding = decoding
        self.endpoint = endpoint
        self.subscribers: dict[str, Joined] = {}
        self.pending: dict[str, asyncio.Future[str]] = {}
        endpoint.handlers = {
            "join": self.join,
            "answer": self.answer,
            "mark": self.mark,
            "report": self.report,
            "close": self.close,
        }
        self.marks: dict[str, dict[str, tuple[int, int]]] = {}
        """Per mark ("start", "end" of the window), per subscriber: (packets received, lost)."""

    def _make(self, slots: Sequence[str]) -> Any:
        if self.decoding:
            from media.loadgen import SubscriberClient

            return SubscriberClient(slots)
        return CountingSubscriber(slots)

    def _first_program_at(self, client: Any) -> float | None:
        if self.decoding:
            first: float | None = client.logs["program/video"].first_at
            return first
        return client.first_program_at()  # type: ignore[no-any-return]

    async def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        future = self.pending.get(str(command["name"]))
        if future is not None and not future.done():
            if "error" in command:
                future.set_exception(ConnectionError(str(command["error"])))
            else:
                future.set_result(str(command["sdp"]))
        return {}

    async def join(self, command: dict[str, Any]) -> dict[str, Any]:
        """Join each subscriber at its start time; answer once every one shows its first frame."""
        slots = tuple(command["slots"])
        timeout_s = float(command.get("timeout_s", JOIN_TIMEOUT_S))
        entries = [
            self._join_one(str(name), float(start_at), slots, timeout_s)
            for name, start_at in command["subscribers"]
        ]
        results = await asyncio.gather(*entries)
        return {
            "joined": [(r.name, r.join_ms) for r in results if r.join_ms is not None],
            "failures": dict(Counter(r.failure for r in results if r.failure is not None)),
        }

    async def _join_one(
        self, name: str, start_at: float, slots: tuple[str, ...], timeout_s: float
    ) -> Joined:
        delay = start_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        client = self._make(slots)
        entry = Joined(name, client)
        self.subscribers[name] = entry
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pending[name] = future
        try:
            async with asyncio.timeout(timeout_s):
                sdp = await client.offer()
                self.endpoint.send({"kind": "offer", "name": name, "sdp": sdp, "slots": slots})
                await client.accept(await future)
                while (first := self._first_program_at(client)) is None:
                    if client.pc.connectionState in ("failed", "closed"):
                        entry.failure = f"peer {client.pc.connectionState}"
                        return entry
                    await asyncio.sleep(0.01)
            entry.join_ms = (first - client.started) * 1000
        except TimeoutError:
            entry.failure = "no program frame" if future.done() else "no answer"
        except ConnectionError as exc:
            entry.failure = f"refused: {exc}"[:200]
        finally:
            self.pending.pop(name, None)
        return entry

    async def mark(self, command: dict[str, Any]) -> dict[str, Any]:
        """Snapshot received and lost packets, so loss is counted over the window alone."""
        snapshot: dict[str, tuple[int, int]] = {}
        for entry in self.subscribers.values():
            if entry.join_ms is not None:
                snapshot[entry.name] = await self._packets(entry)
        self.marks[str(command["label"])] = snapshot
        return {}

    async def _packets(self, entry: Joined) -> tuple[int, int]:
        if not self.decoding:
            streams: dict[str, StreamCount] = entry.client.streams
            return (
                sum(s.packets for s in streams.values()),
                sum(s.lost() for s in streams.values()),
            )
        received = lost = 0
        report = await entry.client.pc.getStats()
        for stat in report.values():
            if stat.type == "inbound-rtp":
                received += int(getattr(stat, "packetsReceived", 0) or 0)
                # Negative when retransmissions arrive twice: nothing was lost then.
                lost += max(0, int(getattr(stat, "packetsLost", 0) or 0))
        return received, lost

    def _window_packets(self, name: str) -> tuple[int, int]:
        start = self.marks.get("start", {}).get(name)
        end = self.marks.get("end", {}).get(name)
        if start is None or end is None:
            return 0, 0
        return end[0] - start[0], max(0, end[1] - start[1])

    async def report(self, command: dict[str, Any]) -> dict[str, Any]:
        since, until = float(command["since"]), float(command["until"])
        switches: list[dict[str, Any]] = command.get("switches", [])
        per_subscriber: list[dict[str, Any]] = []
        for entry in self.subscribers.values():
            if entry.join_ms is None:
                continue
            if self.decoding:
                per_subscriber.append(await self._decoded(entry, since, until, switches))
            else:
                per_subscriber.append(self._counted(entry, since, until))
        return {"subscribers": per_subscriber}

    async def _decoded(
        self, entry: Joined, since: float, until: float, switches: list[dict[str, Any]]
    ) -> dict[str, Any]:
        client = entry.client
        video = client.logs["program/video"]
        audio = client.logs["program/audio"]
        floor_video = client.logs["floor/video"]
        floor_audio = client.logs["floor/audio"]
        measured: list[dict[str, float | None]] = []
        for index, switch in enumerate(switches):
            called = float(switch["called_at"])
            # A frame after the next switch belongs to that one: the new source never showed.
            ends = float(switches[index + 1]["called_at"]) if index + 1 < len(switches) else None
            seen_video = floor_video.first_size_after(called, int(switch["width"]))
            seen_audio = floor_audio.first_level_after(
                called, float(switch["level_low"]), float(switch["level_high"])
            )
            if ends is not None and seen_video is not None and seen_video >= ends:
                seen_video = None
            if ends is not None and seen_audio is not None and seen_audio >= ends:
                seen_audio = None
            measured.append(
                {
                    "video_ms": None if seen_video is None else (seen_video - called) * 1000,
                    "audio_ms": None if seen_audio is None else (seen_audio - called) * 1000,
                }
            )
        received, lost = self._window_packets(entry.name)
        audio_frames = sum(1 for at, _ in audio.levels if since <= at < until)
        return {
            "name": entry.name,
            "join_ms": entry.join_ms,
            "fps": video.fps(since, until),
            "audio_frames_per_s": audio_frames / max(1e-9, until - since),
            "program_width": video.sizes[-1][1] if video.sizes else None,
            "switches": measured,
            "packets_received": received,
            "packets_lost": lost,
        }

    def _counted(self, entry: Joined, since: float, until: float) -> dict[str, Any]:
        streams: dict[str, StreamCount] = entry.client.streams
        received, lost = self._window_packets(entry.name)
        seconds = max(1e-9, until - since)
        return {
            "name": entry.name,
            "join_ms": entry.join_ms,
            "program_video_pps": streams["program/video"].between(since, until) / seconds,
            "program_audio_pps": streams["program/audio"].between(since, until) / seconds,
            "packets_received": received,
            "packets_lost": lost,
        }

    async def close(self, command: dict[str, Any]) -> dict[str, Any]:
        clients = [entry.client for entry in self.subscribers.values()]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        self.subscribers.clear()
        return {"closed": len(clients)}


def subscriber_worker(decoding: bool, commands: Connection, answers: Connection) -> None:
    """Spawn target of a subscriber process (decoding, or load-only counting)."""
    _prepare_process()
    _run(lambda: _subscriber_main(decoding, commands, answers))


async def _subscriber_main(decoding: bool, commands: Connection, answers: Connection) -> None:
    endpoint = Endpoint(commands, answers)
    worker = SubscriberWorker(decoding, endpoint)
    endpoint.send({"kind": "ready", "pid": os.getpid()})
    try:
        await endpoint.serve()
    finally:
        await worker.close({})
