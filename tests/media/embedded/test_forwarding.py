"""The forwarder with real aiortc peers on loopback: retransmission, sender reports, keyframes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from media.embedded.backend import EmbeddedMedia
from media.embedded.forwarding import Pacer
from media.errors import MediaCodecUnsupported, MediaOfferInvalid, MediaRoomNotFound
from media.interface import ANY, SinkKey
from media.loadgen import PublisherClient, SubscriberClient

pytestmark = pytest.mark.usefixtures("loopback_media")


@pytest.fixture
async def backend() -> AsyncIterator[EmbeddedMedia]:
    media = EmbeddedMedia()
    await media.create_room("r")
    await media.route("r", {SinkKey(ANY, "program"): "hall"})
    yield media
    await media.stop()


async def until(predicate: Any, within: float = 8.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def join(media: EmbeddedMedia) -> tuple[PublisherClient, SubscriberClient]:
    hall = PublisherClient(width=160, height=96)
    await hall.accept((await media.add_publisher("r", "hall", await hall.offer(), role="hall")).sdp)
    rx = SubscriberClient(("program",))
    await rx.accept(
        (await media.add_subscriber("r", "p1", await rx.offer(), slots=("program",))).sdp
    )
    await until(lambda: rx.logs["program/video"].frames >= 15)
    return hall, rx


async def test_nacks_are_answered_from_history_once_per_window(backend: EmbeddedMedia) -> None:
    hall, rx = await join(backend)
    sink = backend.rooms["r"].participants["p1"].sinks[("program", "video")]
    receiver = rx._transceivers[1][2].receiver
    newest = (sink.rewriter.next_seq - 1) & 0xFFFF
    lost = sorted((newest - i) & 0xFFFF for i in range(1, 6))
    before = sink.stats.retransmits
    await receiver._send_rtcp_nack(sink.rewriter.ssrc, lost)
    await until(lambda: sink.stats.retransmits == before + 5)
    await receiver._send_rtcp_nack(sink.rewriter.ssrc, lost)  # at once again: suppressed
    await asyncio.sleep(0.05)
    assert sink.stats.retransmits == before + 5
    assert sink.stats.nacks_in == 2
    await hall.close()
    await rx.close()


async def test_sender_reports_describe_the_forwarded_stream(backend: EmbeddedMedia) -> None:
    hall, rx = await join(backend)
    receiver = rx._transceivers[1][2].receiver
    reports: list[Any] = []

    async def remote_outbound() -> bool:
        stats = await receiver.getStats()
        reports[:] = [s for s in stats.values() if s.type == "remote-outbound-rtp"]
        return bool(reports)

    deadline = time.monotonic() + 5
    while not await remote_outbound():
        assert time.monotonic() < deadline, "no sender report arrived"
        await asyncio.sleep(0.1)
    (report,) = reports
    sink = backend.rooms["r"].participants["p1"].sinks[("program", "video")]
    assert 0 < report.packetsSent <= sink.rewriter.packets
    assert abs(report.remoteTimestamp.timestamp() - time.time()) < 5
    await hall.close()
    await rx.close()


async def test_a_source_switch_requests_a_keyframe_and_gates_video(backend: EmbeddedMedia) -> None:
    hall, rx = await join(backend)
    other = PublisherClient(width=96, height=64)
    await other.accept(
        (await backend.add_publisher("r", "p2", await other.offer(), role="point")).sdp
    )
    await asyncio.sleep(1.5)  # its first keyframe is long gone
    source = backend.rooms["r"].participants["p2"].sources["video"]
    plis = source.stats.plis_up
    switched = time.monotonic()
    await backend.route("r", {SinkKey("p1", "program"): "p2"})
    await until(lambda: rx.logs["program/video"].first_size_after(switched, 96) is not None)
    assert source.stats.plis_up > plis
    assert source.stats.keyframes >= 1
    sizes = [w for at, w, _ in rx.logs["program/video"].sizes if at > switched]
    first_new = sizes.index(96)
    assert all(w == 96 for w in sizes[first_new:])
    for peer in (hall, rx, other):
        await peer.close()


async def test_typed_errors_change_nothing(backend: EmbeddedMedia) -> None:
    with pytest.raises(MediaOfferInvalid):
        await backend.add_publisher("r", "x", "v=0\r\nnonsense", role="point")
    with pytest.raises(MediaRoomNotFound):
        await backend.add_publisher("other", "x", "v=0\r\n", role="point")
    audio_only = PublisherClient(video=False)
    sdp = (await audio_only.offer()).replace("opus/48000/2", "xopus/48000/2")
    with pytest.raises((MediaCodecUnsupported, MediaOfferInvalid)):
        await backend.add_publisher("r", "x", sdp, role="point")
    await audio_only.close()
    assert "x" not in backend.rooms["r"].participants or (
        backend.rooms["r"].participants["x"].publisher is None
    )


async def test_a_refused_offer_keeps_the_working_publication(backend: EmbeddedMedia) -> None:
    hall, rx = await join(backend)
    member = backend.rooms["r"].participants["hall"]
    working = member.publisher
    again = PublisherClient(width=160, height=96)
    offer = await again.offer()
    unbundled = "\r\n".join(x for x in offer.split("\r\n") if not x.startswith("a=group:"))
    with pytest.raises(MediaOfferInvalid, match="bundle"):
        await backend.add_publisher("r", "hall", unbundled, role="hall")
    no_codec = offer.replace("VP8/90000", "XP8/90000").replace("opus/48000", "xopus/48000")
    with pytest.raises((MediaCodecUnsupported, MediaOfferInvalid)):
        await backend.add_publisher("r", "hall", no_codec, role="hall")
    assert member.publisher is working
    frames = rx.logs["program/video"].frames
    await until(lambda: rx.logs["program/video"].frames > frames + 10)
    await again.close()
    await hall.close()
    await rx.close()


class SwitchingPacer(Pacer):
    """Runs one armed action at the next yield point of a fan-out: a floor switch that lands
    exactly while a source is between two of its sinks."""

    def __init__(self) -> None:
        super().__init__(budget_s=0.0)
        self.armed: Callable[[], Awaitable[None]] | None = None

    async def checkpoint(self) -> None:
        action, self.armed = self.armed, None
        if action is not None:
            await action()
        await super().checkpoint()


async def test_switching_the_floor_mid_fan_out_loses_no_subscriber() -> None:
    """The old source's packet must not go to a sink already moved to the new source: SRTP would
    refuse it as a replay and, before the fix, the rest of that fan-out stopped with it."""
    pacer = SwitchingPacer()
    media = EmbeddedMedia(pacer=pacer)
    await media.create_room("r")
    peers: list[PublisherClient | SubscriberClient] = []
    try:
        for name, level in (("a", 2000), ("b", 6000)):
            tx = PublisherClient(video=False, amplitude=level)
            peers.append(tx)
            answer = await media.add_publisher("r", name, await tx.offer(), role="point")
            await tx.accept(answer.sdp)
        listeners = []
        for i in range(4):
            rx = SubscriberClient(("floor",))
            peers.append(rx)
            answer = await media.add_subscriber("r", f"l{i}", await rx.offer(), slots=("floor",))
            await rx.accept(answer.sdp)
            listeners.append(rx)
        await media.route("r", {SinkKey(ANY, "floor"): "a"})
        for rx in listeners:
            await until(lambda rx=rx: len(rx.logs["floor/audio"].levels) > 10)
        switched = time.monotonic()

        async def switch() -> None:
            await media.route("r", {SinkKey(ANY, "floor"): "b"})

        pacer.armed = switch
        await until(lambda: pacer.armed is None)
        old = media.rooms["r"].participants["a"].sources["audio"]
        assert old.stale_skips >= 1  # the switch did land inside a fan-out
        for rx in listeners:
            await until(
                lambda rx=rx: (
                    rx.logs["floor/audio"].first_level_after(switched, 3000, 1e9) is not None
                )
            )
        for name, member in media.rooms["r"].participants.items():
            if name.startswith("l"):
                raw = member.sinks[("floor", "audio")].raw
                assert raw is not None
                assert raw.errors == 0
    finally:
        for peer in peers:
            await peer.close()
        await media.stop()
