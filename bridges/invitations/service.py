"""Inviting points to a session and minting, rotating and revoking their join credentials.

Every query here is scoped by session id: a point code that is invited to another session is simply
not found in this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidTransition, NotFound, Unauthenticated, ValidationFailed
from app.events.service import append_event
from app.sessions import lifecycle
from app.sessions.service import get_session
from bridges.directory.text import fold
from bridges.invitations.credentials import hash_credential, join_link, new_credential
from bridges.invitations.schemas import (
    InvitationRead,
    InviteRequest,
    InviteResult,
    JoinIdentity,
    JoinLink,
    JoinLinks,
    JoinLinksRequest,
)
from models import ConferenceSession, Invitation, Point
from models.base import utcnow

_CHUNK = 500
_MAX_LISTED = 100


async def _editable_session(db: AsyncSession, session_id: int, command: str) -> ConferenceSession:
    session = await get_session(db, session_id, for_update=True)
    if session.status not in lifecycle.EDITABLE:
        raise InvalidTransition("session", session.status.value, command)
    return session


async def _points_by_codes(db: AsyncSession, codes: Sequence[str]) -> dict[str, Point]:
    found: dict[str, Point] = {}
    unique = list(dict.fromkeys(codes))
    for start in range(0, len(unique), _CHUNK):
        rows = await db.scalars(select(Point).where(Point.code.in_(unique[start : start + _CHUNK])))
        found.update({p.code: p for p in rows})
    return found


async def _require_known_areas(
    db: AsyncSession, district_codes: Sequence[str], province_codes: Sequence[str]
) -> None:
    """Refuse district or province codes that no point of the directory carries."""
    for column, codes, label in (
        (Point.district_code, district_codes, "district"),
        (Point.province_code, province_codes, "province"),
    ):
        if not codes:
            continue
        present = set(await db.scalars(select(column).where(column.in_(codes)).distinct()))
        unknown = [c for c in codes if c not in present]
        if unknown:
            raise ValidationFailed(
                f"no points in {label}(s) " + ", ".join(unknown[:10]),
                details={f"unknown_{label}_codes": unknown[:_MAX_LISTED]},
            )


async def _select_points(db: AsyncSession, request: InviteRequest) -> list[Point]:
    if request.point_codes:
        found = await _points_by_codes(db, request.point_codes)
        unknown = [c for c in request.point_codes if c not in found]
        if unknown:
            raise ValidationFailed(
                f"{len(unknown)} point code(s) are not in the directory",
                details={"unknown_codes": unknown[:_MAX_LISTED]},
            )
        inactive = [c for c, p in found.items() if not p.active]
        if inactive:
            raise ValidationFailed(
                f"{len(inactive)} point(s) are inactive",
                details={"inactive_codes": inactive[:_MAX_LISTED]},
            )
        return list(found.values())
    statement = select(Point).where(Point.active.is_(True))
    if not request.all:
        await _require_known_areas(db, request.district_codes, request.province_codes)
        conditions = []
        if request.district_codes:
            conditions.append(Point.district_code.in_(request.district_codes))
        if request.province_codes:
            conditions.append(Point.province_code.in_(request.province_codes))
        statement = statement.where(or_(*conditions))
    return list(await db.scalars(statement.order_by(Point.code)))


async def invite(
    db: AsyncSession, session_id: int, request: InviteRequest, *, actor: str
) -> InviteResult:
    await _editable_session(db, session_id, "invite")
    points = await _select_points(db, request)
    existing = {
        inv.point_id: inv
        for inv in await db.scalars(select(Invitation).where(Invitation.session_id == session_id))
    }
    now = utcnow()
    new_rows: list[dict[str, Any]] = []
    added_codes: list[str] = []
    reinstated = 0
    already = 0
    for point in points:
        current = existing.get(point.id)
        expected = (
            request.expected_attendees if request.expected_attendees is not None else point.capacity
        )
        if current is None:
            new_rows.append(
                {
                    "session_id": session_id,
                    "point_id": point.id,
                    "expected_attendees": expected,
                    "revoked": False,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            added_codes.append(point.code)
        elif current.revoked:
            current.revoked = False
            current.revoked_at = None
            if request.expected_attendees is not None:
                current.expected_attendees = request.expected_attendees
            reinstated += 1
            added_codes.append(point.code)
        else:
            already += 1
    for start in range(0, len(new_rows), _CHUNK):
        await db.execute(insert(Invitation), new_rows[start : start + _CHUNK])
    if added_codes:
        await append_event(
            db,
            session_id,
            "invitations.added",
            actor,
            {"point_codes": added_codes, "count": len(added_codes)},
        )
    await db.flush()
    total = await db.scalar(
        select(func.count()).where(
            Invitation.session_id == session_id, Invitation.revoked.is_(False)
        )
    )
    return InviteResult(
        invited=len(new_rows),
        already_invited=already,
        reinstated=reinstated,
        total_invited=int(total or 0),
    )


def _invitations_query(session_id: int) -> Select[Invitation, Point]:
    return (
        select(Invitation, Point)
        .join(Point, Point.id == Invitation.point_id)
        .where(Invitation.session_id == session_id)
    )


def _read(invitation: Invitation, point: Point) -> InvitationRead:
    return InvitationRead(
        point_code=point.code,
        point_name=point.name,
        district_code=point.district_code,
        district_name=point.district_name,
        province_code=point.province_code,
        province_name=point.province_name,
        expected_attendees=invitation.expected_attendees,
        has_credential=invitation.credential_hash is not None,
        credential_issued_at=invitation.credential_issued_at,
        revoked=invitation.revoked,
        invited_at=invitation.created_at,
    )


async def list_invitations(
    db: AsyncSession,
    session_id: int,
    *,
    q: str | None = None,
    district_code: str | None = None,
    province_code: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[InvitationRead], int]:
    await get_session(db, session_id)
    statement = _invitations_query(session_id)
    if q:
        key = fold(q)
        statement = statement.where(
            (Point.code == q.strip()) | Point.search_name.contains(key, autoescape=True)
        )
    if district_code:
        statement = statement.where(Point.district_code == district_code)
    if province_code:
        statement = statement.where(Point.province_code == province_code)
    total = await db.scalar(select(func.count()).select_from(statement.subquery()))
    rows = await db.execute(statement.order_by(Point.code).limit(limit).offset(offset))
    return [_read(inv, point) for inv, point in rows], int(total or 0)


async def _invitation(db: AsyncSession, session_id: int, code: str) -> tuple[Invitation, Point]:
    row = (await db.execute(_invitations_query(session_id).where(Point.code == code))).first()
    if row is None:
        raise NotFound(
            "the point is not invited to this session",
            details={"session_id": session_id, "point_code": code},
        )
    return row[0], row[1]


async def get_invitation(db: AsyncSession, session_id: int, code: str) -> InvitationRead:
    await get_session(db, session_id)
    invitation, point = await _invitation(db, session_id, code)
    return _read(invitation, point)


def _mint(invitation: Invitation, point: Point, public_url: str) -> JoinLink:
    credential = new_credential()
    invitation.credential_hash = hash_credential(credential)
    invitation.credential_issued_at = utcnow()
    return JoinLink(
        point_code=point.code,
        point_name=point.name,
        district_name=point.district_name,
        province_name=point.province_name,
        credential=credential,
        link=join_link(public_url, credential),
    )


async def issue_join_links(
    db: AsyncSession, session_id: int, request: JoinLinksRequest, *, public_url: str, actor: str
) -> JoinLinks:
    """Mint credentials; the returned links are the only time they are ever shown."""
    await _editable_session(db, session_id, "issue join links")
    await _require_known_areas(db, request.district_codes, request.province_codes)
    statement = _invitations_query(session_id).where(Invitation.revoked.is_(False))
    if request.point_codes:
        statement = statement.where(Point.code.in_(request.point_codes))
    if request.district_codes:
        statement = statement.where(Point.district_code.in_(request.district_codes))
    if request.province_codes:
        statement = statement.where(Point.province_code.in_(request.province_codes))
    rows = list(await db.execute(statement.order_by(Point.code)))
    if request.point_codes:
        present = {point.code for _, point in rows}
        missing = [c for c in request.point_codes if c not in present]
        if missing:
            raise NotFound(
                f"{len(missing)} point(s) are not invited to this session (or revoked)",
                details={"point_codes": missing[:_MAX_LISTED]},
            )
    links: list[JoinLink] = []
    skipped = 0
    rotated = 0
    for invitation, point in rows:
        if invitation.credential_hash is not None and not request.rotate:
            skipped += 1
            continue
        rotated += invitation.credential_hash is not None
        links.append(_mint(invitation, point, public_url))
    if links:
        await append_event(
            db,
            session_id,
            "credentials.issued",
            actor,
            {
                "count": len(links),
                "rotated": rotated,
                "point_codes": [link.point_code for link in links],
            },
        )
    await db.flush()
    return JoinLinks(
        session_id=session_id, issued=len(links), skipped_with_credential=skipped, links=links
    )


async def rotate_credential(
    db: AsyncSession, session_id: int, code: str, *, public_url: str, actor: str
) -> JoinLink:
    """New credential for one point; a revoked invitation is reinstated by this explicit act."""
    await _editable_session(db, session_id, "rotate credential")
    invitation, point = await _invitation(db, session_id, code)
    reinstated = invitation.revoked
    invitation.revoked = False
    invitation.revoked_at = None
    link = _mint(invitation, point, public_url)
    await append_event(
        db, session_id, "credential.rotated", actor, {"point_code": code, "reinstated": reinstated}
    )
    await db.flush()
    return link


async def revoke_invitation(
    db: AsyncSession, session_id: int, code: str, *, actor: str
) -> InvitationRead:
    await _editable_session(db, session_id, "revoke invitation")
    invitation, point = await _invitation(db, session_id, code)
    if not invitation.revoked:
        invitation.revoked = True
        invitation.revoked_at = utcnow()
        invitation.credential_hash = None
        invitation.credential_issued_at = None
        await append_event(db, session_id, "invitation.revoked", actor, {"point_code": code})
        await db.flush()
    return _read(invitation, point)


async def resolve_credential(db: AsyncSession, credential: str) -> JoinIdentity:
    """Who a join credential stands for; the one entry point for a point's identity."""
    row = (
        await db.execute(
            select(Invitation, Point, ConferenceSession)
            .join(Point, Point.id == Invitation.point_id)
            .join(ConferenceSession, ConferenceSession.id == Invitation.session_id)
            .where(
                Invitation.credential_hash == hash_credential(credential),
                Invitation.revoked.is_(False),
            )
        )
    ).first()
    if row is None:
        raise Unauthenticated("invalid or revoked join credential")
    _, point, session = row
    return JoinIdentity(
        session_id=session.id,
        session_title=session.title,
        session_status=session.status.value,
        hall_name=session.hall_name,
        point_code=point.code,
        point_name=point.name,
        district_name=point.district_name,
        province_name=point.province_name,
        admitted=session.status in lifecycle.ADMITS_POINTS,
    )
