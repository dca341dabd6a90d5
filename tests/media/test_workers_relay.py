"""The relay's datagram format and bounds, without processes or peers."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from media.embedded.backend import EmbeddedMedia
from media.workers.relay import (
    Codec,
    Relay,
    RelayedPacket,
    RelaySource,
    decode_stream,
    encode_stream,
)

VP8 = Codec("video/VP8", "video/vp8", "VP8")


def test_stream_names_round_trip() -> None:
    data = b"x" + encode_stream(3, "phiên-1", "điểm cầu 7")
    assert decode_stream(data, 1) == (3, "phiên-1", "điểm cầu 7", len(data))


async def test_receiver_queue_is_bounded_and_drops_are_counted() -> None:
    relay = Relay(1, EmbeddedMedia())
    source = RelaySource(
        relay,
        "s1",
        "hall",
        "video",
        origin=0,
        epoch=1,
        origin_address=("127.0.0.1", 9),
        pacer=relay.media.pacer,
        capacity=4,
    )
    try:
        for seq in range(10):
            packet = RtpPacket(sequence_number=seq, timestamp=seq * 3000, payload=b"\x10\x00")
            source.push(RelayedPacket(packet, False, VP8, 0.0), relay_seq=seq)
        assert len(source.queue) == 4
        assert relay.stats.queue_drops == source.stats.dropped == 6
        assert source.needs_keyframe, "a dropped video packet asks for a keyframe"
        source.push(RelayedPacket(RtpPacket(payload=b"\x10"), False, VP8, 0.0), relay_seq=15)
        assert relay.stats.lost == 5, "gaps in the relay sequence are kernel loss"
    finally:
        source.close()
