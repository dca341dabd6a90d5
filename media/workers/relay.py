"""Cross-worker media: a source published on one worker reaching sinks on the others.

A participant's peer connections live on one worker, but the floor and the program go to sinks on
every worker. The worker that holds a publisher ("origin") sends the plain RTP of each of its
sources, as the publisher sent it (decrypted, not rewritten), to every worker the pool names as a
target for that source; a receiving worker feeds it into a `RelaySource`, which its sinks treat as
any other source. So keyframe gating, header rewriting, sender reports and NACK history stay in the
sink, exactly as on one loop, and nothing is decoded or encoded on either side.

Transport: one UDP socket per worker on 127.0.0.1. A datagram carries one RTP payload plus a small
header (stream: origin worker, room, participant, kind; codec; sequence number, timestamp, marker,
audio level, keyframe flag). Datagrams are accepted only from the other workers' relay addresses
(spoofing a loopback source address needs root). Keyframe requests from a receiving worker's sinks
travel back as datagrams and go through the origin's coalesced `Source.request_keyframe`; the
publisher's sender reports travel forward, so subscribers on every worker get the same lip-sync
mapping.

Bounds: the socket's send buffer (a datagram that does not fit is dropped and counted), and a queue per
relayed source at the receiver (drop-newest, counted, with a keyframe request so the picture
recovers). Loss inside the kernel shows as gaps in a per-target relay sequence number.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiortc.rtp import RtpPacket

from media.embedded import hooks
from media.embedded.backend import EmbeddedMedia, Participant
from media.embedded.forwarding import CLOCK_RATES, COUNTERS, Pacer, Sink, Source
from media.interface import KINDS, Kind, KindStats

logger = logging.getLogger("diemcau.media.relay")

Address = tuple[str, int]
StreamKey = tuple[str, str]
"""(room, participant)"""

TYPE_RTP = 1
TYPE_SENDER_REPORT = 2
TYPE_KEYFRAME = 3

FLAG_MARKER = 0x01
FLAG_KEYFRAME = 0x02
FLAG_AUDIO_LEVEL = 0x04
FLAG_VAD = 0x08

# type, kind, flags, audio level, seq, timestamp, epoch, relay seq, sent at (monotonic, shared by
# every process of the machine)
_RTP = struct.Struct("!BBBBHIIId")
# type, kind, epoch, NTP, RTP timestamp, arrival at the origin (monotonic)
_SENDER_REPORT = struct.Struct("!BBIQId")
_KEYFRAME = struct.Struct("!BB")
# origin worker, length of the room name, length of the participant name
_STREAM = struct.Struct("!BHH")
_CODEC = struct.Struct("!B")

QUEUE_PACKETS = 1024
"""Per relayed source at the receiver: ~7 s of a 1.2 Mb/s video stream, far beyond a keyframe."""
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
GAP_LIMIT = 4096
"""A larger jump in a relay sequence is a restarted stream, not loss."""


@dataclass(slots=True)
class RelayStats:
    """One worker's relay counters (`WorkerPool.relay_stats`)."""

    sent_packets: int = 0
    sent_bytes: int = 0
    send_drops: int = 0
    received_packets: int = 0
    queue_drops: int = 0
    lost: int = 0
    rejected: int = 0
    malformed: int = 0
    ignored: int = 0
    keyframe_requests_out: int = 0
    keyframe_requests_in: int = 0
    sender_reports_in: int = 0
    latency_samples: int = 0
    latency_sum_s: float = 0.0
    latency_max_s: float = 0.0
    remote_sources: int = 0

    def note_latency(self, seconds: float) -> None:
        self.latency_samples += 1
        self.latency_sum_s += seconds
        self.latency_max_s = max(self.latency_max_s, seconds)


def encode_stream(origin: int, room: str, participant: str) -> bytes:
    room_bytes, participant_bytes = room.encode(), participant.encode()
    return (
        _STREAM.pack(origin, len(room_bytes), len(participant_bytes))
        + room_bytes
        + participant_bytes
    )


def decode_stream(data: bytes, offset: int) -> tuple[int, str, str, int]:
    origin, room_size, participant_size = _STREAM.unpack_from(data, offset)
    offset += _STREAM.size
    room = data[offset : offset + room_size].decode()
    offset += room_size
    participant = data[offset : offset + participant_size].decode()
    offset += participant_size
    if offset > len(data):
        raise ValueError("truncated relay datagram")
    return origin, room, participant, offset


