"""Wire shapes of the WHIP token endpoints (the WHIP exchange itself is SDP, not JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bridges.directory.schemas import NoNul

Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), NoNul]


class WhipTokenCreate(BaseModel):
    """Required as a body (`{}` will do), like every other body of the API."""

    model_config = ConfigDict(extra="forbid")

    label: Label = Field(
        default="",
        description="A name for the encoder this token is for, shown in the list (no secret).",
    )


class WhipTokenRead(BaseModel):
    id: int
    label: str
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked: bool
    revoked_at: datetime | None
    in_use: bool = Field(description="The program is being published with this token right now.")


class WhipTokenIssued(WhipTokenRead):
    token: str = Field(description="The bearer token: shown in this response only, never again.")
    whip_url: str = Field(description="The WHIP endpoint an encoder publishes to.")


class WhipTokenList(BaseModel):
    whip_url: str
    items: list[WhipTokenRead]
