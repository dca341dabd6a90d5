"""The media plane as the live protocol sees it: who may publish, which slots a role receives,
which participant a connection is, and when its peers go away.

The identity a peer gets comes from the connection's credential or token, never from the message:
a point can only ever publish as itself, and only the hall role publishes the program.
"""

from __future__ import annotations

import asyncio
import logging
import time

from app.errors import DiemcauError
from app.settings import Settings
from media.errors import (
    MediaCodecUnsupported,
    MediaOfferInvalid,
    MediaParticipantNotFound,
    MediaRoomNotFound,
)
from media.ice import check_ice_settings, ice_servers_for
from media.interface import ANY, MediaBackend, PeerAnswer, SinkKey
from signaling.codes import CloseCode, ErrorCode
from signaling.connection import Connection
from signaling.protocol import IceServerInfo, MediaInfo

logger = logging.getLogger("diemcau.signaling.media")

HALL = "hall"
PROGRAM, FLOOR, PREVIEW = "program", "floor", "preview"
SLOTS_BY_ROLE: dict[str, tuple[str, ...]] = {
    "point": (PROGRAM, FLOOR),
    "hall": (FLOOR, PREVIEW),
    "operator": (PROGRAM, FLOOR, PREVIEW),
    "moderator": (PROGRAM, FLOOR, PREVIEW),
    "observer": (PROGRAM, FLOOR),
}
PREVIEW_ROLES = frozenset({"operator", "moderator", "hall"})
PUB, SUB = "publisher", "subscriber"


class MediaRefused(Exception):
    def __init__(self, code: ErrorCode, message: str, details: dict[str, object] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}


def participant_of(conn: Connection) -> str:
    if conn.point_id is not None:
        return f"p{conn.point_id}"
    if conn.role == "hall":
        return HALL
    return f"s{conn.id}"


def point_participant(point_id: int) -> str:
    return f"p{point_id}"


def room_name(session_id: int) -> str:
    return f"session-{session_id}"


def _typed(exc: DiemcauError) -> MediaRefused:
    if isinstance(exc, MediaOfferInvalid):
        code = ErrorCode.MEDIA_OFFER_INVALID
    elif isinstance(exc, MediaCodecUnsupported):
        code = ErrorCode.MEDIA_CODEC_UNSUPPORTED
    elif isinstance(exc, MediaRoomNotFound | MediaParticipantNotFound):
        code = ErrorCode.NOT_FOUND
    else:
        code = ErrorCode.MEDIA_UNAVAILABLE
    return MediaRefused(code, exc.message, {"reason": exc.code, **exc.details})


