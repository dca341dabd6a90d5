"""The one interface signaling and WHIP call; the embedded forwarder and a worker pool implement it.

Identities are opaque strings the app issues (a participant id comes from a credential or a staff
token, never from a client's message). A participant publishes at most one audio and one video
track (its *source*) and may subscribe with named *slots*: each slot is an audio and a video m-line
in its offer, in the order the slots are listed, and receives whatever source is routed to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Kind = Literal["audio", "video"]
KINDS: tuple[Kind, Kind] = ("audio", "video")
PublisherRole = Literal["hall", "point"]
ANY = "*"
"""The participant of a default route (`SinkKey(ANY, "floor")`)."""
PeerState = Literal["new", "connecting", "connected", "failed", "closed"]


@dataclass(frozen=True, slots=True)
class SinkKey:
    """One subscriber slot: both kinds of it follow the same route."""

    participant: str
    slot: str


@dataclass(frozen=True, slots=True)
class PeerAnswer:
    sdp: str
    peer_id: str
    kinds: tuple[Kind, ...]
    codecs: Mapping[Kind, str]
    worker: int = 0


@dataclass(slots=True)
class KindStats:
    packets_in: int = 0
    bytes_in: int = 0
    packets_out: int = 0
    bytes_out: int = 0
    dropped: int = 0
    nacks_in: int = 0
    retransmits: int = 0
    plis_in: int = 0
    plis_up: int = 0
    keyframes: int = 0
    codec: str | None = None


@dataclass(slots=True)
class ParticipantMediaStats:
    participant: str
    worker: int
    publisher_state: PeerState | None = None
    subscriber_state: PeerState | None = None
    published: dict[str, KindStats] = field(default_factory=dict)
    received: dict[str, KindStats] = field(default_factory=dict)
    routes: dict[str, str | None] = field(default_factory=dict)


@dataclass(slots=True)
class BackendStats:
    """Whole-backend counters; `decoders_created`/`encoders_created` must stay zero."""

    workers: int
    peers: int
    forwarded_packets: int
    forward_cpu_s: float
    decoders_created: int
    encoders_created: int
    cpu_s: float
    loop_lag_max_s: float = 0.0
    """The longest a forwarding loop was held (a 10 ms timer's overshoot), since the previous
    `backend_stats` call: the fan-out is paced so that this stays well under 20 ms."""


class MediaBackend(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def create_room(self, room: str) -> None: ...

    async def close_room(self, room: str) -> None:
        """Closes every peer in the room; unknown rooms are ignored."""
        ...

    async def add_publisher(
        self, room: str, participant: str, offer_sdp: str, *, role: PublisherRole
    ) -> PeerAnswer:
        """Replaces the participant's earlier publisher, if any (a rebuilt peer connection)."""
        ...

    async def add_subscriber(
        self, room: str, participant: str, offer_sdp: str, *, slots: Sequence[str]
    ) -> PeerAnswer:
        """Each slot takes an audio and a video m-line of the offer, in order."""
        ...

    async def remove_participant(self, room: str, participant: str) -> None: ...

    async def remove_publisher(self, room: str, participant: str) -> None:
        """Close only what the participant sends (a WHIP program ends, the hall page keeps its
        floor view); unknown rooms and participants are ignored."""
        ...

    async def remove_subscriber(self, room: str, participant: str) -> None:
        """Close only what the participant receives."""
        ...

    async def route(self, room: str, routes: Mapping[SinkKey, str | None]) -> None:
        """Set where slots take media from: a publishing participant, or None for silence.

        Unlisted slots keep their route. `SinkKey(ANY, slot)` sets the default for that slot of every
        subscriber (one call moves the floor for thousands of points); a key naming a participant
        overrides the default for it. A route may name a slot or source that has not joined yet: it
        applies as soon as both are there. A subscriber never receives its own source. Changing a
        route requests a keyframe from the new source.
        """
        ...

    async def request_keyframe(self, room: str, participant: str) -> None: ...

    async def stats(self, room: str) -> Mapping[str, ParticipantMediaStats]: ...

    async def backend_stats(self) -> BackendStats: ...
