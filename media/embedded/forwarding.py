"""Sources (a publisher's track at the server) and sinks (one subscriber m-line), forwarding bytes.

A packet that arrives from a publisher is rewritten per sink (SSRC, sequence, timestamp, payload
type and header extensions the subscriber negotiated), SRTP-protected and sent, payload untouched.
Nothing is decoded or encoded. Audio goes out as it arrives; video is held per sink until a
keyframe. Work per packet is bounded (history ring, NACK budget) and a fan-out yields to the event
loop every few milliseconds so a keyframe burst to hundreds of sinks never stalls the loop.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    unwrap_rtx,
)

from media.embedded import hooks
from media.interface import Kind, KindStats
from media.keyframes import keyframe_start
from media.rtp import Extensions, StreamRewriter

CLOCK_RATES: dict[Kind, int] = {"audio": 48000, "video": 90000}
NTP_UNITS_PER_S = 1 << 32


def codec_key(codec: Any) -> str:
    """Codecs a subscriber can decode from the same bytes: mime type and H264 packetization."""
    name = str(codec.mimeType).lower()
    if name == "video/h264":
        return f"{name};packetization-mode={codec.parameters.get('packetization-mode', '0')}"
    return name


class Pacer:
    """Bounds how long forwarding runs before the event loop gets a turn.

    One per loop: every sink send checks the time; after `budget_s` of work the forwarding task
    yields. A keyframe of 40 packets to 300 sinks is ~0.5 s of work on this machine; paced, no other
    task waits more than about the budget.
    """

    def __init__(
        self, budget_s: float = 0.004, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.budget_s = budget_s
        self.clock = clock
        self.slice_start = clock()
        self.yields = 0
        self.longest_slice_s = 0.0

    async def checkpoint(self) -> None:
        now = self.clock()
        spent = now - self.slice_start
        if spent >= self.budget_s:
            self.longest_slice_s = max(self.longest_slice_s, spent)
            self.yields += 1
            await asyncio.sleep(0)
            self.slice_start = self.clock()

    def idle(self) -> None:
        """Called when a task starts forwarding: time spent elsewhere is not ours to count."""
        now = self.clock()
        if now - self.slice_start > self.budget_s * 4:
            self.slice_start = now


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Counters:
    """Per-process totals for the benchmark and /metrics."""

    def __init__(self) -> None:
        self.forwarded_packets = 0
        self.forward_cpu_s = 0.0


COUNTERS = Counters()


class Source:
    """One published track. Sinks attach to it; it keeps the SR mapping and asks for keyframes."""

    PLI_MIN_INTERVAL_S = 0.3

    def __init__(
        self, participant: str, kind: Kind, receiver: RTCRtpReceiver, pacer: Pacer
    ) -> None:
        self.participant = participant
        self.kind = kind
        self.receiver = receiver
        self.pacer = pacer
        self.clock_rate = CLOCK_RATES[kind]
        self.sinks: list[Sink] = []
        self.ssrc: int | None = None
        self.codec_name: str | None = None
        self.codec_key: str | None = None
        self.sr: tuple[int, int, float] | None = None  # publisher's (ntp, rtp), our arrival time
        self.last_pli = 0.0
        self.pending_pli = False
        self.stats = KindStats()
        self.stale_skips = 0
        self.closed = False
        hooks.receive_without_decoder(receiver)
        hooks.tap_rtp(receiver, self.on_rtp)
        hooks.tap_sender_reports(receiver, self.on_sender_report)

    def on_sender_report(self, packet: RtcpSrPacket) -> None:
        if self.ssrc is None or packet.ssrc == self.ssrc:
            info = packet.sender_info
            self.sr = (info.ntp_timestamp, info.rtp_timestamp, time.monotonic())

    async def on_rtp(self, packet: RtpPacket) -> None:
        if self.closed or not packet.payload:
            return
        codecs = hooks.receiver_codecs(self.receiver)
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        if codec.name.lower() == "rtx":
            original = hooks.receiver_rtx_ssrcs(self.receiver).get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original is None or apt not in codecs or len(packet.payload) < 2:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
            codec = codecs[apt]
        started = time.thread_time()
        self.stats.packets_in += 1
        self.stats.bytes_in += len(packet.payload)
        self.ssrc = packet.ssrc
        self.codec_name = codec.name
        self.codec_key = codec_key(codec)
        self.stats.codec = codec.mimeType
        if self.pending_pli:
            self.pending_pli = False
            await self.request_keyframe()
        keyframe = False
        if self.kind == "video":
            keyframe = keyframe_start(codec.name, packet.payload)
            if keyframe:
                self.stats.keyframes += 1
            elif any(sink.waiting_keyframe for sink in self.sinks):
                await self.request_keyframe()
        if self.sinks:
            self.pacer.idle()
            now = time.monotonic()
            ntp = hooks.ntp_now()
            for sink in list(self.sinks):
                if sink.source is not self:
                    # Re-routed while this fan-out yielded: the packet belongs to its old source's
                    # numbering and would be refused by SRTP replay protection at the new one.
                    self.stale_skips += 1
                    continue
                sent = await sink.forward(self, packet, keyframe, now, ntp)
                if sent:
                    self.stats.packets_out += 1
                    self.stats.bytes_out += sent
                await self.pacer.checkpoint()
        COUNTERS.forward_cpu_s += time.thread_time() - started

    async def request_keyframe(self) -> None:
        """At most one PLI upstream per interval, however many subscribers ask."""
        if self.kind != "video" or self.closed:
            return
        if self.ssrc is None:
            self.pending_pli = True
            return
        now = time.monotonic()
        if now - self.last_pli < self.PLI_MIN_INTERVAL_S:
            return
        self.last_pli = now
        self.stats.plis_up += 1
        await hooks.send_pli(self.receiver, self.ssrc)

    def sender_report_at(self, now: float, ts_offset: int) -> tuple[int, int] | None:
        """The publisher's own NTP/RTP pair carried forward to `now`, in a sink's timestamp space.

        Translating the publisher's SR (instead of pairing arrival time with the packet timestamp)
        keeps its audio and video in sync at the subscriber despite network jitter.
        """
        if self.sr is None:
            return None
        ntp, rtp, arrival = self.sr
        elapsed = now - arrival
        out_ntp = (ntp + int(elapsed * NTP_UNITS_PER_S)) & 0xFFFFFFFFFFFFFFFF
        out_rtp = (rtp + int(elapsed * self.clock_rate) + ts_offset) & 0xFFFFFFFF
        return out_ntp, out_rtp

    def close(self) -> None:
        self.closed = True
        for sink in list(self.sinks):
            sink.detach()


class Sink:
    """One subscriber m-line: its own SSRC/sequence/timestamp space and retransmission history."""

    RTX_SUPPRESS_S = 0.1
    NACK_SEQS_MAX = 64

    def __init__(
        self, participant: str, slot: str, kind: Kind, transceiver: RTCRtpTransceiver
    ) -> None:
        self.participant = participant
        self.slot = slot
        self.kind = kind
        self.transceiver = transceiver
        self.sender = transceiver.sender
        self.source: Source | None = None
        self.raw: hooks.RawSender | None = None
        self.pt_by_codec: dict[str, int] = {}
        self.extensions = Extensions()
        self.waiting_keyframe = kind == "video"
        self.rewriter = StreamRewriter(
            ssrc=hooks.sender_ssrc(self.sender),
            next_seq=random.randrange(0, 0x8000),  # noqa: S311 - RTP sequence start, not a secret
            last_ts=random.getrandbits(32),
        )
        self.rtx_sent_at = [0.0] * len(self.rewriter.history)
        self.rtx_budget = TokenBucket(rate=100.0, burst=200.0)
        self.stats = KindStats()
        self.mismatched = 0
        hooks.sender_without_encoder(self.sender, self.report, self.on_rtcp)

    def activate(self, dtls: RTCDtlsTransport) -> None:
        """Once connected: read what was negotiated (the bundled transport is final only now)."""
        codecs, extensions = hooks.negotiated(self.transceiver)
        self.pt_by_codec = {}
        for codec in codecs:
            if codec.name.lower() != "rtx":
                self.pt_by_codec.setdefault(codec_key(codec), codec.payloadType)
        ids = {ext.uri: ext.id for ext in extensions}
        self.extensions = Extensions.negotiated(ids, self.transceiver.mid)
        self.raw = hooks.RawSender(dtls)

    def attach(self, source: Source | None) -> bool:
        """Route this sink to `source`; returns True when a keyframe should be asked for."""
        if source is self.source:
            return False
        self.detach()
        self.source = source
        self.rewriter.reset()
        if self.kind == "video":
            self.waiting_keyframe = True
        if source is not None:
            source.sinks.append(self)
            return True
        return False

    def detach(self) -> None:
        if self.source is not None and self in self.source.sinks:
            self.source.sinks.remove(self)
        self.source = None

    async def forward(
        self, source: Source, packet: RtpPacket, keyframe: bool, now: float, ntp: int
    ) -> int:
        raw = self.raw
        if raw is None:
            return 0
        if self.waiting_keyframe:
            if not keyframe:
                self.stats.dropped += 1
                return 0
            self.waiting_keyframe = False
            self.rewriter.reset()
        pt = self.pt_by_codec.get(source.codec_key or "")
        if pt is None:
            self.mismatched += 1
            self.stats.dropped += 1
            return 0
        data = self.rewriter.rewrite(
            in_seq=packet.sequence_number,
            in_ts=packet.timestamp,
            marker=packet.marker,
            payload_type=pt,
            extension_block=self.extensions.block(ntp, packet.extensions.audio_level),
            payload=packet.payload,
            now=now,
            clock_rate=source.clock_rate,
        )
        sent = await raw.send(data)
        if sent:
            self.stats.packets_out += 1
            self.stats.bytes_out += len(packet.payload)
            self.stats.codec = source.stats.codec
            COUNTERS.forwarded_packets += 1
        return sent

    def report(self) -> tuple[int, int, int, int] | None:
        """What this sink's sender report says; nothing before the first forwarded packet."""
        rewriter = self.rewriter
        if rewriter.packets == 0 or rewriter.last_wall is None:
            return None
        now = time.monotonic()
        source = self.source
        pair = None
        if source is not None and rewriter.ts_offset is not None:
            pair = source.sender_report_at(now, rewriter.ts_offset)
        if pair is None:
            rate = source.clock_rate if source is not None else CLOCK_RATES[self.kind]
            rtp = (rewriter.last_ts + int((now - rewriter.last_wall) * rate)) & 0xFFFFFFFF
            pair = (hooks.ntp_now(), rtp)
        return pair[0], pair[1], rewriter.packets, rewriter.octets

    async def on_rtcp(self, packet: AnyRtcpPacket) -> bool:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.stats.nacks_in += 1
            await self._retransmit(packet.lost[: self.NACK_SEQS_MAX])
            return True
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.stats.plis_in += 1
            if self.source is not None:
                await self.source.request_keyframe()
            return True
        return False

    async def _retransmit(self, lost: list[int]) -> None:
        raw = self.raw
        if raw is None:
            return
        now = time.monotonic()
        ring = len(self.rtx_sent_at)
        for seq in lost:
            data = self.rewriter.stored(seq)
            if data is None or now - self.rtx_sent_at[seq % ring] < self.RTX_SUPPRESS_S:
                continue
            if not self.rtx_budget.take(now):
                break
            self.rtx_sent_at[seq % ring] = now
            if await raw.send(data):
                self.stats.retransmits += 1
