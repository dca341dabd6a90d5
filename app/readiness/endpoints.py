"""Readiness before going live: each point's device and network check, and QR codes of join links.

A point's page reports its check (camera, microphone, round trip to the server) with its join
credential; the report is a staff-only session event (`point.readiness`), so the board survives a
restart and the console sees reports arrive live. The board is the latest report per point.
"""

from __future__ import annotations

import io
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.auth.principal import STAFF, StaffPrincipal
from app.deps import Db, require
from app.errors import NotFound
from app.events.service import append_event
from bridges.invitations import service
from models import ConferenceSession, Invitation, Point, SessionEvent

router = APIRouter(tags=["readiness"])
Reader = Annotated[StaffPrincipal, Depends(require(STAFF))]
READINESS_EVENT = "point.readiness"


class ReadinessReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: str = Field(min_length=1, max_length=200)
    camera: bool
    microphone: bool
    rtt_ms: float | None = Field(default=None, ge=0, le=60_000, allow_inf_nan=False)
    camera_label: str = Field(default="", max_length=200)
    microphone_label: str = Field(default="", max_length=200)


class PointReadiness(BaseModel):
    point_code: str
    camera: bool
    microphone: bool
    rtt_ms: float | None
    camera_label: str
    microphone_label: str
    at: str
    ready: bool


class ReadinessBoard(BaseModel):
    session_id: int
    invited: int
    reported: int
    ready: int
    not_checked: list[str] = Field(description="Invited points that have not run their check yet.")
    points: list[PointReadiness]


class QrRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=1000)


def _ready(payload: dict[str, Any]) -> bool:
    return bool(payload.get("camera")) and bool(payload.get("microphone"))


@router.post("/join/readiness", status_code=204)
async def report_readiness(body: ReadinessReport, db: Db) -> Response:
    """A point's device and network check, from its page (authenticated by its join link)."""
    identity = await service.resolve_credential(db, body.credential)
    await append_event(
        db,
        identity.session_id,
        READINESS_EVENT,
        f"point:{identity.point_code}",
        {
            "point_code": identity.point_code,
            **body.model_dump(exclude={"credential"}),
            "ready": body.camera and body.microphone,
        },
    )
    return Response(status_code=204)


@router.get("/sessions/{session_id}/readiness", response_model=ReadinessBoard)
async def readiness_board(session_id: int, db: Db, _: Reader) -> ReadinessBoard:
    if await db.get(ConferenceSession, session_id) is None:
        raise NotFound("session not found", details={"session_id": session_id})
    latest: dict[str, PointReadiness] = {}
    for row in await db.scalars(
        select(SessionEvent)
        .where(SessionEvent.session_id == session_id, SessionEvent.type == READINESS_EVENT)
        .order_by(SessionEvent.seq)
    ):
        p = row.payload
        latest[str(p["point_code"])] = PointReadiness(
            point_code=str(p["point_code"]),
            camera=bool(p.get("camera")),
            microphone=bool(p.get("microphone")),
            rtt_ms=p.get("rtt_ms"),
            camera_label=str(p.get("camera_label", "")),
            microphone_label=str(p.get("microphone_label", "")),
            at=row.created_at.isoformat(),
            ready=_ready(p),
        )
    points = [latest[code] for code in sorted(latest)]
    invited = list(
        await db.scalars(
            select(Point.code)
            .join(Invitation, Invitation.point_id == Point.id)
            .where(Invitation.session_id == session_id, Invitation.revoked.is_(False))
            .order_by(Point.code)
        )
    )
    return ReadinessBoard(
        session_id=session_id,
        invited=len(invited),
        not_checked=[code for code in invited if code not in latest],
        reported=len(points),
        ready=sum(p.ready for p in points),
        points=points,
    )


@router.post("/qr", response_class=Response)
async def qr_code(body: QrRequest, _: Reader) -> Response:
    """A QR code (SVG) of a join link, made here so that the page needs no library."""
    out = io.BytesIO()
    segno.make(body.text, error="m").save(out, kind="svg", scale=6, border=2)
    return Response(
        out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
    )
