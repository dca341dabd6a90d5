"""RTP header rewriting for one subscriber stream: its own SSRC, sequence and timestamp space.

Pure functions and a small state object, so the continuity rules (no jump on a source switch, late
packets keep their place) are tested without sockets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

_HEADER = struct.Struct("!BBHLL")


def newer(a: int, b: int) -> bool:
    """Sequence number a is after b (16-bit serial arithmetic, RFC 1982)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


@dataclass(slots=True)
class Extensions:
    """The one-byte header extension IDs a subscriber negotiated (None: not negotiated)."""

    mid_element: bytes = b""
    abs_send_time_id: int | None = None
    audio_level_id: int | None = None

    @classmethod
    def negotiated(cls, ids: dict[str, int], mid: str | None) -> Extensions:
        element = b""
        if MID in ids and mid:
            raw = mid.encode()
            element = bytes([(ids[MID] << 4) | (len(raw) - 1)]) + raw
        return cls(element, ids.get(ABS_SEND_TIME), ids.get(AUDIO_LEVEL))

    def block(self, ntp_now: int, audio_level: tuple[bool, int] | None) -> bytes:
        elements = self.mid_element
        if self.abs_send_time_id is not None:
            ast = (ntp_now >> 14) & 0x00FFFFFF
            elements += bytes([(self.abs_send_time_id << 4) | 2]) + ast.to_bytes(3, "big")
        if self.audio_level_id is not None and audio_level is not None:
            vad, level = audio_level
            elements += bytes([self.audio_level_id << 4, (0x80 if vad else 0) | (level & 0x7F)])
        if not elements:
            return b""
        elements += b"\x00" * (-len(elements) % 4)
        return b"\xbe\xde" + struct.pack("!H", len(elements) // 4) + elements


@dataclass(slots=True)
class StreamRewriter:
    """Maps incoming (seq, ts) of whichever source is routed onto one continuous outgoing stream."""

    ssrc: int
    next_seq: int
    last_ts: int
    last_wall: float | None = None
    seq_offset: int | None = None
    ts_offset: int | None = None
    packets: int = 0
    octets: int = 0
    history: list[bytes | None] = field(default_factory=lambda: [None] * 512)

    def rebase(self, in_seq: int, in_ts: int, now: float, clock_rate: int) -> None:
        """Continue after the last sent packet: used on the first packet and after a switch."""
        if self.last_wall is None:
            out_ts = self.last_ts
        else:
            out_ts = (self.last_ts + int((now - self.last_wall) * clock_rate) + 1) & 0xFFFFFFFF
        self.ts_offset = (out_ts - in_ts) & 0xFFFFFFFF
        self.seq_offset = (self.next_seq - in_seq) & 0xFFFF

    def reset(self) -> None:
        self.seq_offset = None
        self.ts_offset = None

    def rewrite(
        self,
        *,
        in_seq: int,
        in_ts: int,
        marker: int,
        payload_type: int,
        extension_block: bytes,
        payload: bytes,
        now: float,
        clock_rate: int,
    ) -> bytes:
        if self.seq_offset is None or self.ts_offset is None:
            self.rebase(in_seq, in_ts, now, clock_rate)
        assert self.seq_offset is not None
        assert self.ts_offset is not None
        seq = (in_seq + self.seq_offset) & 0xFFFF
        ts = (in_ts + self.ts_offset) & 0xFFFFFFFF
        first = 0x90 if extension_block else 0x80
        data = (
            _HEADER.pack(first, (marker << 7) | payload_type, seq, ts, self.ssrc)
            + extension_block
            + payload
        )
        self.history[seq % len(self.history)] = data
        if seq == self.next_seq or newer(seq, self.next_seq):
            self.next_seq = (seq + 1) & 0xFFFF
            self.last_ts = ts
            self.last_wall = now
        self.packets += 1
        self.octets += len(payload)
        return data

    def stored(self, seq: int) -> bytes | None:
        data = self.history[seq % len(self.history)]
        if data is None or struct.unpack_from("!H", data, 2)[0] != seq:
            return None
        return data