def encode_codec(mime: str, key: str, name: str) -> bytes:
    blob = "\x00".join((mime, key, name)).encode()
    return _CODEC.pack(len(blob)) + blob


@dataclass(frozen=True, slots=True)
class Codec:
    mime: str
    key: str
    name: str


@dataclass(slots=True)
class RelayedPacket:
    packet: RtpPacket
    keyframe: bool
    codec: Codec
    sent_at: float


class RemoteParticipant(Participant):
    """A participant published on another worker, present here only through its relayed sources.

    It has no peer connection here; the worker leaves it out of its stats and replaces it as soon
    as the participant negotiates on this worker.
    """


class RelaySink(Sink):
    """The origin side: one more consumer of a local source, sending its packets to other workers.

    It joins `Source.sinks` so the source's own forwarding loop feeds it; `Sink.__init__` is not
    run because there is no subscriber m-line behind it (no SSRC, history or RTCP of its own).
    """

    def __init__(self, relay: Relay, room: str, source: Source, epoch: int) -> None:
        self.participant = source.participant
        self.slot = "relay"
        self.kind = source.kind
        self.source = source
        self.waiting_keyframe = False
        self.stats = KindStats()
        self.relay = relay
        self.key: StreamKey = (room, source.participant)
        self.kind_code = KINDS.index(source.kind)
        self.epoch = epoch
        self.stream = encode_stream(relay.worker, room, source.participant)
        self.codec_key: str | None = None
        self.codec_block = b""
        self.sender_report: tuple[int, int, float] | None = None
        self.relay_seqs: dict[Address, int] = {}

    async def forward(
        self, source: Source, packet: RtpPacket, keyframe: bool, now: float, ntp: int
    ) -> int:
        """Returns 0: relayed packets are not the source's own forwarded output."""
        addresses = self.relay.targets.get(self.key)
        if addresses:
            self.relay.send_rtp(self, source, packet, keyframe, addresses)
        return 0


class RelaySource(Source):
    """The receiving side: looks like a `Source` to this worker's sinks, fed by datagrams.

    `Source.__init__` is not run: there is no receiver to hook here. The attributes sinks read are
    set below; keyframe requests go back to the origin worker instead of upstream as a PLI.
    """

    KEYFRAME_REQUEST_INTERVAL_S = 0.25
    """Below the origin's own coalescing (0.5 s), so this hop adds no noticeable delay."""

    def __init__(
        self,
        relay: Relay,
        room: str,
        participant: str,
        kind: Kind,
        *,
        origin: int,
        epoch: int,
        origin_address: Address,
        pacer: Pacer,
        capacity: int,
    ) -> None:
        self.participant = participant
        self.kind = kind
        self.pacer = pacer
        self.clock_rate = CLOCK_RATES[kind]
        self.sinks: list[Sink] = []
        self.ssrc = None
        self.codec_name = None
        self.codec_key = None
        self.sr = None
        self.last_pli = 0.0
        self.pending_pli = False
        self.stats = KindStats()
        self.closed = False
        self.relay = relay
        self.room = room
        self.origin = origin
        self.epoch = epoch
        self.origin_address = origin_address
        self.capacity = capacity
        self.keyframe_request = _KEYFRAME.pack(TYPE_KEYFRAME, KINDS.index(kind)) + encode_stream(
            relay.worker, room, participant
        )
        self.next_relay_seq: int | None = None
        self.needs_keyframe = False
        self.codec: Codec | None = None
        self.queue: deque[RelayedPacket] = deque()
        self.wakeup = asyncio.Event()
        self.attached = asyncio.Event()
        self.task = asyncio.ensure_future(self._drain())

    def push(self, item: RelayedPacket, relay_seq: int) -> None:
        if self.closed:
            return
        if self.next_relay_seq is not None:
            gap = (relay_seq - self.next_relay_seq) & 0xFFFFFFFF
            if 0 < gap < GAP_LIMIT:
                self.relay.stats.lost += gap
                self.needs_keyframe = True
        self.next_relay_seq = (relay_seq + 1) & 0xFFFFFFFF
        if len(self.queue) >= self.capacity:
            self.stats.dropped += 1
            self.relay.stats.queue_drops += 1
            self.needs_keyframe = True
            return
        self.queue.append(item)
        self.wakeup.set()

    async def _drain(self) -> None:
        await self.attached.wait()
        while not self.closed:
            if not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            await self._fan_out(self.queue.popleft())

    async def _fan_out(self, item: RelayedPacket) -> None:
        started = time.thread_time()
        packet = item.packet
        self.stats.packets_in += 1
        self.stats.bytes_in += len(packet.payload)
        if item.codec != self.codec:
            self.codec = item.codec
            self.codec_name = item.codec.name
            self.codec_key = item.codec.key
            self.stats.codec = item.codec.mime
        now = time.monotonic()
        self.relay.stats.note_latency(now - item.sent_at)
        if self.kind == "video":
            if item.keyframe:
                self.stats.keyframes += 1
                self.needs_keyframe = False
            elif self.needs_keyframe or any(sink.waiting_keyframe for sink in self.sinks):
                await self.request_keyframe()
        if self.sinks:
            self.pacer.idle()
            ntp = hooks.ntp_now()
            for sink in list(self.sinks):
                sent = await sink.forward(self, packet, item.keyframe, now, ntp)
                if sent:
                    self.stats.packets_out += 1
                    self.stats.bytes_out += sent
                await self.pacer.checkpoint()
        COUNTERS.forward_cpu_s += time.thread_time() - started

    async def request_keyframe(self) -> None:
        """Ask the origin worker, which coalesces requests from every worker into one PLI."""
        if self.kind != "video" or self.closed:
            return
        now = time.monotonic()
        if now - self.last_pli < self.KEYFRAME_REQUEST_INTERVAL_S:
            return
        self.last_pli = now
        self.stats.plis_up += 1
        self.relay.send_keyframe_request(self)

    def close(self) -> None:
        super().close()
        self.queue.clear()
        self.wakeup.set()
        self.task.cancel()


