"""Wire and record shapes of the point directory."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

CODE_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._\-]{0,15}$"
PHONE_PATTERN = r"^\+?[0-9][0-9 .\-]{5,30}$"


def _no_nul(value: str) -> str:
    """PostgreSQL text cannot hold NUL: refuse it here rather than fail in the database."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(_no_nul)
Code = Annotated[str, StringConstraints(strip_whitespace=True, pattern=CODE_PATTERN)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), NoNul]
OptionalName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), NoNul]
Kind = Annotated[str, StringConstraints(strip_whitespace=True, max_length=50), NoNul]
Phone = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=PHONE_PATTERN, max_length=32)
]
Capacity = Annotated[int, Field(ge=0, le=100_000)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]


class PointFields(BaseModel):
    """Everything a point carries apart from its code; the shape of one import row too."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    kind: Kind = ""
    district_code: Code | None = None
    district_name: OptionalName | None = None
    province_code: Code | None = None
    province_name: OptionalName | None = None
    contact_name: OptionalName | None = None
    contact_phone: Phone | None = None
    capacity: Capacity | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    active: bool = True


class PointCreate(PointFields):
    code: Code


class PointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    kind: Kind | None = None
    district_code: Code | None = None
    district_name: OptionalName | None = None
    province_code: Code | None = None
    province_name: OptionalName | None = None
    contact_name: OptionalName | None = None
    contact_phone: Phone | None = None
    capacity: Capacity | None = None
    lat: Latitude | None = None
    lon: Longitude | None = None
    active: bool | None = None


class PointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    kind: str
    district_code: str | None
    district_name: str | None
    province_code: str | None
    province_name: str | None
    contact_name: str | None
    contact_phone: str | None
    capacity: int | None
    lat: float | None
    lon: float | None
    active: bool
    created_at: datetime
    updated_at: datetime


class PointPage(BaseModel):
    items: list[PointRead]
    total: int
    limit: int
    offset: int


class AreaCount(BaseModel):
    """A district (or, where points have no district, a province) and how many points it holds."""

    level: str
    code: str
    name: str | None
    province_code: str | None
    points: int


class RowError(BaseModel):
    line: int
    field: str | None
    message: str


class ImportReport(BaseModel):
    format: str
    rows: int
    created: int
    updated: int
    unchanged: int
    skipped: int
    errors: list[RowError]
    dry_run: bool = False
