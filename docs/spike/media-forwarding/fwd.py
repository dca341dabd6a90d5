"""Spike: RTP forwarding through aiortc 1.16.0 without decoding or encoding (server side).

Hooks (all instance-level, no aiortc file is modified):
  publisher receiver : .receive replaced (no decoder thread), ._handle_rtp_packet wrapped (tap)
  subscriber sender  : ._run_rtp replaced (no encoder, no 20 ms polling), ._handle_rtcp_packet
                       wrapped (NACK from our history, PLI/FIR relayed upstream coalesced)
  sender reports     : aiortc's own _run_rtcp kept; its name-mangled counters fed per packet
"""
import asyncio
import os
import random
import struct
import time

from aiortc import clock
from aiortc.rtp import (
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    unwrap_rtx,
)

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

# Every private name we touch. Checked at hook time: an aiortc upgrade that renames one fails loudly.
RECEIVER_PRIVATE = (
    "_RTCRtpReceiver__started", "_RTCRtpReceiver__codecs", "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__transport", "_RTCRtpReceiver__rtcp_task", "_RTCRtpReceiver__decoder_thread",
    "_run_rtcp", "_handle_rtp_packet", "_send_rtcp_pli",
)
SENDER_PRIVATE = (
    "_RTCRtpSender__rtp_started", "_RTCRtpSender__rtp_exited", "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp", "_RTCRtpSender__packet_count", "_RTCRtpSender__octet_count",
    "_run_rtp", "_handle_rtcp_packet", "_ssrc",
)


def _check(obj, names):
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise RuntimeError(f"aiortc internals changed, missing on {type(obj).__name__}: {missing}")


def vp8_is_keyframe_start(payload: bytes) -> bool:
    """RFC 7741: first packet of a VP8 key frame (S=1, PartID=0, P bit of payload header = 0)."""
    if len(payload) < 1:
        return False
    b0 = payload[0]
    if not (b0 & 0x10) or (b0 & 0x0F) != 0:
        return False
    i = 1
    if b0 & 0x80:  # X
        if len(payload) < 2:
            return False
        b1 = payload[1]
        i = 2
        if b1 & 0x80:  # I: picture id
            if len(payload) <= i:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if b1 & 0x40:  # L
            i += 1
        if b1 & 0x30:  # T or K
            i += 1
    return len(payload) > i and (payload[i] & 0x01) == 0


def h264_is_keyframe_start(payload: bytes) -> bool:
    """IDR or SPS at the start of a NAL (single NAL, STAP-A, FU-A start)."""
    if not payload:
        return False
    t = payload[0] & 0x1F
    if t in (5, 7):
        return True
    if t == 24:  # STAP-A
        i = 1
        while i + 2 < len(payload):
            size = (payload[i] << 8) | payload[i + 1]
            if i + 2 < len(payload) and (payload[i + 2] & 0x1F) in (5, 7):
                return True
            i += 2 + size
        return False
    if t == 28 and len(payload) > 1:  # FU-A
        return bool(payload[1] & 0x80) and (payload[1] & 0x1F) in (5, 7)
    return False


def no_decode_receive(receiver) -> None:
    """Replace RTCRtpReceiver.receive (rtcrtpreceiver.py:392) by a copy without the decoder thread."""
    _check(receiver, RECEIVER_PRIVATE)

    async def receive(parameters):
        r = receiver
        if r._RTCRtpReceiver__started:
            return
        for codec in parameters.codecs:
            r._RTCRtpReceiver__codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                r._RTCRtpReceiver__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        r._RTCRtpReceiver__transport._register_rtp_receiver(r, parameters)
        r._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(r._run_rtcp())
        r._RTCRtpReceiver__started = True

    receiver.receive = receive


class Stats:
    def __init__(self):
        self.in_packets = 0
        self.fwd_packets = 0
        self.fwd_seconds = 0.0  # perf_counter time inside the tap (fan-out: rewrite+protect+sendto)
        self.tap_seconds = 0.0  # including aiortc's own receiver handling
        self.plis_in = 0
        self.plis_up = 0
        self.nacks_in = 0
        self.retransmits = 0
        self.rtx_suppressed = 0
        self.nack_miss = 0
        self.rtx_in = 0
        self.sim_dropped = 0
        self.keyframes = 0


STATS = Stats()