class Relay(asyncio.DatagramProtocol):
    """One worker's end of the relay: sends its sources' packets, receives the others'."""

    def __init__(
        self, worker: int, media: EmbeddedMedia, *, queue_packets: int = QUEUE_PACKETS
    ) -> None:
        self.worker = worker
        self.media = media
        self.queue_packets = queue_packets
        self.transport: asyncio.BaseTransport | None = None
        self.sock: socket.socket | None = None
        self.address: Address | None = None
        self.peers: dict[int, Address] = {}
        self.peer_addresses: set[Address] = set()
        self.target_workers: dict[StreamKey, tuple[int, ...]] = {}
        self.targets: dict[StreamKey, tuple[Address, ...]] = {}
        self.remote: dict[tuple[str, str, Kind], RelaySource] = {}
        self.stats = RelayStats()
        self.epochs = itertools.count(1)
        self.tasks: set[asyncio.Task[None]] = set()
        self.refreshing: set[str] = set()
        self.dirty: set[str] = set()

    # ---- socket ---------------------------------------------------------------------------

    async def open(self, host: str = "127.0.0.1") -> Address:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        sock.bind((host, 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.sock = sock
        name = sock.getsockname()
        self.address = (str(name[0]), int(name[1]))
        return self.address

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def error_received(self, exc: Exception) -> None:
        """ICMP errors for a peer that just died: its datagrams are lost, nothing else to do."""
        self.stats.send_drops += 1

    def close(self) -> None:
        for source in list(self.remote.values()):
            source.close()
        self.remote.clear()
        for task in list(self.tasks):
            task.cancel()
        self.sock = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # ---- what the pool tells this worker ------------------------------------------------------

    def set_peers(self, peers: dict[int, Address]) -> None:
        self.peers = {index: address for index, address in peers.items() if index != self.worker}
        self.peer_addresses = set(self.peers.values())
        for key, workers in self.target_workers.items():
            self.targets[key] = self._addresses(workers)

    def set_targets(self, room: str, targets: dict[str, Sequence[int]]) -> None:
        """Which workers want each of this worker's publishers in `room` (empty: none)."""
        for participant, workers in targets.items():
            key = (room, participant)
            if workers:
                self.target_workers[key] = tuple(workers)
                self.targets[key] = self._addresses(workers)
            else:
                self.target_workers.pop(key, None)
                self.targets.pop(key, None)

    def _addresses(self, workers: Sequence[int]) -> tuple[Address, ...]:
        return tuple(self.peers[w] for w in workers if w != self.worker and w in self.peers)

    def attach_local(self, room: str, participant: str) -> None:
        """After a local publisher negotiated: make its sources relayable."""
        found = self.media.rooms.get(room)
        member = found.participants.get(participant) if found is not None else None
        if member is None or isinstance(member, RemoteParticipant):
            return
        for source in member.sources.values():
            if isinstance(source, RelaySource) or any(
                isinstance(sink, RelaySink) for sink in source.sinks
            ):
                continue
            source.sinks.append(RelaySink(self, room, source, next(self.epochs)))

    async def make_local(self, room: str, participant: str) -> None:
        """Drop the relayed copy of a participant who is about to negotiate on this worker."""
        found = self.media.rooms.get(room)
        if found is not None and isinstance(found.participants.get(participant), RemoteParticipant):
            self._forget_remote(room, participant)
            await self.media.remove_participant(room, participant)

    def forget(self, room: str, participant: str) -> None:
        """The participant left the room: its relayed copy here, and where its sources went."""
        self._forget_remote(room, participant)
        self.target_workers.pop((room, participant), None)
        self.targets.pop((room, participant), None)

    def _forget_remote(self, room: str, participant: str) -> None:
        """Keeps the targets: the pool sends them before a participant negotiates here."""
        for kind in KINDS:
            source = self.remote.pop((room, participant, kind), None)
            if source is not None:
                source.close()

    def forget_room(self, room: str) -> None:
        for key in [key for key in self.remote if key[0] == room]:
            self.remote.pop(key).close()
        for stream in [stream for stream in self.target_workers if stream[0] == room]:
            self.target_workers.pop(stream, None)
            self.targets.pop(stream, None)

    def is_remote(self, room: str, participant: str) -> bool:
        found = self.media.rooms.get(room)
        return found is not None and isinstance(
            found.participants.get(participant), RemoteParticipant
        )

    def snapshot(self) -> RelayStats:
        self.stats.remote_sources = len(self.remote)
        return self.stats

    # ---- sending -----------------------------------------------------------------------------

    def send_rtp(
        self,
        sink: RelaySink,
        source: Source,
        packet: RtpPacket,
        keyframe: bool,
        addresses: tuple[Address, ...],
    ) -> None:
        if self.sock is None:
            return
        if source.codec_key != sink.codec_key:
            sink.codec_key = source.codec_key
            sink.codec_block = encode_codec(
                source.stats.codec or "", source.codec_key or "", source.codec_name or ""
            )
        if source.sr is not None and source.sr is not sink.sender_report:
            sink.sender_report = source.sr
            ntp, rtp, arrival = source.sr
            report = (
                _SENDER_REPORT.pack(
                    TYPE_SENDER_REPORT, sink.kind_code, sink.epoch, ntp, rtp, arrival
                )
                + sink.stream
            )
            for address in addresses:
                self._send(report, address)
        flags = (FLAG_MARKER if packet.marker else 0) | (FLAG_KEYFRAME if keyframe else 0)
        level = 0
        audio_level = packet.extensions.audio_level
        if audio_level is not None:
            vad, level = audio_level
            flags |= FLAG_AUDIO_LEVEL | (FLAG_VAD if vad else 0)
        tail = sink.stream + sink.codec_block + packet.payload
        sent_at = time.monotonic()
        seqs = sink.relay_seqs
        for address in addresses:
            seq = seqs.get(address, 0)
            seqs[address] = (seq + 1) & 0xFFFFFFFF
            header = _RTP.pack(
                TYPE_RTP,
                sink.kind_code,
                flags,
                level & 0x7F,
                packet.sequence_number,
                packet.timestamp,
                sink.epoch,
                seq,
                sent_at,
            )
            if self._send(header + tail, address):
                self.stats.sent_packets += 1
                self.stats.sent_bytes += len(header) + len(tail)

    def send_keyframe_request(self, source: RelaySource) -> None:
        self.stats.keyframe_requests_out += 1
        self._send(source.keyframe_request, source.origin_address)

    def _send(self, data: bytes, address: Address) -> bool:
        """Straight to the socket: a full send buffer drops the datagram (counted) instead of
        queueing it without bound in the transport."""
        sock = self.sock
        if sock is None:
            return False
        try:
            sock.sendto(data, address)
        except OSError:
            self.stats.send_drops += 1
            return False
        return True

    # ---- receiving ---------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if addr not in self.peer_addresses:
            self.stats.rejected += 1
            return
        try:
            kind_type = data[0]
            if kind_type == TYPE_RTP:
                self._on_rtp(data, addr)
            elif kind_type == TYPE_SENDER_REPORT:
                self._on_sender_report(data)
            elif kind_type == TYPE_KEYFRAME:
                self._on_keyframe_request(data)
            else:
                self.stats.malformed += 1
        except (struct.error, UnicodeDecodeError, ValueError, IndexError):
            self.stats.malformed += 1

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        (_, kind_code, flags, level, seq, ts, epoch, relay_seq, sent_at) = _RTP.unpack_from(data)
        origin, room, participant, offset = decode_stream(data, _RTP.size)
        (codec_size,) = _CODEC.unpack_from(data, offset)
        offset += _CODEC.size
        mime, key, name = data[offset : offset + codec_size].decode().split("\x00")
        offset += codec_size
        kind = KINDS[kind_code]
        self.stats.received_packets += 1
        source = self.remote.get((room, participant, kind))
        if source is None or source.origin != origin or source.epoch != epoch:
            if source is not None and source.origin_address == addr and epoch < source.epoch:
                self.stats.ignored += 1  # in flight from before a republish
                return
            source = self._open_remote(room, participant, kind, origin, epoch, addr)
            if source is None:
                self.stats.ignored += 1
                return
        packet = RtpPacket(
            marker=1 if flags & FLAG_MARKER else 0,
            sequence_number=seq,
            timestamp=ts,
            payload=data[offset:],
        )
        if flags & FLAG_AUDIO_LEVEL:
            packet.extensions.audio_level = (bool(flags & FLAG_VAD), level)
        codec = source.codec
        if codec is None or (codec.mime, codec.key, codec.name) != (mime, key, name):
            codec = Codec(mime, key, name)
        source.push(RelayedPacket(packet, bool(flags & FLAG_KEYFRAME), codec, sent_at), relay_seq)

    def _open_remote(
        self, room: str, participant: str, kind: Kind, origin: int, epoch: int, addr: Address
    ) -> RelaySource | None:
        """A relayed stream seen for the first time, or restarted (a republished source)."""
        found = self.media.rooms.get(room)
        if found is None:
            return None
        member = found.participants.get(participant)
        if member is None:
            member = RemoteParticipant(participant)
            found.participants[participant] = member
        elif not isinstance(member, RemoteParticipant):
            return None
        old = member.sources.get(kind)
        if old is not None:
            old.close()
        source = RelaySource(
            self,
            room,
            participant,
            kind,
            origin=origin,
            epoch=epoch,
            origin_address=addr,
            pacer=self.media.pacer,
            capacity=self.queue_packets,
        )
        member.sources[kind] = source
        self.remote[(room, participant, kind)] = source
        self._refresh_routes(room)
        return source

    def _refresh_routes(self, room: str) -> None:
        """Attach this room's sinks to new relayed sources, then let those sources forward.

        A new source holds its packets until this ran: the first packets relayed after a floor
        switch usually carry the keyframe the switch asked for, and forwarding them to no sink
        would cost the subscribers a whole keyframe interval.
        """
        self.dirty.add(room)
        if room in self.refreshing:
            return
        self.refreshing.add(room)

        async def refresh() -> None:
            waiting: list[RelaySource] = []
            try:
                while room in self.dirty:
                    self.dirty.discard(room)
                    waiting = [
                        source
                        for source in self.remote.values()
                        if source.room == room and not source.attached.is_set()
                    ]
                    await self.media.refresh_routes(room)
                    for source in waiting:
                        source.attached.set()
            finally:
                self.refreshing.discard(room)
                for source in waiting:
                    source.attached.set()

        self._spawn(refresh())

    def _on_sender_report(self, data: bytes) -> None:
        (_, kind_code, epoch, ntp, rtp, arrival) = _SENDER_REPORT.unpack_from(data)
        origin, room, participant, _ = decode_stream(data, _SENDER_REPORT.size)
        source = self.remote.get((room, participant, KINDS[kind_code]))
        if source is not None and source.origin == origin and source.epoch == epoch:
            source.sr = (ntp, rtp, arrival)
            self.stats.sender_reports_in += 1

    def _on_keyframe_request(self, data: bytes) -> None:
        (_, kind_code) = _KEYFRAME.unpack_from(data)
        _, room, participant, _ = decode_stream(data, _KEYFRAME.size)
        found = self.media.rooms.get(room)
        member = found.participants.get(participant) if found is not None else None
        if member is None or isinstance(member, RemoteParticipant):
            self.stats.ignored += 1
            return
        source = member.sources.get(KINDS[kind_code])
        if source is None:
            return
        self.stats.keyframe_requests_in += 1
        self._spawn(source.request_keyframe())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("relay task failed", exc_info=task.exception())
