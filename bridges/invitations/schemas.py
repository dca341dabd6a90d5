"""Wire shapes of invitations and join links."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridges.directory.schemas import Code

CodeList = Annotated[list[Code], Field(max_length=10_000)]


class PointSelector(BaseModel):
    """Which points: all active ones, or those of some districts/provinces, or a list of codes."""

    model_config = ConfigDict(extra="forbid")

    all: bool = False
    district_codes: CodeList = Field(default_factory=list)
    province_codes: CodeList = Field(default_factory=list)
    point_codes: CodeList = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_chosen(self) -> PointSelector:
        chosen = self.district_codes or self.province_codes or self.point_codes
        if self.all and chosen:
            raise ValueError("choose either all points or districts/provinces/codes, not both")
        if not self.all and not chosen:
            raise ValueError("choose all points, or some districts, provinces or point codes")
        return self


class InviteRequest(PointSelector):
    expected_attendees: int | None = Field(
        default=None, ge=0, le=100_000, description="Default: each point's capacity."
    )


class InviteResult(BaseModel):
    invited: int
    already_invited: int
    reinstated: int
    total_invited: int


class InvitationRead(BaseModel):
    point_code: str
    point_name: str
    district_code: str | None
    district_name: str | None
    province_code: str | None
    province_name: str | None
    expected_attendees: int | None
    has_credential: bool
    credential_issued_at: datetime | None
    revoked: bool
    invited_at: datetime


class InvitationPage(BaseModel):
    items: list[InvitationRead]
    total: int
    limit: int
    offset: int


class JoinLinksRequest(BaseModel):
    """Mint join links: for invitations without one, or (rotate) replacing existing ones."""

    model_config = ConfigDict(extra="forbid")

    point_codes: CodeList = Field(default_factory=list, description="Default: every invitation.")
    district_codes: CodeList = Field(default_factory=list)
    province_codes: CodeList = Field(default_factory=list)
    rotate: bool = Field(
        default=False, description="Replace existing credentials too; old links stop working."
    )


class JoinLink(BaseModel):
    point_code: str
    point_name: str
    district_name: str | None
    province_name: str | None
    credential: str
    link: str


class JoinLinks(BaseModel):
    session_id: int
    issued: int
    skipped_with_credential: int
    links: list[JoinLink]


class JoinIdentity(BaseModel):
    """What a join credential stands for; shown on the point page before joining."""

    session_id: int
    session_title: str
    session_status: str
    hall_name: str
    point_code: str
    point_name: str
    district_name: str | None
    province_name: str | None
    admitted: bool
