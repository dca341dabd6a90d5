"""The live side of the service: accepts WebSockets, authenticates them, joins them to their room.

`handle` is the whole life of one connection: origin and address checks, the hello (staff token or
a point's join credential), resume or snapshot, then a loop that turns each message into a command.
No malformed message closes a connection; each gets one typed `error`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.auth.tokens import decode_access_token
from app.errors import DiemcauError, Unauthenticated
from app.settings import Settings
from bridges.floor import FloorRefused, PointOffline, SessionEnded
from bridges.floor import Requested as FloorRequested
from bridges.invitations.credentials import hash_credential
from bridges.invitations.service import resolve_credential
from bridges.rollcall import RollcallRefused
from models import Account, ConferenceSession, Role, SessionEvent, SessionStatus
from signaling.audience import Audience, audience_of
from signaling.codes import CloseCode, ErrorCode
from signaling.connection import TRANSPORT_SEND, Connection, TokenBucket
from signaling.floor import FloorDesk, FloorForbidden, FloorInputError
from signaling.gc_policy import GcPolicy
from signaling.hub import EventHub, LoggedEvent, read_events, to_logged
from signaling.intervals import IntervalWriter, close_dangling
from signaling.media import MediaGateway, MediaRefused
from signaling.metrics import SignalingMetrics
from signaling.protocol import (
    CLIENT_MESSAGE,
    CLIENT_TYPES,
    PROTOCOL_VERSION,
    Ack,
    Bye,
    ClientMessage,
    Error,
    Event,
    FloorMessage,
    FloorView,
    Heartbeat,
    Hello,
    Identity,
    Limits,
    MediaInfo,
    MediaLeave,
    MediaPreview,
    MediaPublish,
    MediaSubscribe,
    Ping,
    PointAuth,
    Pong,
    Resync,
    RollcallMessage,
    RollcallRoundView,
    SessionSnapshot,
    Snapshot,
    StaffAuth,
    Stats,
    WallGet,
    Welcome,
)
from signaling.rollcall import (
    IdempotencyConflict,
    RollcallDesk,
    RollcallForbidden,
    RollcallInputError,
    StorageUnavailable,
)
from signaling.room import WALL_ROLES, LivePoint, SessionRoom, session_snapshot

logger = logging.getLogger("diemcau.ws")

ADMITTING = frozenset({"open", "live"})
STAFF_ROLES: dict[Role, tuple[str, ...]] = {
    Role.ADMIN: ("operator", "moderator", "hall", "observer"),
    Role.OPERATOR: ("operator", "moderator", "hall", "observer"),
    Role.MODERATOR: ("moderator", "observer"),
    Role.OBSERVER: ("observer",),
}
_MAX_REJECTED_IN_A_ROW = 200


class Refused(Exception):
    """A hello that cannot be accepted; closes the connection after the error when `close` is set."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        close: CloseCode | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close
        self.details = details or {}


def _client_label(hello: Hello) -> str | None:
    info = hello.client
    label = " ".join(part for part in (info.name, info.version) if part)
    if info.user_agent:
        label = f"{label} ({info.user_agent})" if label else info.user_agent
    return label[:300] or None


