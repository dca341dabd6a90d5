"""The live protocol (version 1): every message a client or the server sends, as pydantic models.

Messages are JSON objects discriminated by `type`. Client requests carry an `id` and get exactly one
`ack` or `error` with that id. Server events carry the session `seq`. docs/protocol.md is the prose
contract; docs/protocol.schema.json is generated from these models (`diemcau protocol schema`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

PROTOCOL_VERSION = 1

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ShortText = Annotated[str, StringConstraints(max_length=300)]


class Message(BaseModel):
    # The server always sends defaulted fields, so its schema marks them required.
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


# ---- client → server -----------------------------------------------------------------------


class ClientMessageBase(Message):
    """Strict: a number is a JSON number and a flag a JSON boolean, as the schema says."""

    model_config = ConfigDict(strict=True)


class StaffAuth(ClientMessageBase):
    """A staff access token from POST /api/v1/auth/login, for one session."""

    kind: Literal["staff"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    session_id: int = Field(ge=1, le=2**62)
    role: Literal["operator", "moderator", "hall", "observer"] | None = Field(
        default=None,
        description="The role to act in; default: operator for admins and operators, moderator "
        "for moderators, observer for observers. An account may only take roles below its own.",
    )


class PointAuth(ClientMessageBase):
    """A point's join credential (the part of the join link after '#')."""

    kind: Literal["point"]
    credential: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ClientInfo(ClientMessageBase):
    name: Annotated[str, StringConstraints(max_length=64)] = ""
    version: Annotated[str, StringConstraints(max_length=32)] = ""
    user_agent: ShortText = ""


class Hello(ClientMessageBase):
    """The first message of every connection; answered by `welcome` or `error`."""

    type: Literal["hello"]
    id: RequestId
    protocol: int = Field(ge=1, le=1000)
    auth: Annotated[StaffAuth | PointAuth, Field(discriminator="kind")]
    last_seq: int | None = Field(
        default=None, ge=0, le=2**62, description="Resume: the highest seq received before."
    )
    client: ClientInfo = ClientInfo()


class Pong(ClientMessageBase):
    """Answer to the server's `ping`, echoing its nonce."""

    type: Literal["pong"]
    nonce: int = Field(ge=0, le=2**62)


class Stats(ClientMessageBase):
    """Link quality measured by the client (WebRTC statistics), every 5–10 s."""

    type: Literal["stats"]
    rtt_ms: float | None = Field(default=None, ge=0, le=60_000, allow_inf_nan=False)
    loss_pct: float | None = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    jitter_ms: float | None = Field(default=None, ge=0, le=60_000, allow_inf_nan=False)
    bitrate_in_kbps: float | None = Field(default=None, ge=0, le=1_000_000, allow_inf_nan=False)
    bitrate_out_kbps: float | None = Field(default=None, ge=0, le=1_000_000, allow_inf_nan=False)


class Ping(ClientMessageBase):
    """A client's own liveness check; answered by `ack` with the server time."""

    type: Literal["ping"]
    id: RequestId


class Resync(ClientMessageBase):
    """Ask for a fresh `snapshot` (after a gap the client cannot explain)."""

    type: Literal["resync"]
    id: RequestId


class WallGet(ClientMessageBase):
    """Staff: ask for a full `wall.snapshot` (deltas follow anyway)."""

    type: Literal["wall.get"]
    id: RequestId


class Bye(ClientMessageBase):
    """Leaving on purpose: the point goes offline at once instead of after the resume window."""

    type: Literal["bye"]
    id: RequestId | None = None


Sdp = Annotated[str, StringConstraints(min_length=10, max_length=60_000)]


class MediaPublish(ClientMessageBase):
    """Send camera and microphone (a point) or the hall program (role `hall`): an SDP offer with
    at most one audio and one video section, all candidates included (no trickle). Answered by
    `ack` with `result.sdp`, the answer. A new publish replaces the previous one."""

    type: Literal["media.publish"]
    id: RequestId
    sdp: Sdp


class MediaSubscribe(ClientMessageBase):
    """Receive: the offer holds one audio then one video section per slot of `welcome.media.slots`,
    in that order, receive-only. Answered by `ack` with `result.sdp`."""

    type: Literal["media.subscribe"]
    id: RequestId
    sdp: Sdp


class MediaPreview(ClientMessageBase):
    """Operators, moderators and the hall: show one point in the own `preview` slot (monitoring, not the
    floor; no one else sees or hears it). `point_code` null ends the preview."""

    type: Literal["media.preview"]
    id: RequestId
    point_code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None