class MediaGateway:
    """Thin shell between connections and the backend; all media decisions by role live here."""

    def __init__(self, settings: Settings, backend: MediaBackend) -> None:
        self.settings = settings
        self.backend = backend
        self.ice = check_ice_settings(settings)
        self._rooms: set[str] = set()
        self._room_lock = asyncio.Lock()
        # Who set up each direction of a participant's media: (room, participant, PUB | SUB).
        self._owners: dict[tuple[str, str, str], Connection] = {}
        self._expiry: dict[tuple[str, str, str], asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def info(self, conn: Connection, session_end: float | None) -> MediaInfo:
        participant = participant_of(conn)
        servers = ice_servers_for(self.ice, participant, now=time.time(), not_after=session_end)
        return MediaInfo(
            participant=participant,
            can_publish=conn.point_id is not None or conn.role == "hall",
            slots=list(SLOTS_BY_ROLE.get(conn.role, ())),
            ice_servers=[
                IceServerInfo(urls=list(s.urls), username=s.username, credential=s.credential)
                for s in servers
            ],
        )

    async def ensure_room(self, session_id: int) -> str:
        name = room_name(session_id)
        if name in self._rooms:
            return name
        async with self._room_lock:
            if name not in self._rooms:
                await self.backend.create_room(name)
                await self.backend.route(name, {SinkKey(ANY, PROGRAM): HALL})
                self._rooms.add(name)
        return name

    def _claim(self, conn: Connection, room: str, part: str) -> str:
        participant = participant_of(conn)
        key = (room, participant, part)
        self._owners[key] = conn
        handle = self._expiry.pop(key, None)
        if handle is not None:
            handle.cancel()
        return participant

    def disown(self, session_id: int, participant: str, part: str) -> None:
        """Something other than a connection (WHIP) now holds this direction: no connection's
        departure may close it."""
        key = (room_name(session_id), participant, part)
        self._owners.pop(key, None)
        handle = self._expiry.pop(key, None)
        if handle is not None:
            handle.cancel()

    async def publish(self, conn: Connection, sdp: str) -> PeerAnswer:
        if conn.point_id is None and conn.role != "hall":
            raise MediaRefused(
                ErrorCode.FORBIDDEN,
                "only points and the hall publish media",
                {"role": conn.role},
            )
        room = await self.ensure_room(conn.session_id)
        participant = participant_of(conn)
        try:
            answer = await self.backend.add_publisher(
                room, participant, sdp, role="point" if conn.point_id is not None else "hall"
            )
        except DiemcauError as exc:
            raise _typed(exc) from None
        self._claim(conn, room, PUB)
        return answer

    async def subscribe(self, conn: Connection, sdp: str) -> PeerAnswer:
        slots = SLOTS_BY_ROLE.get(conn.role)
        if not slots:
            raise MediaRefused(ErrorCode.FORBIDDEN, "this role receives no media")
        room = await self.ensure_room(conn.session_id)
        participant = participant_of(conn)
        try:
            answer = await self.backend.add_subscriber(room, participant, sdp, slots=slots)
        except DiemcauError as exc:
            raise _typed(exc) from None
        self._claim(conn, room, SUB)
        return answer

    async def preview(self, conn: Connection, point_id: int | None) -> None:
        if conn.role not in PREVIEW_ROLES:
            raise MediaRefused(
                ErrorCode.FORBIDDEN,
                "only operators, moderators and the hall preview points",
                {"role": conn.role},
            )
        room = await self.ensure_room(conn.session_id)
        source = point_participant(point_id) if point_id is not None else None
        try:
            await self.backend.route(room, {SinkKey(participant_of(conn), PREVIEW): source})
        except DiemcauError as exc:
            raise _typed(exc) from None

    def _owned(self, conn: Connection) -> list[tuple[str, str, str]]:
        room, participant = room_name(conn.session_id), participant_of(conn)
        return [
            (room, participant, part)
            for part in (PUB, SUB)
            if self._owners.get((room, participant, part)) is conn
        ]

    async def route_floor(self, session_id: int, point_id: int | None) -> None:
        """Floor control's call: the holder's audio and video to everyone's `floor` slot."""
        room = await self.ensure_room(session_id)
        source = point_participant(point_id) if point_id is not None else None
        try:
            await self.backend.route(room, {SinkKey(ANY, FLOOR): source})
        except DiemcauError:
            logger.exception("the floor of session %s could not be routed", session_id)

    async def leave(self, conn: Connection) -> None:
        for key in self._owned(conn):
            del self._owners[key]
            await self._remove(*key)

    def adopt(self, conn: Connection) -> None:
        """A participant's new connection (a resume) takes over the media its last one set up."""
        room, participant = room_name(conn.session_id), participant_of(conn)
        for part in (PUB, SUB):
            key = (room, participant, part)
            handle = self._expiry.pop(key, None)
            if handle is not None:
                handle.cancel()
            if key in self._owners:
                self._owners[key] = conn

    def disconnected(self, conn: Connection) -> None:
        """A dropped connection keeps its media for the resume window: a point whose WebSocket
        blinks keeps its picture; if it does not come back, its peers are closed. A point that
        left, was revoked or whose session ended loses its media at once."""
        dropped = conn.close_code in (None, CloseCode.HEARTBEAT_TIMEOUT, CloseCode.OVERFLOW)
        delay = self.settings.resume_window_s if conn.point_id is not None and dropped else 0.0
        loop = asyncio.get_running_loop()
        for key in self._owned(conn):

            def expire(key: tuple[str, str, str] = key) -> None:
                self._expiry.pop(key, None)
                if self._owners.get(key) is conn:
                    del self._owners[key]
                    task = loop.create_task(self._remove(*key))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)

            self._expiry[key] = loop.call_later(delay, expire)

    async def _remove(self, room: str, participant: str, part: str) -> None:
        try:
            if part == PUB:
                await self.backend.remove_publisher(room, participant)
            else:
                await self.backend.remove_subscriber(room, participant)
        except DiemcauError:
            logger.warning("media of %s in %s could not be closed", participant, room)

    async def close_session(self, session_id: int) -> None:
        name = room_name(session_id)
        if name in self._rooms:
            self._rooms.discard(name)
            for key in [k for k in self._owners if k[0] == name]:
                del self._owners[key]
                handle = self._expiry.pop(key, None)
                if handle is not None:
                    handle.cancel()
            await self.backend.close_room(name)

    async def stop(self) -> None:
        for handle in self._expiry.values():
            handle.cancel()
        self._expiry.clear()
        for task in list(self._tasks):
            task.cancel()
