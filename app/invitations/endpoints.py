"""Invitations, join links and credentials of one session; and the join-credential check."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from app.auth.principal import OPERATORS, STAFF, StaffPrincipal
from app.deps import Db, Page, State, require
from bridges.invitations import service
from bridges.invitations.export import links_csv
from bridges.invitations.schemas import (
    InvitationPage,
    InvitationRead,
    InviteRequest,
    InviteResult,
    JoinIdentity,
    JoinLink,
    JoinLinks,
    JoinLinksRequest,
)

router = APIRouter(prefix="/sessions/{session_id}", tags=["invitations"])
join_router = APIRouter(prefix="/join", tags=["join"])
Reader = Annotated[StaffPrincipal, Depends(require(STAFF))]
Operator = Annotated[StaffPrincipal, Depends(require(OPERATORS))]


@router.get("/invitations", response_model=InvitationPage)
async def list_invitations(
    session_id: int,
    db: Db,
    _: Reader,
    page: Page,
    q: Annotated[str | None, Query(max_length=200)] = None,
    district_code: Annotated[str | None, Query(max_length=16)] = None,
    province_code: Annotated[str | None, Query(max_length=16)] = None,
) -> InvitationPage:
    limit, offset = page
    items, total = await service.list_invitations(
        db,
        session_id,
        q=q,
        district_code=district_code,
        province_code=province_code,
        limit=limit,
        offset=offset,
    )
    return InvitationPage(items=items, total=total, limit=limit, offset=offset)


@router.post("/invitations", response_model=InviteResult)
async def invite(session_id: int, body: InviteRequest, db: Db, principal: Operator) -> InviteResult:
    """Invite all active points, those of some districts/provinces, or a list of codes (idempotent)."""
    return await service.invite(db, session_id, body, actor=principal.actor)


@router.get("/invitations/{code}", response_model=InvitationRead)
async def get_invitation(session_id: int, code: str, db: Db, _: Reader) -> InvitationRead:
    return await service.get_invitation(db, session_id, code)


@router.post("/invitations/{code}/revoke", response_model=InvitationRead)
async def revoke(session_id: int, code: str, db: Db, principal: Operator) -> InvitationRead:
    """Withdraw a point's invitation; its join link stops working at once."""
    return await service.revoke_invitation(db, session_id, code, actor=principal.actor)


@router.post("/invitations/{code}/credential", response_model=JoinLink)
async def rotate(session_id: int, code: str, db: Db, state: State, principal: Operator) -> JoinLink:
    """A new join link for one point (reinstating a revoked one); the old link stops working."""
    return await service.rotate_credential(
        db, session_id, code, public_url=state.settings.effective_public_url, actor=principal.actor
    )


@router.post(
    "/join-links",
    response_model=JoinLinks,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}},
)
async def issue_join_links(
    session_id: int,
    body: JoinLinksRequest,
    db: Db,
    state: State,
    principal: Operator,
    format: Literal["json", "csv"] = "json",
) -> JoinLinks | Response:
    """Mint join links; this response is the only time the credentials are shown."""
    links = await service.issue_join_links(
        db, session_id, body, public_url=state.settings.effective_public_url, actor=principal.actor
    )
    if format == "csv":
        return Response(
            links_csv(links),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="session-{session_id}-join-links.csv"',
                "Cache-Control": "no-store",
            },
        )
    return links


class JoinCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential: str = Field(min_length=1, max_length=200)


@join_router.post("/verify", response_model=JoinIdentity)
async def verify_join(body: JoinCheck, db: Db) -> JoinIdentity:
    """What a join credential stands for (the point page shows it before joining)."""
    return await service.resolve_credential(db, body.credential)