class FloorMessage(ClientMessageBase):
    """Floor control. Everyone: `get` (the current floor, e.g. after a welcome that did not resume).
    Points: `request` (with an optional one-line topic), `cancel` (their own
    raised hand), `release` (their own floor). Moderators and operators: `accept` (request_id,
    optional priority), `grant` (request_id from the queue, or point_code to call on any present
    point), `deny` (request_id, note), `revoke` (point_code, note), `extend` (point_code, seconds),
    `reorder` (order: every waiting request_id, next speaker first), `clear` (note). Answered by
    `ack` (`result.floor`: the floor after it) or `error` (`invalid_transition` with the state and
    the reason when the floor does not allow it; nothing changes)."""

    type: Literal["floor"]
    id: RequestId
    action: Literal[
        "get",
        "request",
        "cancel",
        "release",
        "accept",
        "grant",
        "deny",
        "revoke",
        "extend",
        "reorder",
        "clear",
    ]
    request_id: int | None = Field(default=None, ge=1, le=2**62)
    point_code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    topic: Annotated[str, StringConstraints(max_length=200)] = ""
    note: Annotated[str, StringConstraints(max_length=200)] = ""
    priority: Literal["lowest", "low", "normal", "high", "highest"] | None = None
    seconds: float | None = Field(default=None, gt=0, le=3600, allow_inf_nan=False)
    order: (
        Annotated[list[Annotated[int, Field(ge=1, le=2**62)]], Field(max_length=10_000)] | None
    ) = None