class Signaling:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        hub: EventHub,
        *,
        readers: async_sessionmaker[AsyncSession] | None = None,
        media: MediaGateway | None = None,
    ) -> None:
        self.settings = settings
        self.media = media
        self.sessions = sessions
        # Hello, replay and resync only read: they use read-only sessions when given.
        self.readers = readers or sessions
        self.hub = hub
        self.metrics = SignalingMetrics()
        self.intervals = IntervalWriter(sessions)
        self.gc: GcPolicy | None = (
            GcPolicy(settle_s=0.5, refresh_every_s=settings.gc_refresh_interval_s)
            if settings.gc_freeze
            else None
        )
        self.rooms: dict[int, SessionRoom] = {}
        self._room_locks: dict[int, asyncio.Lock] = {}
        self.by_address: Counter[str] = Counter()
        self.by_account: Counter[int] = Counter()
        self.connections: set[Connection] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._media_tasks: set[asyncio.Task[None]] = set()
        self.floors: dict[int, FloorDesk] = {}
        self.rollcalls: dict[int, RollcallDesk] = {}

    # ---- lifetime --------------------------------------------------------------------------

    async def start(self) -> None:
        closed = await close_dangling(self.sessions, time.time())
        if closed:
            logger.info("closed %d presence intervals left open by the previous run", closed)
        self.intervals.start()
        async with self.readers() as db:
            admitting = list(
                await db.scalars(
                    select(ConferenceSession.id).where(
                        ConferenceSession.status.in_([SessionStatus.OPEN, SessionStatus.LIVE])
                    )
                )
            )
        for session_id in admitting:
            await self.room(session_id)
        if self.gc is not None:
            self.gc.start()
        if self.settings.metrics_enabled:
            self.metrics.start()

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for room in list(self.rooms.values()):
            await room.close(CloseCode.GOING_AWAY)
        for conn in list(self.connections):
            conn.close(CloseCode.GOING_AWAY)
        await asyncio.gather(*(c.wait_closed(2.0) for c in list(self.connections)))
        for desk in self.floors.values():
            await desk.close()
        for rollcall in self.rollcalls.values():
            await rollcall.close()
        for media_task in list(self._media_tasks):
            media_task.cancel()
        await asyncio.gather(*self._media_tasks, return_exceptions=True)
        if self.media is not None:
            await self.media.stop()
        await self.hub.close()
        await self.intervals.close()
        await self.metrics.close()
        if self.gc is not None:
            await self.gc.close()

    def publish_committed(self, events: Sequence[SessionEvent]) -> None:
        """Events of a transaction that just committed in this process, straight to the rooms."""
        by_session: dict[int, list[LoggedEvent]] = {}
        for row in events:
            by_session.setdefault(row.session_id, []).append(to_logged(row))
        for session_id, logged in by_session.items():
            self.hub.publish(session_id, logged)
            opened = any(
                e.type == "session.status_changed" and e.payload.get("to") in ADMITTING
                for e in logged
            )
            if opened and session_id not in self.rooms:
                # Ready before the points arrive: their hellos are then answered from memory.
                task = asyncio.create_task(self.room(session_id), name=f"room-load-{session_id}")
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def close_account(self, account_id: int) -> None:
        """The account's tokens were revoked (password, role or deactivation): end its connections."""
        for conn in list(self.connections):
            if conn.account_id == account_id:
                conn.close(CloseCode.UNAUTHENTICATED)

    async def room(self, session_id: int) -> SessionRoom:
        room = self.rooms.get(session_id)
        if room is not None:
            return room
        lock = self._room_locks.setdefault(session_id, asyncio.Lock())
        async with lock:
            room = self.rooms.get(session_id)
            if room is None:
                room = SessionRoom(
                    session_id,
                    settings=self.settings,
                    sessions=self.sessions,
                    hub=self.hub,
                    metrics=self.metrics,
                    intervals=self.intervals,
                    on_ended=self._session_ended,
                    on_point_offline=self._point_offline,
                )
                await room.load()
                desk = self._floor_desk(room)
                await desk.load(self.readers)
                self.floors[session_id] = desk
                rollcall = self._rollcall_desk(room)
                await rollcall.load()
                rollcall.start()
                self.rollcalls[session_id] = rollcall
                self.rooms[session_id] = room
        return room

    def _floor_desk(self, room: SessionRoom) -> FloorDesk:
        def code_of(point_id: int) -> str | None:
            live = room.points.get(point_id)
            return live.code if live is not None else None

        def point_of(code: str) -> int | None:
            live = room.by_code.get(code)
            return live.point_id if live is not None else None

        async def route_floor(session_id: int, point_id: int | None) -> None:
            if self.media is not None:
                await self.media.route_floor(session_id, point_id)

        return FloorDesk(
            room.session_id,
            sessions=self.sessions,
            publish=self.publish_committed,
            route_floor=route_floor,
            codes=code_of,
            names=lambda point_id: live.name if (live := room.points.get(point_id)) else None,
            points_by_code=point_of,
            online=room.online_points,
            settings=lambda: dict(room.snapshot.settings) if room.snapshot is not None else {},
        )

    def _rollcall_desk(self, room: SessionRoom) -> RollcallDesk:
        def invited() -> dict[int, tuple[str, str, str | None]]:
            return {
                point_id: (live.code, live.area_code or "", live.area_name)
                for point_id, live in room.points.items()
            }

        return RollcallDesk(
            room.session_id,
            sessions=self.sessions,
            readers=self.readers,
            publish=self.publish_committed,
            send_tally=lambda text: room.send_staff(text, "rollcall.tally"),
            invited=invited,
            code_of=lambda point_id: live.code if (live := room.points.get(point_id)) else None,
            settings=lambda: dict(room.snapshot.settings) if room.snapshot is not None else {},
            observe_commit=self.metrics.rollcall_commit_seconds.observe,
        )

    def _rollcall_view(self, session_id: int, point_id: int | None) -> RollcallRoundView | None:
        desk = self.rollcalls.get(session_id)
        if desk is None or not desk.state.rounds:
            return None
        return desk.view(point_id=point_id)

    def _floor_view(self, session_id: int) -> FloorView:
        desk = self.floors.get(session_id)
        if desk is None:
            return FloorView(holders=[], queue=[])
        return FloorView.model_validate(desk.snapshot())

    def _point_offline(self, session_id: int, point_id: int) -> None:
        """Past its resume window (or gone on purpose): the point's floor and raised hand end."""
        desk = self.floors.get(session_id)
        if desk is not None and desk.involves(point_id):
            desk.spawn(PointOffline(point=point_id), "system")

    def _session_ended(self, session_id: int) -> None:
        """An ended session's media goes at once: no point keeps sending into a closed hall."""
        desk = self.floors.get(session_id)
        if desk is not None and (desk.state.holders or desk.state.queue):
            desk.spawn(SessionEnded(), "system")
        rollcall = self.rollcalls.get(session_id)
        if rollcall is not None and rollcall.state.current is not None:
            closing = asyncio.get_running_loop().create_task(rollcall.close_open_round("system"))
            self._background.add(closing)
            closing.add_done_callback(self._background.discard)
        if self.media is not None:
            task = asyncio.get_running_loop().create_task(self.media.close_session(session_id))
            self._media_tasks.add(task)
            task.add_done_callback(self._media_tasks.discard)

    # ---- one connection --------------------------------------------------------------------

    async def handle(self, ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.settings.effective_origins:
            self.metrics.closes.labels(str(int(CloseCode.ORIGIN_REJECTED))).inc()
            await ws.close(int(CloseCode.ORIGIN_REJECTED))
            return
        address = ws.client.host if ws.client else "-"
        if self.by_address[address] >= self.settings.ws_max_per_address:
            self.metrics.closes.labels(str(int(CloseCode.TOO_MANY_CONNECTIONS))).inc()
            await ws.close(int(CloseCode.TOO_MANY_CONNECTIONS))
            return
        await ws.accept()
        settings = self.settings
        conn = Connection(
            ws,
            connection_id=uuid.uuid4().hex[:16],
            address=address,
            queue_limit=settings.ws_queue_messages,
            rate=TokenBucket(rate=settings.ws_rate_per_s, burst=settings.ws_rate_burst),
            transport=ws.scope.get(TRANSPORT_SEND),
        )
        conn.on_overflow = self.metrics.overflows.inc
        self.by_address[address] += 1
        self.connections.add(conn)
        if self.gc is not None:
            self.gc.arrived()
        conn.start()
        room: SessionRoom | None = None
        try:
            room = await self._handshake(conn)
            if room is not None:
                self.metrics.connections.labels(conn.role).inc()
                try:
                    await self._serve(conn, room)
                finally:
                    self.metrics.connections.labels(conn.role).dec()
        except WebSocketDisconnect:
            pass
        except Exception:
            logger.exception("connection %s failed", conn.id)
            conn.close(CloseCode.INTERNAL)
        finally:
            if room is not None:
                if self.media is not None:
                    self.media.disconnected(conn)
                if conn.point_id is not None:
                    room.disconnect_point(conn, leave=False)
                else:
                    room.staff.discard(conn)
            if conn.account_id is not None:
                self.by_account[conn.account_id] -= 1
                if self.by_account[conn.account_id] <= 0:
                    del self.by_account[conn.account_id]
            self.by_address[address] -= 1
            if self.by_address[address] <= 0:
                del self.by_address[address]
            self.connections.discard(conn)
            if conn.close_code is not None:
                self.metrics.closes.labels(str(int(conn.close_code))).inc()
            conn.close(CloseCode.NORMAL)
            await conn.wait_closed(2.0)
            await conn.stop()

    async def _receive(self, conn: Connection, wait_s: float | None) -> Any | None:
        """The next message as parsed JSON; None after an error was sent for it."""
        message = await asyncio.wait_for(conn.websocket.receive(), wait_s)
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        conn.last_received = time.monotonic()
        text = message.get("text")
        if text is None:
            self.metrics.messages_in.labels("invalid").inc()
            self._error(conn, None, ErrorCode.MALFORMED_MESSAGE, "send JSON text frames")
            return None
        if (
            len(text) > self.settings.ws_max_message_bytes
            and len(text.encode()) > self.settings.ws_max_message_bytes
        ):
            conn.close(CloseCode.TOO_BIG)
            raise WebSocketDisconnect(int(CloseCode.TOO_BIG))
        if not conn.rate.take(conn.last_received):
            conn.rejected_in_a_row += 1
            if conn.rejected_in_a_row > _MAX_REJECTED_IN_A_ROW:
                conn.close(CloseCode.RATE_LIMITED)
                raise WebSocketDisconnect(int(CloseCode.RATE_LIMITED))
            self._error(conn, None, ErrorCode.RATE_LIMITED, "too many messages; slow down")
            return None
        conn.rejected_in_a_row = 0
        try:
            value = json.loads(text)
            if "\\u" in text:
                # Escaped lone surrogates parse, but nothing holding them can be sent back as
                # UTF-8 (an error echoing the id would fail): refuse them, as I-JSON does.
                json.dumps(value, ensure_ascii=False).encode()
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            self.metrics.messages_in.labels("invalid").inc()
            self._error(conn, None, ErrorCode.MALFORMED_MESSAGE, "not valid JSON")
            return None
        if value is None:  # the message `null`: None here means "answered already"
            self.metrics.messages_in.labels("invalid").inc()
            self._error(conn, None, ErrorCode.MALFORMED_MESSAGE, "a message is a JSON object")
        return value

    def _parse(self, conn: Connection, raw: Any) -> ClientMessage | None:
        request_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 64:
            request_id = None
        if not isinstance(raw, dict):
            self.metrics.messages_in.labels("invalid").inc()
            self._error(conn, None, ErrorCode.MALFORMED_MESSAGE, "a message is a JSON object")
            return None
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in CLIENT_TYPES:
            self.metrics.messages_in.labels("invalid").inc()
            self._error(
                conn,
                request_id,
                ErrorCode.UNKNOWN_TYPE,
                "unknown message type",
                {
                    "type": kind[:64] if isinstance(kind, str) else None,
                    "known": sorted(CLIENT_TYPES),
                },
            )
            return None
        try:
            message = CLIENT_MESSAGE.validate_python(raw)
        except ValidationError as exc:
            self.metrics.messages_in.labels("invalid").inc()
            errors = [
                {
                    "loc": [str(part) for part in e["loc"]][1:],
                    "msg": e["msg"][:200],
                    "type": e["type"],
                }
                for e in exc.errors(include_url=False, include_input=False)[:20]
            ]
            self._error(
                conn,
                request_id,
                ErrorCode.VALIDATION_ERROR,
                f"invalid {kind} message",
                {"errors": errors},
            )
            return None
        self.metrics.messages_in.labels(str(kind)).inc()
        return message

    def _error(
        self,
        conn: Connection,
        request_id: str | None,
        code: ErrorCode,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.metrics.errors.labels(code.value).inc()
        conn.send(
            Error(
                id=request_id, code=code.value, message=message, details=details or {}
            ).model_dump_json()
        )

    # ---- hello -----------------------------------------------------------------------------

    async def _handshake(self, conn: Connection) -> SessionRoom | None:
        deadline = time.monotonic() + self.settings.ws_hello_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                conn.close(CloseCode.HELLO_TIMEOUT)
                return None
            try:
                raw = await self._receive(conn, remaining)
            except TimeoutError:
                conn.close(CloseCode.HELLO_TIMEOUT)
                return None
            if raw is None:
                continue
            message = self._parse(conn, raw)
            if message is None:
                continue
            if not isinstance(message, Hello):
                self._error(
                    conn,
                    getattr(message, "id", None),
                    ErrorCode.HELLO_REQUIRED,
                    "send hello first",
                )
                continue
            try:
                return await self._join(conn, message)
            except Refused as refused:
                self._error(conn, message.id, refused.code, refused.message, refused.details)
                if refused.close is not None:
                    conn.close(refused.close)
                    return None

    async def _join(self, conn: Connection, hello: Hello) -> SessionRoom:
        if hello.protocol != PROTOCOL_VERSION:
            raise Refused(
                ErrorCode.UNSUPPORTED_PROTOCOL,
                f"this server speaks protocol {PROTOCOL_VERSION}",
                details={"supported": [PROTOCOL_VERSION]},
            )
        conn.client_label = _client_label(hello)
        if isinstance(hello.auth, StaffAuth):
            room, snapshot, snapshot_seq, identity = await self._join_staff(conn, hello.auth)
            live = None
        else:
            room, snapshot, snapshot_seq, identity, live = await self._join_point(conn, hello.auth)
        was_present = live is not None and live.presence.state.value in ("online", "degraded")
        if live is not None:
            room.connect_point(live, conn)
        # Staff replay everything they missed; a point only what is addressed to points, so a
        # point is measured by that (thousands of staff-only roll-call answers do not count).
        missed: int | None = None
        if hello.last_seq is not None and hello.last_seq <= room.delivered_seq:
            if live is None:
                missed = room.delivered_seq - hello.last_seq
            elif was_present:
                missed = room.missed_by_a_point(hello.last_seq)
        resumable = missed is not None and missed <= self.settings.resume_max_events
        cursor = hello.last_seq if resumable and hello.last_seq is not None else snapshot_seq
        replay: list[LoggedEvent] = []
        for_points_only = live is not None
        while cursor < room.delivered_seq:
            # Everything in (cursor, target] in one read (seqs are unique, so the limit never
            # cuts it short); a point's read leaves the staff-only events in the database.
            target = room.delivered_seq
            batch = await read_events(
                self.readers,
                room.session_id,
                cursor,
                target - cursor,
                up_to=target,
                points_only=for_points_only,
            )
            for logged in batch:
                if not for_points_only or audience_of(logged.type) is Audience.EVERYONE:
                    replay.append(logged)
            cursor = target
        if live is not None and live.connection is not conn:
            raise Refused(ErrorCode.UNAUTHENTICATED, "replaced while joining", CloseCode.REPLACED)
        conn.min_seq = cursor
        settings = self.settings
        welcome = Welcome(
            id=hello.id,
            connection_id=conn.id,
            role=conn.role,
            identity=identity,
            session=snapshot,
            seq=cursor,
            resumed=bool(resumable),
            replayed=len(replay),
            heartbeat=Heartbeat(
                ping_interval_s=settings.heartbeat_interval_s,
                timeout_s=settings.heartbeat_timeout_s,
                resume_window_s=settings.resume_window_s,
            ),
            limits=Limits(
                max_message_bytes=settings.ws_max_message_bytes,
                messages_per_s=settings.ws_rate_per_s,
                burst=settings.ws_rate_burst,
            ),
            media=self._media_info(conn, snapshot),
            floor=self._floor_view(room.session_id),
            rollcall=self._rollcall_view(room.session_id, conn.point_id),
        )
        conn.send(welcome.model_dump_json())
        self.metrics.messages_out.labels("welcome").inc()
        # The replay is bounded by resume_max_events, not by the queue it may be longer than.
        for logged in replay:
            conn.send(
                Event(
                    seq=logged.seq,
                    event=logged.type,
                    actor=logged.actor,
                    at=logged.at,
                    payload=logged.payload,
                ).model_dump_json(),
                exempt=True,
            )
        if self.media is not None:
            self.media.adopt(conn)
        if live is not None:
            room.join_point(live, conn)
        else:
            room.staff.add(conn)
            if conn.role in WALL_ROLES:
                conn.send(room.wall_snapshot().model_dump_json())
                self.metrics.messages_out.labels("wall.snapshot").inc()
        # The first ping somewhere in the interval: points that joined in the same second would
        # otherwise all be pinged in one round 10 s later, and their 3,321 pongs stalled the commits
        # of a roll-call for 250-500 ms (found by bench rollcall).
        spread = random.uniform(0.2, 1.0)  # noqa: S311 - spreading load, not a secret
        conn.next_ping_at = time.monotonic() + settings.heartbeat_interval_s * spread
        return room

    def _media_info(self, conn: Connection, snapshot: SessionSnapshot) -> MediaInfo:
        if self.media is None:
            return MediaInfo(participant="", can_publish=False, slots=[], ice_servers=[])
        end = (
            datetime.fromisoformat(snapshot.scheduled_end).timestamp()
            if snapshot.scheduled_end
            else None
        )
        if end is not None and end <= time.time():
            end = None  # an overrun session keeps its media: credentials then live for the TTL
        return self.media.info(conn, end)

    async def _join_staff(
        self, conn: Connection, auth: StaffAuth
    ) -> tuple[SessionRoom, SessionSnapshot, int, Identity]:
        try:
            claims = decode_access_token(self.settings.secret(), auth.token)
        except Unauthenticated as exc:
            raise Refused(
                ErrorCode.UNAUTHENTICATED, exc.message, CloseCode.UNAUTHENTICATED
            ) from None
        async with self.readers() as db:
            account = await db.get(Account, claims.account_id)
            if (
                account is None
                or not account.active
                or account.token_generation != claims.generation
            ):
                raise Refused(
                    ErrorCode.UNAUTHENTICATED,
                    "access token no longer valid",
                    CloseCode.UNAUTHENTICATED,
                )
            session = await db.get(ConferenceSession, auth.session_id)
            if session is None:
                raise Refused(ErrorCode.NOT_FOUND, "session not found", CloseCode.SESSION_GONE)
            allowed = STAFF_ROLES[account.role]
            role = auth.role or allowed[0]
            if role not in allowed:
                raise Refused(
                    ErrorCode.FORBIDDEN,
                    f"a {account.role.value} account cannot act as {role}",
                    CloseCode.ROLE_NOT_ALLOWED,
                )
            if self.by_account[account.id] >= self.settings.ws_max_per_account:
                raise Refused(
                    ErrorCode.FORBIDDEN,
                    "too many open connections for this account",
                    CloseCode.TOO_MANY_CONNECTIONS,
                )
            identity = Identity(
                kind="staff", username=account.username, display_name=account.display_name
            )
            conn.role = role
            conn.account_id = account.id
            conn.actor = f"account:{account.username}"
            conn.session_id = session.id
            self.by_account[account.id] += 1
        return await self.room(session.id), session_snapshot(session), session.last_seq, identity

    async def _join_point(
        self, conn: Connection, auth: PointAuth
    ) -> tuple[SessionRoom, SessionSnapshot, int, Identity, LivePoint]:
        credential_hash = hash_credential(auth.credential)
        known = self._known_point(credential_hash)
        if known is None and any(lock.locked() for lock in self._room_locks.values()):
            # A join storm's first hello is loading the room: wait for it rather than have
            # every hello behind it look its credential up in the database.
            for lock in list(self._room_locks.values()):
                if lock.locked():
                    async with lock:
                        pass
            known = self._known_point(credential_hash)
        if known is not None:
            # Answered from memory: the room's credentials and status follow the log.
            room, live = known
            assert room.snapshot is not None
            snapshot, snapshot_seq, status = room.snapshot, room.snapshot_seq, room.status
        else:
            room, live, snapshot, snapshot_seq, status = await self._find_point(auth.credential)
        if status not in ADMITTING:
            raise Refused(
                ErrorCode.NOT_ADMITTED,
                f"the session is {status}; points may join when it is open",
                CloseCode.NOT_ADMITTED,
                details={"session_status": status},
            )
        conn.role = "point"
        conn.point_id = live.point_id
        conn.actor = f"point:{live.code}"
        conn.session_id = room.session_id
        identity = Identity(
            kind="point",
            point_code=live.code,
            point_name=live.name,
            district_name=live.district_name,
            province_name=live.province_name,
        )
        return room, snapshot, snapshot_seq, identity, live

    def _known_point(self, credential_hash: str) -> tuple[SessionRoom, LivePoint] | None:
        for room in list(self.rooms.values()):
            live = room.by_hash.get(credential_hash)
            if live is not None and room.snapshot is not None:
                return room, live
        return None

    async def _find_point(
        self, credential: str
    ) -> tuple[SessionRoom, LivePoint, SessionSnapshot, int, str]:
        """A credential no loaded room knows: look it up, and load its session's room."""
        async with self.readers() as db:
            try:
                who = await resolve_credential(db, credential)
            except DiemcauError as exc:
                raise Refused(
                    ErrorCode.UNAUTHENTICATED, exc.message, CloseCode.UNAUTHENTICATED
                ) from None
            session = await db.get(ConferenceSession, who.session_id)
            if session is None:
                raise Refused(ErrorCode.NOT_FOUND, "session not found", CloseCode.SESSION_GONE)
            snapshot, snapshot_seq = session_snapshot(session), session.last_seq
        room = await self.room(session.id)
        live = room.by_code.get(who.point_code)
        if live is None:
            await room.reload_codes([who.point_code])
            live = room.by_code.get(who.point_code)
        if live is None:
            raise Refused(ErrorCode.UNAUTHENTICATED, "invitation not found", CloseCode.REVOKED)
        return room, live, snapshot, snapshot_seq, who.session_status

    # ---- after the hello -------------------------------------------------------------------

    async def _serve(self, conn: Connection, room: SessionRoom) -> None:
        while not conn.closing:
            # Bounded, so a connection closed while waiting (e.g. cut for overflow, its writer
            # stuck on a full socket because the peer stopped reading) leaves the room anyway.
            try:
                raw = await self._receive(conn, self.settings.heartbeat_interval_s)
            except TimeoutError:
                continue
            if raw is None:
                continue
            message = self._parse(conn, raw)
            if message is None:
                continue
            await self._dispatch(conn, room, message)

    async def _dispatch(self, conn: Connection, room: SessionRoom, message: ClientMessage) -> None:
        if isinstance(message, Pong):
            room.pong(conn, message.nonce)
        elif isinstance(message, Stats):
            if message.rtt_ms is not None:
                conn.reported_rtt_ms = message.rtt_ms
            if message.loss_pct is not None:
                conn.loss_pct = message.loss_pct
            room.link_report(conn)
        elif isinstance(message, Ping):
            conn.send(Ack(id=message.id, result={"server_time": time.time()}).model_dump_json())
        elif isinstance(message, Resync):
            async with self.readers() as db:
                session = await db.get(ConferenceSession, room.session_id)
            if session is None:
                self._error(conn, message.id, ErrorCode.NOT_FOUND, "session not found")
                return
            conn.send(
                Snapshot(
                    session=session_snapshot(session), seq=room.delivered_seq
                ).model_dump_json()
            )
            if conn.role in WALL_ROLES:
                conn.send(room.wall_snapshot().model_dump_json())
            conn.send(Ack(id=message.id).model_dump_json())
        elif isinstance(message, WallGet):
            if conn.role not in WALL_ROLES:
                self._error(
                    conn,
                    message.id,
                    ErrorCode.FORBIDDEN,
                    "the wall is for operators, moderators and observers",
                    {"role": conn.role},
                )
                return
            conn.send(room.wall_snapshot().model_dump_json())
            conn.send(Ack(id=message.id).model_dump_json())
        elif isinstance(message, Bye):
            if message.id is not None:
                conn.send(Ack(id=message.id).model_dump_json())
            if conn.point_id is not None:
                room.disconnect_point(conn, leave=True)
            conn.close(CloseCode.NORMAL)
        elif isinstance(message, Hello):
            self._error(conn, message.id, ErrorCode.ALREADY_JOINED, "this connection has joined")
        elif isinstance(message, MediaPublish | MediaSubscribe | MediaPreview | MediaLeave):
            await self._media(conn, room, message)
        elif isinstance(message, FloorMessage):
            await self._floor(conn, room, message)
        elif isinstance(message, RollcallMessage):
            await self._rollcall(conn, room, message)

    async def _rollcall(
        self, conn: Connection, room: SessionRoom, message: RollcallMessage
    ) -> None:
        desk = self.rollcalls.get(room.session_id)
        if desk is None:
            self._error(conn, message.id, ErrorCode.NOT_FOUND, "session not found")
            return
        if message.action != "get" and room.status not in ("open", "live"):
            self._error(
                conn,
                message.id,
                ErrorCode.INVALID_TRANSITION,
                "roll-call runs while the session is open or live",
                {"machine": "rollcall", "state": room.status, "command": message.action},
            )
            return
        try:
            result = await desk.handle(
                message, role=conn.role, point_id=conn.point_id, actor=conn.actor
            )
        except RollcallForbidden as exc:
            self._error(conn, message.id, ErrorCode.FORBIDDEN, exc.message, exc.details)
            return
        except IdempotencyConflict as exc:
            self._error(conn, message.id, ErrorCode.IDEMPOTENCY_CONFLICT, exc.message, exc.details)
            return
        except StorageUnavailable as exc:
            self._error(conn, message.id, ErrorCode.UNAVAILABLE, exc.message, exc.details)
            return
        except RollcallInputError as exc:
            self._error(conn, message.id, ErrorCode.VALIDATION_ERROR, exc.message, exc.details)
            return
        except RollcallRefused as exc:
            self._error(conn, message.id, ErrorCode.INVALID_TRANSITION, exc.message, exc.details)
            return
        conn.send(Ack(id=message.id, result=result).model_dump_json())

    async def _floor(self, conn: Connection, room: SessionRoom, message: FloorMessage) -> None:
        desk = self.floors.get(room.session_id)
        if desk is None:
            self._error(conn, message.id, ErrorCode.NOT_FOUND, "session not found")
            return
        if room.status not in ("open", "live"):
            self._error(
                conn,
                message.id,
                ErrorCode.INVALID_TRANSITION,
                "the floor is open while the session is open or live",
                {"machine": "floor", "state": room.status, "command": message.action},
            )
            return
        if message.action == "get":
            conn.send(Ack(id=message.id, result={"floor": desk.snapshot()}).model_dump_json())
            return
        try:
            command = desk.from_message(message, role=conn.role, point_id=conn.point_id)
            effects = await desk.run(command, conn.actor)
        except FloorForbidden as exc:
            self._error(conn, message.id, ErrorCode.FORBIDDEN, exc.message, exc.details)
            return
        except FloorInputError as exc:
            self._error(conn, message.id, ErrorCode.VALIDATION_ERROR, exc.message, exc.details)
            return
        except FloorRefused as exc:
            self._error(conn, message.id, ErrorCode.INVALID_TRANSITION, exc.message, exc.details)
            return
        except ValueError as exc:
            self._error(conn, message.id, ErrorCode.VALIDATION_ERROR, str(exc))
            return
        result: dict[str, Any] = {"floor": desk.snapshot()}
        for effect in effects:
            if isinstance(effect, FloorRequested):
                result["request_id"] = effect.request
        conn.send(Ack(id=message.id, result=result).model_dump_json())

    async def _media(
        self,
        conn: Connection,
        room: SessionRoom,
        message: MediaPublish | MediaSubscribe | MediaPreview | MediaLeave,
    ) -> None:
        media = self.media
        if media is None:
            self._error(conn, message.id, ErrorCode.MEDIA_UNAVAILABLE, "media is not enabled")
            return
        if room.status not in ("open", "live") and not isinstance(message, MediaLeave):
            self._error(
                conn,
                message.id,
                ErrorCode.MEDIA_UNAVAILABLE,
                "media runs while the session is open or live",
                {"status": room.status},
            )
            return
        try:
            if isinstance(message, MediaPublish | MediaSubscribe):
                started = time.monotonic()
                call = media.publish if isinstance(message, MediaPublish) else media.subscribe
                answer = await call(conn, message.sdp)
                self.metrics.media_negotiation.observe(time.monotonic() - started)
                result: dict[str, Any] = {
                    "sdp": answer.sdp,
                    "kinds": list(answer.kinds),
                    "codecs": dict(answer.codecs),
                }
            elif isinstance(message, MediaPreview):
                point_id = None
                if message.point_code is not None:
                    live = room.by_code.get(message.point_code)
                    if live is None:
                        self._error(
                            conn,
                            message.id,
                            ErrorCode.NOT_FOUND,
                            "no such point in this session",
                            {"point_code": message.point_code},
                        )
                        return
                    point_id = live.point_id
                await media.preview(conn, point_id)
                result = {"point_code": message.point_code}
            else:
                await media.leave(conn)
                result = {}
        except MediaRefused as exc:
            self._error(conn, message.id, exc.code, exc.message, exc.details)
            return
        conn.send(Ack(id=message.id, result=result).model_dump_json())
