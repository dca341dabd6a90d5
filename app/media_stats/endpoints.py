"""GET /api/v1/sessions/{id}/media: what every participant's peers carry, live.

The wall shows presence from signaling; this shows what the media plane itself sees (packets in and
out per kind, NACKs, keyframe requests, which worker), so an operator can tell a ward whose
WebSocket is fine but whose camera never arrived.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from app.auth.principal import STAFF, StaffPrincipal
from app.deps import Db, State, require
from app.errors import NotFound
from media.errors import MediaRoomNotFound
from models import ConferenceSession, Point
from signaling.media import room_name

router = APIRouter(tags=["media"])
Reader = Annotated[StaffPrincipal, Depends(require(STAFF))]


class KindStatsRead(BaseModel):
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    dropped: int
    nacks_in: int
    retransmits: int
    plis_in: int
    plis_up: int
    keyframes: int
    codec: str | None


class ParticipantRead(BaseModel):
    participant: str
    point_code: str | None
    point_name: str | None
    worker: int
    publisher_state: str | None
    subscriber_state: str | None
    published: dict[str, KindStatsRead]
    received: dict[str, KindStatsRead]
    routes: dict[str, str | None]


class BackendRead(BaseModel):
    workers: int
    peers: int
    forwarded_packets: int
    decoders_created: int
    encoders_created: int


class SessionMediaRead(BaseModel):
    session_id: int
    backend: BackendRead
    participants: list[ParticipantRead]


@router.get("/sessions/{session_id}/media", response_model=SessionMediaRead)
async def session_media(session_id: int, state: State, db: Db, _: Reader) -> SessionMediaRead:
    if await db.get(ConferenceSession, session_id) is None:
        raise NotFound("session not found", details={"session_id": session_id})
    try:
        found = await state.media.stats(room_name(session_id))
    except MediaRoomNotFound:
        found = {}
    point_ids = [int(name[1:]) for name in found if name[:1] == "p" and name[1:].isdigit()]
    points = {}
    if point_ids:
        rows = await db.execute(
            select(Point.id, Point.code, Point.name).where(Point.id.in_(point_ids))
        )
        points = {row.id: (row.code, row.name) for row in rows}
    participants = []
    for name, stats in sorted(found.items()):
        code, point_name = (None, None)
        if name[:1] == "p" and name[1:].isdigit():
            code, point_name = points.get(int(name[1:]), (None, None))
        participants.append(
            ParticipantRead(
                participant=name,
                point_code=code,
                point_name=point_name,
                worker=stats.worker,
                publisher_state=stats.publisher_state,
                subscriber_state=stats.subscriber_state,
                published={
                    k: KindStatsRead(**dataclasses.asdict(v)) for k, v in stats.published.items()
                },
                received={
                    k: KindStatsRead(**dataclasses.asdict(v)) for k, v in stats.received.items()
                },
                routes=dict(stats.routes),
            )
        )
    backend = await state.media.backend_stats()
    return SessionMediaRead(
        session_id=session_id,
        backend=BackendRead(
            workers=backend.workers,
            peers=backend.peers,
            forwarded_packets=backend.forwarded_packets,
            decoders_created=backend.decoders_created,
            encoders_created=backend.encoders_created,
        ),
        participants=participants,
    )
