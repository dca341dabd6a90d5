"""The embedded media backend: one asyncio loop holding whole peer connections of its rooms.

Used directly on the API's loop (`media_workers = 0`) and inside each forwarding process of the
worker pool. Rooms keep the desired route table, not only the live sinks: a route set before a
point connects (the floor, the program) applies the moment its peer comes up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.exceptions import OperationError

from media.embedded import hooks
from media.embedded.forwarding import COUNTERS, Pacer, Sink, Source, codec_key
from media.errors import (
    MediaCodecUnsupported,
    MediaOfferInvalid,
    MediaParticipantNotFound,
    MediaRoomNotFound,
)
from media.interface import (
    ANY,
    KINDS,
    BackendStats,
    Kind,
    ParticipantMediaStats,
    PeerAnswer,
    PeerState,
    PublisherRole,
    SinkKey,
)

logger = logging.getLogger("diemcau.media")

MAX_SLOTS = 4
LAG_PROBE_S = 0.01
MAX_SDP_BYTES = 64 * 1024
SUPPORTED_VIDEO = ("video/vp8", "video/h264")
SUPPORTED_AUDIO = ("audio/opus",)


def parse_offer(sdp: str) -> Any:
    """aiortc reports malformed SDP with whatever its parser trips on (ValueError, IndexError,
    AssertionError, StopIteration, ...) and takes some inconsistent offers only to fail later with
    a half-built peer: check what negotiation relies on here and make every refusal typed."""
    if len(sdp.encode()) > MAX_SDP_BYTES:
        raise MediaOfferInvalid(f"the offer is larger than {MAX_SDP_BYTES} bytes")
    try:
        description = aiortc_sdp.SessionDescription.parse(sdp)
    except Exception as exc:
        raise MediaOfferInvalid(f"the offer is not valid SDP: {exc!r}") from None
    if not description.media:
        raise MediaOfferInvalid("the offer has no media section")
    mids: list[str] = []
    for media in description.media:
        if media.kind not in KINDS:
            raise MediaOfferInvalid(
                f"the offer has a {media.kind!r} section: only audio and video are taken",
                details={"kind": str(media.kind)},
            )
        if media.ice is None or not media.ice.usernameFragment or not media.dtls:
            raise MediaOfferInvalid("the offer lacks ICE credentials or a DTLS fingerprint")
        if not media.rtp.muxId:
            raise MediaOfferInvalid("every section needs an a=mid")
        mids.append(str(media.rtp.muxId))
    if len(set(mids)) != len(mids):
        raise MediaOfferInvalid("two sections have the same a=mid", details={"mids": mids})
    bundled = [
        str(item)
        for group in description.group
        if group.semantic == "BUNDLE"
        for item in group.items
    ]
    if not set(bundled) <= set(mids):
        raise MediaOfferInvalid(
            "the BUNDLE group names a section the offer does not have",
            details={"bundle": bundled, "mids": mids},
        )
    if len(mids) > 1 and not set(mids) <= set(bundled):
        raise MediaOfferInvalid(
            "the offer must bundle its sections (BUNDLE group, bundlePolicy max-bundle)"
        )
    return description


def _capabilities(kind: Kind, keep: Sequence[str]) -> list[Any]:
    return [
        codec
        for codec in RTCRtpSender.getCapabilities(kind).codecs
        if codec.mimeType.lower() in keep
    ]


@dataclass
class Participant:
    name: str
    publisher: RTCPeerConnection | None = None
    role: PublisherRole | None = None
    sources: dict[Kind, Source] = field(default_factory=dict)
    subscriber: RTCPeerConnection | None = None
    sinks: dict[tuple[str, Kind], Sink] = field(default_factory=dict)
    slots: tuple[str, ...] = ()


@dataclass
class Room:
    name: str
    participants: dict[str, Participant] = field(default_factory=dict)
    defaults: dict[str, str | None] = field(default_factory=dict)
    overrides: dict[SinkKey, str | None] = field(default_factory=dict)

    def source_name(self, participant: str, slot: str) -> str | None:
        key = SinkKey(participant, slot)
        name = self.overrides[key] if key in self.overrides else self.defaults.get(slot)
        return None if name == participant else name


def _state(pc: RTCPeerConnection | None) -> PeerState | None:
    if pc is None:
        return None
    state = pc.connectionState
    return state if state in ("new", "connecting", "connected", "failed", "closed") else "new"  # type: ignore[return-value]


class EmbeddedMedia:
    """Implements `media.interface.MediaBackend` on the running event loop."""

    def __init__(
        self,
        *,
        configuration: Callable[[], RTCConfiguration] | None = None,
        worker: int = 0,
        pacer: Pacer | None = None,
    ) -> None:
        hooks.check_version()
        self._configuration = configuration or (lambda: RTCConfiguration(iceServers=[]))
        self.worker = worker
        self.pacer = pacer or Pacer()
        self.rooms: dict[str, Room] = {}
        self._lag_task: asyncio.Task[None] | None = None
        self.loop_lag_max_s = 0.0

    async def start(self) -> None:
        if self._lag_task is None:
            self._lag_task = asyncio.get_running_loop().create_task(self._watch_loop())

    async def _watch_loop(self) -> None:
        """How late a 10 ms timer fires: what a keyframe burst or anything else costs the loop."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            self.loop_lag_max_s = max(self.loop_lag_max_s, loop.time() - due)

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        for name in list(self.rooms):
            await self.close_room(name)

    async def create_room(self, room: str) -> None:
        self.rooms.setdefault(room, Room(room))

    async def close_room(self, room: str) -> None:
        found = self.rooms.pop(room, None)
        if found is None:
            return
        for participant in list(found.participants.values()):
            await self._close_participant(participant)

    def _room(self, room: str) -> Room:
        found = self.rooms.get(room)
        if found is None:
            raise MediaRoomNotFound(f"no media room {room!r}", details={"room": room})
        return found

    # ---- publishers --------------------------------------------------------------------

    async def add_publisher(
        self, room: str, participant: str, offer_sdp: str, *, role: PublisherRole
    ) -> PeerAnswer:
        target = self._room(room)
        description = parse_offer(offer_sdp)
        kinds: list[Kind] = []
        for media in description.media:
            if media.kind not in KINDS:
                continue
            if media.kind in kinds:
                raise MediaOfferInvalid("a publisher sends at most one audio and one video track")
            if media.direction not in ("sendonly", "sendrecv"):
                raise MediaOfferInvalid(f"the {media.kind} section does not send media")
            kinds.append(media.kind)
        if not kinds:
            raise MediaOfferInvalid("the offer sends neither audio nor video")
        member = target.participants.setdefault(participant, Participant(participant))
        pc = self._peer()
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            if kind == "audio":
                transceiver.setCodecPreferences(_capabilities("audio", SUPPORTED_AUDIO))
            else:
                transceiver.setCodecPreferences(
                    _capabilities("video", (*SUPPORTED_VIDEO, "video/rtx"))
                )
        sources: dict[Kind, Source] = {}
        try:
            await self._apply_offer(pc, offer_sdp)
            for transceiver in pc.getTransceivers():
                sources[transceiver.kind] = Source(  # type: ignore[index]
                    participant,
                    transceiver.kind,  # type: ignore[arg-type]
                    transceiver.receiver,
                    self.pacer,
                )
            answer = await self._answer(pc)
        except BaseException:
            for source in sources.values():
                source.close()
            await self._discard(pc)
            raise
        # Only a new publication that negotiated replaces the old one: a refused offer costs nothing.
        await self._close_publisher(member)
        member.sources = sources
        member.publisher = pc
        member.role = role
        self._watch(target, member, pc, publisher=True)
        await self._apply_routes(target)
        codecs = {kind: hooks.negotiated(t)[0][0].mimeType for kind, t in self._by_kind(pc).items()}
        return PeerAnswer(answer, f"{participant}/pub", tuple(kinds), codecs, self.worker)

    # ---- subscribers -------------------------------------------------------------------

    async def add_subscriber(
        self, room: str, participant: str, offer_sdp: str, *, slots: Sequence[str]
    ) -> PeerAnswer:
        target = self._room(room)
        if not slots or len(slots) > MAX_SLOTS or len(set(slots)) != len(slots):
            raise MediaOfferInvalid(f"give 1 to {MAX_SLOTS} distinct slots")
        description = parse_offer(offer_sdp)
        counts = {kind: 0 for kind in KINDS}
        for media in description.media:
            if media.kind not in KINDS:
                continue
            if media.direction not in ("recvonly", "sendrecv"):
                raise MediaOfferInvalid(f"a subscriber's {media.kind} section must receive")
            counts[media.kind] += 1
        if counts["audio"] != len(slots) or counts["video"] != len(slots):
            raise MediaOfferInvalid(
                f"the offer must hold one audio and one video section per slot ({len(slots)} each)",
                details={"audio": counts["audio"], "video": counts["video"]},
            )
        member = target.participants.setdefault(participant, Participant(participant))
        pc = self._peer()
        sinks: dict[tuple[str, Kind], Sink] = {}
        for slot in slots:
            for kind in KINDS:
                transceiver = pc.addTransceiver(kind, direction="sendonly")
                self._prefer_source_codec(target, participant, slot, transceiver)
                sinks[(slot, kind)] = Sink(participant, slot, kind, transceiver)
        try:
            await self._apply_offer(pc, offer_sdp)
            answer = await self._answer(pc)
        except BaseException:
            await self._discard(pc)
            raise
        await self._close_subscriber(member)
        member.subscriber = pc
        member.sinks = sinks
        member.slots = tuple(slots)
        self._watch(target, member, pc, publisher=False)
        await self._apply_routes(target)
        codecs = {kind: hooks.negotiated(t)[0][0].mimeType for kind, t in self._by_kind(pc).items()}
        return PeerAnswer(answer, f"{participant}/sub", KINDS, codecs, self.worker)

    def _prefer_source_codec(
        self, room: Room, participant: str, slot: str, transceiver: RTCRtpTransceiver
    ) -> None:
        """Offer the routed source's codec first, and every other forwardable one after it.

        Any of them may be routed later (the floor passes to a point whose browser sends H264):
        the subscriber gets each source's packets with that codec's payload type, never transcoded.
        """
        kind: Kind = transceiver.kind  # type: ignore[assignment]
        keep = SUPPORTED_AUDIO if kind == "audio" else SUPPORTED_VIDEO
        capabilities = _capabilities(kind, keep)
        name = room.source_name(participant, slot)
        source = room.participants[name].sources.get(kind) if name in room.participants else None
        if source is not None and source.codec_key is not None:
            capabilities.sort(key=lambda codec: codec_key(codec) != source.codec_key)
        transceiver.setCodecPreferences(capabilities)

    # ---- shared negotiation ------------------------------------------------------------

    def _peer(self) -> RTCPeerConnection:
        """Max-bundle: aiortc's balanced policy gives a second m-line of the same kind, added
        before the offer, a transport that BUNDLE never replaces (it stays "new" and its media is
        lost). Every browser bundles, so one transport per peer is also what clients do."""
        configuration = dataclasses.replace(
            self._configuration(), bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
        )
        return RTCPeerConnection(configuration)

    async def _apply_offer(self, pc: RTCPeerConnection, offer_sdp: str) -> None:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except OperationError as exc:
            raise MediaCodecUnsupported(
                "no codec in common: the server forwards VP8 or H264 video and Opus audio",
                details={"reason": str(exc)},
            ) from exc
        except Exception as exc:  # aiortc refuses inconsistent offers with assorted errors
            raise MediaOfferInvalid(f"the offer was refused: {exc!r}") from exc

    async def _answer(self, pc: RTCPeerConnection) -> str:
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            raise MediaOfferInvalid(f"the offer cannot be answered: {exc!r}") from exc
        local = pc.localDescription
        assert local is not None
        return str(local.sdp)

    @staticmethod
    async def _discard(pc: RTCPeerConnection) -> None:
        """Close a peer that failed to negotiate; it may be half-built, and closing it must not
        hide the error that is being reported."""
        try:
            await pc.close()
        except Exception:
            logger.warning("a half-negotiated peer connection failed to close", exc_info=True)

    @staticmethod
    def _by_kind(pc: RTCPeerConnection) -> dict[Kind, RTCRtpTransceiver]:
        found: dict[Kind, RTCRtpTransceiver] = {}
        for transceiver in pc.getTransceivers():
            found.setdefault(transceiver.kind, transceiver)  # type: ignore[arg-type]
        return found

    def _watch(
        self, room: Room, member: Participant, pc: RTCPeerConnection, *, publisher: bool
    ) -> None:
        @pc.on("connectionstatechange")
        async def changed() -> None:
            state = pc.connectionState
            if state == "connected" and not publisher and member.subscriber is pc:
                for sink in member.sinks.values():
                    sink.activate(sink.sender.transport)
                    if sink.source is not None:
                        await sink.source.request_keyframe()
            elif state in ("failed", "closed"):
                if publisher and member.publisher is pc:
                    await self._close_publisher(member)
                elif not publisher and member.subscriber is pc:
                    await self._close_subscriber(member)

    # ---- routes ------------------------------------------------------------------------

    async def route(self, room: str, routes: Mapping[SinkKey, str | None]) -> None:
        target = self._room(room)
        for key, source in routes.items():
            if key.participant == ANY:
                target.defaults[key.slot] = source
            else:
                target.overrides[key] = source
        await self._apply_routes(target)

    async def _apply_routes(self, room: Room) -> None:
        wanted: set[Source] = set()
        for member in room.participants.values():
            for (slot, kind), sink in member.sinks.items():
                name = room.source_name(member.name, slot)
                publisher = room.participants.get(name) if name is not None else None
                source = publisher.sources.get(kind) if publisher is not None else None
                if sink.attach(source) and source is not None:
                    wanted.add(source)
        for source in wanted:
            await source.request_keyframe()

    async def refresh_routes(self, room: str) -> None:
        """Re-attach the room's sinks after sources appeared outside a negotiation.

        A worker pool adds sources relayed from other workers as their first packet arrives; their
        routes were set long before, and this applies them.
        """
        target = self.rooms.get(room)
        if target is not None:
            await self._apply_routes(target)

    async def request_keyframe(self, room: str, participant: str) -> None:
        member = self._room(room).participants.get(participant)
        if member is None:
            raise MediaParticipantNotFound(f"{participant!r} is not in the media room")
        source = member.sources.get("video")
        if source is not None:
            await source.request_keyframe()

    # ---- leaving -----------------------------------------------------------------------

    async def remove_participant(self, room: str, participant: str) -> None:
        target = self.rooms.get(room)
        if target is None:
            return
        member = target.participants.pop(participant, None)
        if member is not None:
            await self._close_participant(member)

    async def remove_publisher(self, room: str, participant: str) -> None:
        await self._remove_part(room, participant, publisher=True)

    async def remove_subscriber(self, room: str, participant: str) -> None:
        await self._remove_part(room, participant, publisher=False)

    async def _remove_part(self, room: str, participant: str, *, publisher: bool) -> None:
        target = self.rooms.get(room)
        member = target.participants.get(participant) if target is not None else None
        if target is None or member is None:
            return
        if publisher:
            await self._close_publisher(member)
        else:
            await self._close_subscriber(member)
        if member.publisher is None and member.subscriber is None:
            target.participants.pop(participant, None)

    async def _close_participant(self, member: Participant) -> None:
        await self._close_publisher(member)
        await self._close_subscriber(member)

    async def _close_publisher(self, member: Participant) -> None:
        for source in member.sources.values():
            source.close()
        member.sources = {}
        pc, member.publisher = member.publisher, None
        if pc is not None:
            await pc.close()

    async def _close_subscriber(self, member: Participant) -> None:
        for sink in member.sinks.values():
            sink.detach()
        member.sinks = {}
        pc, member.subscriber = member.subscriber, None
        if pc is not None:
            await pc.close()

    # ---- stats -------------------------------------------------------------------------

    async def stats(self, room: str) -> Mapping[str, ParticipantMediaStats]:
        target = self._room(room)
        result: dict[str, ParticipantMediaStats] = {}
        for member in target.participants.values():
            stats = ParticipantMediaStats(
                participant=member.name,
                worker=self.worker,
                publisher_state=_state(member.publisher),
                subscriber_state=_state(member.subscriber),
            )
            for kind, source in member.sources.items():
                stats.published[kind] = source.stats
            for (slot, kind), sink in member.sinks.items():
                stats.received[f"{slot}/{kind}"] = sink.stats
            for slot in member.slots:
                stats.routes[slot] = target.source_name(member.name, slot)
            result[member.name] = stats
        return result

    async def backend_stats(self) -> BackendStats:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        peers = sum(
            (m.publisher is not None) + (m.subscriber is not None)
            for room in self.rooms.values()
            for m in room.participants.values()
        )
        decoders, encoders = self.codec_objects()
        return BackendStats(
            workers=1,
            peers=peers,
            forwarded_packets=COUNTERS.forwarded_packets,
            forward_cpu_s=COUNTERS.forward_cpu_s,
            decoders_created=decoders,
            encoders_created=encoders,
            cpu_s=usage.ru_utime + usage.ru_stime,
            loop_lag_max_s=self._take_lag(),
        )

    def _take_lag(self) -> float:
        lag, self.loop_lag_max_s = self.loop_lag_max_s, 0.0
        return lag

    def codec_objects(self) -> tuple[int, int]:
        """Decoders and encoders on this backend's own peers (both must be zero).

        Counted on the peers, not process-wide, so that clients sharing the process (tests, the
        benchmark's own peers) do not count, and no aiortc function is patched globally for it.
        """
        decoders = encoders = 0
        for room in self.rooms.values():
            for member in room.participants.values():
                for pc in (member.publisher, member.subscriber):
                    if pc is None:
                        continue
                    for transceiver in pc.getTransceivers():
                        decoders += hooks.has_decoder(transceiver.receiver)
                        encoders += hooks.has_encoder(transceiver.sender)
        return decoders, encoders