IdempotencyKey = Annotated[
    str, StringConstraints(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
]


class RollcallMessage(ClientMessageBase):
    """Roll-call. Everyone: `get` (the current round, and for a point its own record). Points:
    `confirm` (round, headcount, optional one-line note, and a `key` the client makes once per
    answer and sends again on every retry: a retry gets the stored result, the same key with other
    values is `idempotency_conflict`). Operators: `open` (deadline_s, optional message), `excuse`
    (round, point_code, reason), `correct` (round, point_code, status, headcount, reason),
    `close` (round). Answered by `ack` only after the change is committed, or `error`."""

    type: Literal["rollcall"]
    id: RequestId
    action: Literal["get", "open", "confirm", "excuse", "correct", "close"]
    round: int | None = Field(default=None, ge=1, le=10_000)
    deadline_s: float | None = Field(default=None, ge=10, le=3600, allow_inf_nan=False)
    message: Annotated[str, StringConstraints(max_length=300)] = ""
    headcount: int | None = Field(default=None, ge=0, le=100_000)
    note: Annotated[str, StringConstraints(max_length=200)] = ""
    key: IdempotencyKey | None = None
    point_code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    status: Literal["present", "late", "absent", "excused"] | None = None
    reason: Annotated[str, StringConstraints(max_length=200)] = ""


class MediaLeave(ClientMessageBase):
    """Close this participant's media (both directions); signaling stays connected."""

    type: Literal["media.leave"]
    id: RequestId


ClientMessage = Annotated[
    Hello
    | Pong
    | Stats
    | Ping
    | Resync
    | WallGet
    | Bye
    | MediaPublish
    | MediaSubscribe
    | MediaPreview
    | MediaLeave
    | FloorMessage
    | RollcallMessage,
    Field(discriminator="type"),
]
CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = frozenset(
    {
        "hello",
        "pong",
        "stats",
        "ping",
        "resync",
        "wall.get",
        "bye",
        "media.publish",
        "media.subscribe",
        "media.preview",
        "media.leave",
        "floor",
        "rollcall",
    }
)


# ---- server → client -----------------------------------------------------------------------


class Identity(Message):
    kind: Literal["point", "staff"]
    point_code: str | None = None
    point_name: str | None = None
    district_name: str | None = None
    province_name: str | None = None
    username: str | None = None
    display_name: str | None = None


class SessionSnapshot(Message):
    id: int
    title: str
    hall_name: str
    status: str
    scheduled_start: str | None
    scheduled_end: str | None
    settings: dict[str, Any]


class Heartbeat(Message):
    ping_interval_s: float
    timeout_s: float
    resume_window_s: float


class Limits(Message):
    max_message_bytes: int
    messages_per_s: float
    burst: int


class IceServerInfo(Message):
    """An RTCIceServer for the browser; TURN entries carry a credential minted for this client."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class MediaInfo(Message):
    """How this client takes part in the media plane."""

    participant: str = Field(description="This client's media identity in the session.")
    can_publish: bool
    slots: list[str] = Field(
        description="What a `media.subscribe` offer must hold, in order: per slot one audio and "
        "one video section. program = the hall, floor = the point that has the floor, preview = "
        "a point an operator looks at."
    )
    ice_servers: list[IceServerInfo]


class FloorHolder(BaseModel):
    point_code: str | None
    point_name: str | None = Field(default=None, description="As in the point directory.")
    request_id: int
    topic: str
    granted_at: float
    deadline: float = Field(description="Unix time the turn ends unless extended.")


class FloorQueueEntry(BaseModel):
    position: int = Field(description="1 is next; contiguous.")
    request_id: int
    point_code: str | None
    point_name: str | None = Field(default=None, description="As in the point directory.")
    status: str = Field(description="pending or accepted")
    priority: str
    topic: str
    requested_at: float = Field(
        description="Unix time the hand went up (the chair's waiting time)."
    )


class FloorView(BaseModel):
    """The floor as every client shows it: who speaks until when, who waits in which order."""

    holders: list[FloorHolder]
    queue: list[FloorQueueEntry]


class RollcallCounts(BaseModel):
    present: int
    late: int
    absent: int
    excused: int
    waiting: int = Field(description="Invited, not answered yet (open round).")
    headcount: int = Field(description="People counted at present and late points.")
    expected: int = Field(description="Invited points.")


class RollcallAreaCounts(BaseModel):
    code: str = Field(description='District (else province) code; "" when the point has none.')
    name: str | None
    counts: RollcallCounts


class RollcallRecordView(BaseModel):
    point_code: str
    status: Literal["waiting", "present", "late", "absent", "excused"]
    headcount: int | None
    note: str
    confirmed_at: float | None
    reason: str


class RollcallRoundView(BaseModel):
    """A round as clients show it; a point's view carries its own record in `mine`."""

    round: int
    phase: Literal["open", "closed"]
    opened_at: float
    deadline: float
    closed_at: float | None
    message: str
    counts: RollcallCounts | None = Field(description="For staff; null for points.")
    mine: RollcallRecordView | None = None


class RollcallTally(Message):
    """To operators, moderators and observers after each batch of committed roll-call changes: the
    round's counts and only the areas that changed (apply over the last known)."""

    type: Literal["rollcall.tally"] = "rollcall.tally"
    round: int
    seq: int = Field(description="The session seq this tally is current to.")
    counts: RollcallCounts
    areas: list[RollcallAreaCounts]


class Welcome(Message):
    type: Literal["welcome"] = "welcome"
    id: str
    protocol: int = PROTOCOL_VERSION
    connection_id: str
    role: Literal["operator", "moderator", "hall", "observer", "point"]
    identity: Identity
    session: SessionSnapshot
    seq: int = Field(description="The session seq this welcome is current to.")
    resumed: bool
    replayed: int = Field(description="How many `event` messages follow as replay.")
    heartbeat: Heartbeat
    limits: Limits
    media: MediaInfo
    floor: FloorView = Field(
        description="The floor now; later `floor.*` events carry it as it changes."
    )
    rollcall: RollcallRoundView | None = Field(
        default=None, description="The latest roll-call round, if any (a point's own record in it)."
    )


class Snapshot(Message):
    """Answer to `resync`: the session as of `seq`."""

    type: Literal["snapshot"] = "snapshot"
    session: SessionSnapshot
    seq: int


class Event(Message):
    """A session event from the durable log. `seq` increases; a gap means events not for you."""

    type: Literal["event"] = "event"
    seq: int
    event: str
    actor: str
    at: str
    payload: dict[str, Any]


class Ack(Message):
    type: Literal["ack"] = "ack"
    id: str
    result: dict[str, Any] = {}


class Error(Message):
    type: Literal["error"] = "error"
    id: str | None = None
    code: str
    message: str
    details: dict[str, Any] = {}


class ServerPing(Message):
    """Heartbeat: answer with `pong` and the same nonce; the server measures the round trip."""

    type: Literal["ping"] = "ping"
    nonce: int
    server_time: float


class WallPoint(Message):
    code: str
    name: str
    area_code: str | None
    area_name: str | None
    state: str
    since: float
    last_seen: float | None
    rtt_ms: float | None
    loss_pct: float | None
    client: str | None


class AreaCounts(Message):
    code: str
    name: str | None
    counts: dict[str, int]


class WallSnapshot(Message):
    """Staff: every invited point with its presence; counts overall and per area."""

    type: Literal["wall.snapshot"] = "wall.snapshot"
    at: float
    counts: dict[str, int]
    areas: list[AreaCounts]
    points: list[WallPoint]


class WallDelta(Message):
    """Staff: what changed since the previous wall message (coalesced, a few per second at most)."""

    type: Literal["wall.delta"] = "wall.delta"
    at: float
    counts: dict[str, int]
    areas: list[AreaCounts]
    points: list[WallPoint]


ServerMessage = Annotated[
    Welcome
    | Snapshot
    | Event
    | Ack
    | Error
    | ServerPing
    | WallSnapshot
    | WallDelta
    | RollcallTally,
    Field(discriminator="type"),
]
SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of both directions, as published at /api/v1/ws/schema.json."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"diemcau live protocol v{PROTOCOL_VERSION}",
        "description": "Messages over the WebSocket at /api/v1/ws; see docs/protocol.md.",
        "protocol": PROTOCOL_VERSION,
        "client_to_server": CLIENT_MESSAGE.json_schema(),
        "server_to_client": SERVER_MESSAGE.json_schema(mode="serialization"),
    }