class Sink:
    """One subscriber's outgoing stream of one kind (its own SSRC / seq / ts space)."""

    RTX_SUPPRESS = 0.1  # s: the same seq is retransmitted at most once per 100 ms

    def __init__(self, name, transceiver, source, drop_rate=0.0):
        self.name = name
        self.sender = transceiver.sender
        self.transceiver = transceiver
        self.source = source
        self.dtls = None  # NOT sender.transport yet: BUNDLE replaces it in setRemoteDescription
        self.kind = transceiver.kind
        self.drop_rate = drop_rate
        _check(self.sender, SENDER_PRIVATE)
        self.ssrc = self.sender._ssrc
        self.pt = None
        self.ext = None
        self.active = False
        self.waiting_keyframe = self.kind == "video"
        self.seq_offset = None
        self.ts_offset = None
        self.next_seq = random.randrange(0, 32768)
        self.last_ts = random.getrandbits(32)
        self.last_wall = None
        self.history = [None] * 512  # bounded: seq_out % 512 -> bytes
        self.rtx_time = [0.0] * 512
        self.sent = 0
        self._hook_sender()

    def _hook_sender(self):
        sender = self.sender

        async def run_rtp(codec):  # replaces RTCRtpSender._run_rtp (rtcrtpsender.py:357)
            self.pt = codec.payloadType
            sender._RTCRtpSender__rtp_started.set()
            try:
                await asyncio.Future()  # never encodes, never polls
            except asyncio.CancelledError:
                pass
            sender._RTCRtpSender__rtp_exited.set()

        sender._run_rtp = run_rtp
        orig = sender._handle_rtcp_packet

        async def handle_rtcp(packet):  # wraps RTCRtpSender._handle_rtcp_packet (rtcrtpsender.py:244)
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                STATS.nacks_in += 1
                now = time.monotonic()
                for seq in packet.lost[:64]:  # bounded work per NACK
                    data = self.history[seq % 512]
                    if data is None or struct.unpack_from("!H", data, 2)[0] != seq:
                        STATS.nack_miss += 1
                        continue
                    if now - self.rtx_time[seq % 512] < self.RTX_SUPPRESS:
                        STATS.rtx_suppressed += 1  # aiortc clients re-NACK the whole missing set
                        continue
                    self.rtx_time[seq % 512] = now
                    STATS.retransmits += 1
                    await self.dtls._send_rtp(data)
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                STATS.plis_in += 1
                await self.source.request_keyframe(f"{packet.fmt == RTCP_PSFB_PLI and 'PLI' or 'FIR'} from {self.name}")
            else:
                await orig(packet)  # RR -> RTT/remote-inbound stats; REMB ignored (no encoder)

        sender._handle_rtcp_packet = handle_rtcp

    def activate(self):
        """Call once DTLS is connected and negotiation is done."""
        t = self.transceiver
        self.dtls = self.sender.transport  # the bundled transport, valid only after negotiation
        self.pt = t._codecs[0].payloadType
        ids = {e.uri: e.id for e in t._headerExtensions}
        self.mid_elem = b""
        if MID in ids and t.mid is not None:
            mid = t.mid.encode()
            self.mid_elem = bytes([(ids[MID] << 4) | (len(mid) - 1)]) + mid
        self.abs_id = ids.get(ABS_SEND_TIME)
        self.level_id = ids.get(AUDIO_LEVEL)
        self.active = True

    async def set_source(self, source):
        """Route change (floor passes): hold video until the new source's keyframe, rebase offsets."""
        if self in self.source.sinks:
            self.source.sinks.remove(self)
        self.source = source
        self.seq_offset = None
        if self.kind == "video":
            self.waiting_keyframe = True
        source.sinks.append(self)
        await source.request_keyframe(f"route change {self.name}")

    def rebase(self, packet):
        """New seq/ts offsets so the outgoing stream continues without a jump (start or source switch)."""
        now = time.monotonic()
        clock_rate = self.source.clock_rate
        if self.last_wall is None:
            out_ts = self.last_ts
        else:
            out_ts = (self.last_ts + int((now - self.last_wall) * clock_rate) + 1) & 0xFFFFFFFF
        self.ts_offset = (out_ts - packet.timestamp) & 0xFFFFFFFF
        self.seq_offset = (self.next_seq - packet.sequence_number) & 0xFFFF

    async def forward(self, packet, keyframe_start):
        if not self.active or self.dtls.state != "connected":
            return
        if self.waiting_keyframe:
            if not keyframe_start:
                return
            self.waiting_keyframe = False
            self.seq_offset = None
        if self.seq_offset is None:
            self.rebase(packet)
        seq = (packet.sequence_number + self.seq_offset) & 0xFFFF
        ts = (packet.timestamp + self.ts_offset) & 0xFFFFFFFF
        elems = self.mid_elem
        if self.abs_id:
            ast = (clock.current_ntp_time() >> 14) & 0x00FFFFFF
            elems += bytes([(self.abs_id << 4) | 2]) + ast.to_bytes(3, "big")
        if self.level_id and packet.extensions.audio_level is not None:
            vad, level = packet.extensions.audio_level
            elems += bytes([self.level_id << 4, (0x80 if vad else 0) | (level & 0x7F)])
        if elems:
            elems += b"\x00" * (-len(elems) % 4)
            ext = b"\xbe\xde" + struct.pack("!H", len(elems) // 4) + elems
            b0 = 0x90
        else:
            ext = b""
            b0 = 0x80
        data = (
            struct.pack("!BBHLL", b0, (packet.marker << 7) | self.pt, seq, ts, self.ssrc)
            + ext
            + packet.payload
        )
        self.history[seq % 512] = data
        if ((seq - self.next_seq) & 0xFFFF) < 0x8000:  # newest so far (a repaired packet is older)
            self.next_seq = (seq + 1) & 0xFFFF
            self.last_ts = ts
            self.last_wall = time.monotonic()
        # feed aiortc's own sender-report loop (rtcrtpsender.py:426): counts and the NTP/RTP pair
        s = self.sender
        s._RTCRtpSender__ntp_timestamp = clock.current_ntp_time()
        s._RTCRtpSender__rtp_timestamp = ts
        s._RTCRtpSender__packet_count += 1
        s._RTCRtpSender__octet_count += len(packet.payload)
        if self.drop_rate and random.random() < self.drop_rate:
            STATS.sim_dropped += 1  # simulated loss: kept in history, not sent -> subscriber NACKs
            return
        await self.dtls._send_rtp(data)
        self.sent += 1


class Source:
    """One publisher track as seen at the server."""

    PLI_MIN_INTERVAL = 0.5

    def __init__(self, receiver, kind, skip_aiortc_handling=False):
        self.receiver = receiver
        self.kind = kind
        self.sinks = []
        self.ssrc = None
        self.codec = None
        self.clock_rate = 90000 if kind == "video" else 48000
        self.last_pli = 0.0
        self.pending_pli = False
        no_decode_receive(receiver)
        orig = receiver._handle_rtp_packet
        self.skip = skip_aiortc_handling

        async def tap(packet, arrival_time_ms):  # wraps RTCRtpReceiver._handle_rtp_packet (rtcrtpreceiver.py:471)
            t0 = time.thread_time()
            await self.on_rtp(packet)
            t1 = time.thread_time()
            if not self.skip:
                await orig(packet, arrival_time_ms)  # NACK/REMB/RR upstream keep working
            STATS.fwd_seconds += t1 - t0
            STATS.tap_seconds += time.thread_time() - t0

        receiver._handle_rtp_packet = tap

    async def on_rtp(self, packet):
        codecs = self.receiver._RTCRtpReceiver__codecs
        codec = codecs.get(packet.payload_type)
        if codec is None or not packet.payload:
            return  # unknown PT / padding-only
        if codec.name.lower() == "rtx":  # upstream repair: unwrap and forward as a late packet
            orig_ssrc = self.receiver._RTCRtpReceiver__rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if orig_ssrc is None or apt not in codecs or len(packet.payload) < 2:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=orig_ssrc)
            codec = codecs[apt]
            STATS.rtx_in += 1
        STATS.in_packets += 1
        self.ssrc = packet.ssrc
        self.codec = codec
        if self.pending_pli:
            self.pending_pli = False
            await self.request_keyframe("pending")
        key = False
        if self.kind == "video":
            key = (vp8_is_keyframe_start if codec.name == "VP8" else h264_is_keyframe_start)(packet.payload)
            if key:
                STATS.keyframes += 1
            if not key and any(s.waiting_keyframe and s.active for s in self.sinks):
                await self.request_keyframe("sink waiting for keyframe")  # coalesced below
        for sink in self.sinks:
            await sink.forward(packet, key)
            STATS.fwd_packets += 1

    async def request_keyframe(self, why=""):
        if self.kind != "video":
            return
        if self.ssrc is None:
            self.pending_pli = True
            return
        now = time.monotonic()
        if now - self.last_pli < self.PLI_MIN_INTERVAL:
            return  # coalesced
        self.last_pli = now
        STATS.plis_up += 1
        await self.receiver._send_rtcp_pli(self.ssrc)  # rtcrtpreceiver.py:630
