"""Real aiortc client peers for tests and `diemcau bench media`: a synthetic hall, decoding points.

The publisher encodes a moving picture (so the encoder makes real inter frames, not one repeated
frame) and a tone whose loudness names its publisher; subscribers decode what they get and record
frame counts, sizes and loudness per slot, so a test sees *which* source reached it, not just bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import math
import struct
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.02


class PatternVideoTrack(MediaStreamTrack):
    """A moving gradient at a fixed size and frame rate."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 360, fps: int = 30) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        row = bytes((x * 255 // max(1, width - 1)) for x in range(width))
        self._rows = row * 2
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        shift = (self._count * 7) % self.width
        line = self._rows[shift : shift + self.width]
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        # Planes are padded to an aligned line size: fill whole padded rows (any width works).
        luma, *chroma = frame.planes
        luma.update(
            (line + bytes(luma.line_size - self.width)) * (luma.buffer_size // luma.line_size)
        )
        for plane in chroma:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts = int(self._count * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._count += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A 440 Hz tone; its amplitude identifies the publisher at a decoding subscriber."""

    kind = "audio"

    def __init__(self, amplitude: int = 8000) -> None:
        super().__init__()
        samples = int(AUDIO_RATE * AUDIO_PTIME)
        period = [
            int(amplitude * math.sin(2 * math.pi * 440 * i / AUDIO_RATE)) for i in range(samples)
        ]
        self._payload = struct.pack(f"<{samples}h", *period)
        self._samples = samples
        self._start: float | None = None
        self._count = 0

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._count * AUDIO_PTIME
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = av.AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(self._payload)
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._count * self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._count += 1
        return frame


def rms(frame: av.AudioFrame) -> float:
    """Loudness of a decoded frame (first channel), without numpy."""
    samples = array("h")
    samples.frombytes(bytes(frame.planes[0])[: 960 * 2 * frame.layout.nb_channels])
    step = frame.layout.nb_channels if frame.format.is_packed else 1
    chosen = samples[::step]
    if not chosen:
        return 0.0
    return math.sqrt(sum(s * s for s in chosen) / len(chosen))


def client_peer(configuration: RTCConfiguration | None) -> RTCPeerConnection:
    """Max-bundle, as browsers do: aiortc's balanced policy leaves a second video m-line on a
    transport BUNDLE never replaces, so its packets land on the first video receiver."""
    base = configuration or RTCConfiguration(iceServers=[])
    return RTCPeerConnection(dataclasses.replace(base, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


def prefer(pc: RTCPeerConnection, kind: str, mime: str) -> None:
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            codecs = [
                c
                for c in RTCRtpSender.getCapabilities(kind).codecs
                if c.mimeType.lower() in (mime.lower(), f"{kind}/rtx")
            ]
            transceiver.setCodecPreferences(codecs)


class PublisherClient:
    """A hall or a point sending camera and microphone (synthetic)."""

    def __init__(
        self,
        *,
        codec: str = "VP8",
        width: int = 640,
        height: int = 360,
        fps: int = 30,
        amplitude: int = 8000,
        audio: bool = True,
        video: bool = True,
        configuration: RTCConfiguration | None = None,
    ) -> None:
        self.pc = client_peer(configuration)
        if audio:
            self.pc.addTransceiver(ToneAudioTrack(amplitude), direction="sendonly")
            prefer(self.pc, "audio", "audio/opus")
        if video:
            self.pc.addTransceiver(PatternVideoTrack(width, height, fps), direction="sendonly")
            prefer(self.pc, "video", f"video/{codec}")

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        assert self.pc.localDescription is not None
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class TrackLog:
    """What one received track delivered, decoded."""

    kind: str
    frames: int = 0
    first_at: float | None = None
    last_at: float | None = None
    sizes: list[tuple[float, int, int]] = field(default_factory=list)
    levels: list[tuple[float, float]] = field(default_factory=list)

    def fps(self, since: float, until: float) -> float:
        return self.count_between(since, until) / max(1e-9, until - since)

    def count_between(self, since: float, until: float) -> int:
        return sum(1 for at, *_ in self.sizes if since <= at < until) if self.kind == "video" else 0

    def first_size_after(self, since: float, width: int) -> float | None:
        for at, w, _ in self.sizes:
            if at >= since and w == width:
                return at
        return None

    def first_level_after(self, since: float, low: float, high: float) -> float | None:
        for at, level in self.levels:
            if at >= since and low <= level <= high:
                return at
        return None


class SubscriberClient:
    """A point (or the hall) receiving slots: one audio and one video m-line per slot, decoded."""

    def __init__(
        self, slots: Sequence[str] = ("program",), configuration: RTCConfiguration | None = None
    ) -> None:
        self.slots = tuple(slots)
        self.pc = client_peer(configuration)
        self.logs: dict[str, TrackLog] = {}
        self.started = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._transceivers: list[tuple[str, str, Any]] = []
        for slot in self.slots:
            for kind in ("audio", "video"):
                transceiver = self.pc.addTransceiver(kind, direction="recvonly")
                self._transceivers.append((slot, kind, transceiver))
                self.logs[f"{slot}/{kind}"] = TrackLog(kind)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            for slot, kind, transceiver in self._transceivers:
                if transceiver.receiver.track is track:
                    self._tasks.append(
                        asyncio.ensure_future(self._consume(f"{slot}/{kind}", track))
                    )

    async def _consume(self, key: str, track: MediaStreamTrack) -> None:
        log = self.logs[key]
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
            elif isinstance(frame, av.AudioFrame):
                log.levels.append((now, rms(frame)))

    async def offer(self) -> str:
        self.started = time.monotonic()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        assert self.pc.localDescription is not None
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def packets_received(self, slot: str, kind: str) -> int:
        """RTP packets the m-line received, from the peer's own stats (not decoded frames)."""
        for s, k, transceiver in self._transceivers:
            if (s, k) == (slot, kind):
                report = await transceiver.receiver.getStats()
                return sum(
                    int(getattr(stat, "packetsReceived", 0))
                    for stat in report.values()
                    if stat.type == "inbound-rtp"
                )
        raise KeyError((slot, kind))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
