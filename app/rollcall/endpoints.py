"""Roll-call over HTTP for the control desk, and the attendance report in four forms.

Writes go through the same live desk as the WebSocket (signaling/rollcall.py), so an HTTP open or
close is stepped, committed and broadcast exactly like one from the console's socket, and answered
only after its commit. Points confirm over the WebSocket only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, StringConstraints, TypeAdapter
from sqlalchemy import select

from app.attendance.build import build_report, merge_intervals
from app.attendance.export import csv_bytes, html_text, xlsx_bytes
from app.attendance.model import AttendanceReport
from app.auth.principal import OPERATORS, STAFF, StaffPrincipal
from app.deps import Db, State, require
from app.errors import Conflict, DiemcauError, Forbidden, NotFound, ValidationFailed
from app.sessions.schemas import StrictModel
from models import ConferenceSession, Point, PresenceInterval
from signaling.protocol import (
    RollcallAreaCounts,
    RollcallMessage,
    RollcallRecordView,
    RollcallRoundView,
)
from signaling.rollcall import (
    IdempotencyConflict,
    RollcallDesk,
    RollcallForbidden,
    RollcallInputError,
    StorageUnavailable,
)

router = APIRouter(tags=["roll-call"])
Reader = Annotated[StaffPrincipal, Depends(require(STAFF))]
Operator = Annotated[StaffPrincipal, Depends(require(OPERATORS))]
Lang = Annotated[Literal["vi", "en"], Query(description="Language of the report's words.")]


class Unavailable(DiemcauError):
    code: ClassVar[str] = "unavailable"
    status: ClassVar[int] = 503


class RoundOpen(StrictModel):
    deadline_s: float | None = Field(
        default=None,
        ge=10,
        le=3600,
        allow_inf_nan=False,
        description="Default: the session's rollcall_deadline_s.",
    )
    message: Annotated[str, StringConstraints(max_length=300)] = ""


class RecordMark(StrictModel):
    """`excused`, or a correction to any status; always with a reason."""

    status: Literal["present", "late", "absent", "excused"]
    headcount: int | None = Field(default=None, ge=0, le=100_000)
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class RoundDetail(BaseModel):
    session_id: int
    round: RollcallRoundView
    areas: list[RollcallAreaCounts]
    records: list[RollcallRecordView]


class RoundList(BaseModel):
    session_id: int
    rounds: list[RollcallRoundView]


async def _desk(state: State, db: Db, session_id: int) -> RollcallDesk:
    if await db.get(ConferenceSession, session_id) is None:
        raise NotFound("session not found", details={"session_id": session_id})
    # The desk commits in its own transactions; on SQLite this request's transaction would hold
    # the write lock they wait for.
    await db.commit()
    room = await state.signaling.room(session_id)
    return state.signaling.rollcalls[room.session_id]


async def _run(
    state: State, db: Db, session_id: int, principal: StaffPrincipal, **fields: Any
) -> dict[str, Any]:
    desk = await _desk(state, db, session_id)
    room = state.signaling.rooms[session_id]
    if room.status not in ("open", "live"):
        raise Conflict(
            "roll-call runs while the session is open or live",
            details={"machine": "rollcall", "state": room.status, "command": fields["action"]},
        )
    message = RollcallMessage(type="rollcall", id="http", **fields)
    try:
        return await desk.handle(message, role="operator", point_id=None, actor=principal.actor)
    except RollcallForbidden as exc:
        raise Forbidden(exc.message, details=exc.details) from exc
    except IdempotencyConflict as exc:
        raise Conflict(exc.message, details=exc.details) from exc
    except StorageUnavailable as exc:
        raise Unavailable(exc.message, details=exc.details) from exc
    except RollcallInputError as exc:
        raise ValidationFailed(exc.message, details=exc.details) from exc


def _detail(desk: RollcallDesk, session_id: int, number: int) -> RoundDetail:
    round_ = desk.state.round(number)
    if round_ is None:
        raise NotFound("no such round", details={"round": number})
    return RoundDetail(
        session_id=session_id,
        round=desk.view(number),
        areas=desk.area_view(number),
        records=sorted(
            (desk.record_view(round_, point) for point in round_.limits),
            key=lambda r: r.point_code,
        ),
    )


@router.get("/sessions/{session_id}/rollcalls", response_model=RoundList)
async def list_rounds(session_id: int, state: State, db: Db, _: Reader) -> RoundList:
    desk = await _desk(state, db, session_id)
    return RoundList(
        session_id=session_id,
        rounds=[desk.view(r.number) for r in desk.state.rounds],
    )


@router.post("/sessions/{session_id}/rollcalls", response_model=RoundDetail, status_code=201)
async def open_round(
    session_id: int, body: RoundOpen, state: State, db: Db, principal: Operator
) -> RoundDetail:
    result = await _run(
        state,
        db,
        session_id,
        principal,
        action="open",
        deadline_s=body.deadline_s,
        message=body.message,
    )
    desk = state.signaling.rollcalls[session_id]
    return _detail(desk, session_id, int(result["round"]))


@router.get("/sessions/{session_id}/rollcalls/{number}", response_model=RoundDetail)
async def get_round(session_id: int, number: int, state: State, db: Db, _: Reader) -> RoundDetail:
    return _detail(await _desk(state, db, session_id), session_id, number)


@router.post("/sessions/{session_id}/rollcalls/{number}/close", response_model=RoundDetail)
async def close_round(
    session_id: int, number: int, state: State, db: Db, principal: Operator
) -> RoundDetail:
    await _run(state, db, session_id, principal, action="close", round=number)
    return _detail(state.signaling.rollcalls[session_id], session_id, number)


@router.post(
    "/sessions/{session_id}/rollcalls/{number}/records/{point_code}",
    response_model=RollcallRecordView,
)
async def mark_record(
    session_id: int,
    number: int,
    point_code: str,
    body: RecordMark,
    state: State,
    db: Db,
    principal: Operator,
) -> RollcallRecordView:
    if body.status == "excused":
        fields: dict[str, Any] = {"action": "excuse"}
    else:
        fields = {"action": "correct", "status": body.status, "headcount": body.headcount}
    await _run(
        state,
        db,
        session_id,
        principal,
        round=number,
        point_code=point_code,
        reason=body.reason,
        **fields,
    )
    desk = state.signaling.rollcalls[session_id]
    round_ = desk.state.round(number)
    assert round_ is not None
    point = next(p for p, (code, _, _) in desk.invited().items() if code == point_code)
    return desk.record_view(round_, point)


# ---- one point's presence ---------------------------------------------------------------------


class StayRead(BaseModel):
    connected_at: datetime
    disconnected_at: datetime | None


class PresenceRead(BaseModel):
    session_id: int
    point_code: str
    connected_s: float
    stays: list[StayRead]


@router.get("/sessions/{session_id}/presence/{point_code}", response_model=PresenceRead)
async def point_presence(
    session_id: int, point_code: str, state: State, db: Db, _: Reader
) -> PresenceRead:
    """One point's connected intervals, merged across reconnects (the wall's tile details)."""
    await db.commit()
    async with state.signaling.readers() as reader:
        point = await reader.scalar(select(Point).where(Point.code == point_code))
        if point is None or await reader.get(ConferenceSession, session_id) is None:
            raise NotFound("no such point or session", details={"point_code": point_code})
        rows = await reader.scalars(
            select(PresenceInterval).where(
                PresenceInterval.session_id == session_id, PresenceInterval.point_id == point.id
            )
        )
        spans = [(r.connected_at, r.disconnected_at) for r in rows]
    now = datetime.now(UTC)
    stays = merge_intervals([(_utc(a), _utc(b) if b is not None else None) for a, b in spans], now)
    return PresenceRead(
        session_id=session_id,
        point_code=point_code,
        connected_s=sum(
            ((s.disconnected_at or now) - s.connected_at).total_seconds() for s in stays
        ),
        stays=[
            StayRead(connected_at=s.connected_at, disconnected_at=s.disconnected_at) for s in stays
        ],
    )


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ---- the attendance report -------------------------------------------------------------------

REPORT = TypeAdapter(AttendanceReport)


async def _report(state: State, db: Db, session_id: int) -> AttendanceReport:
    """Built in a read-only transaction: on SQLite the request's own would hold the write lock
    that confirmations are waiting for while thousands of rows are read."""
    await db.commit()
    async with state.signaling.readers() as reader:
        return await build_report(reader, session_id)


def _filename(report: AttendanceReport, extension: str) -> str:
    stamp = report.generated_at.strftime("%Y%m%d-%H%M")
    return f"diem-danh-phien-{report.session_id}-{stamp}.{extension}"


def _attachment(name: str) -> dict[str, str]:
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return {"Content-Disposition": f'attachment; filename="{ascii_name}"'}


@router.get("/sessions/{session_id}/attendance")
async def attendance_json(session_id: int, state: State, db: Db, _: Reader) -> Any:
    """Points × rounds, connected intervals and speaking time, as data (times in UTC)."""
    return REPORT.dump_python(await _report(state, db, session_id), mode="json")


@router.get("/sessions/{session_id}/attendance.csv", response_class=Response)
async def attendance_csv(
    session_id: int, state: State, db: Db, _: Reader, lang: Lang = "vi"
) -> Response:
    report = await _report(state, db, session_id)
    return Response(
        csv_bytes(report, lang=lang),
        media_type="text/csv; charset=utf-8",
        headers=_attachment(_filename(report, "csv")),
    )


@router.get("/sessions/{session_id}/attendance.xlsx", response_class=Response)
async def attendance_xlsx(
    session_id: int, state: State, db: Db, _: Reader, lang: Lang = "vi"
) -> Response:
    report = await _report(state, db, session_id)
    return Response(
        xlsx_bytes(report, lang=lang),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers=_attachment(_filename(report, "xlsx")),
    )


@router.get("/sessions/{session_id}/attendance.html", response_class=HTMLResponse)
async def attendance_html(
    session_id: int, state: State, db: Db, _: Reader, lang: Lang = "vi"
) -> HTMLResponse:
    return HTMLResponse(html_text(await _report(state, db, session_id), lang=lang))
