"""Wire shapes of sessions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from app.sessions.lifecycle import LifecycleCommand, SessionStatus

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
HallName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=10_000)]


def _storable_in_utc(value: datetime) -> datetime:
    """Times are stored in UTC; 0001-01-01T00:30+01:00 has no UTC year to be stored in."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is outside the supported range once converted to UTC") from None
    return value


When = Annotated[AwareDatetime, AfterValidator(_storable_in_utc)]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionSettings(StrictModel):
    """Per-session rules; read by floor control and roll-call."""

    speaking_time_limit_s: int = Field(default=180, ge=10, le=3600)
    speaking_time_warning_s: int = Field(default=30, ge=0, le=600)
    max_floor_holders: int = Field(default=1, ge=1, le=10)
    grant_releases_current_holder: bool = True
    queue_while_held: bool = True
    rollcall_deadline_s: int = Field(default=120, ge=10, le=3600)
    rollcall_max_headcount: int = Field(default=500, ge=1, le=100_000)

    @model_validator(mode="after")
    def _warning_before_limit(self) -> SessionSettings:
        if self.speaking_time_warning_s >= self.speaking_time_limit_s:
            raise ValueError("speaking_time_warning_s must be shorter than speaking_time_limit_s")
        return self


class SessionSettingsPatch(StrictModel):
    speaking_time_limit_s: int | None = Field(default=None, ge=10, le=3600)
    speaking_time_warning_s: int | None = Field(default=None, ge=0, le=600)
    max_floor_holders: int | None = Field(default=None, ge=1, le=10)
    grant_releases_current_holder: bool | None = None
    queue_while_held: bool | None = None
    rollcall_deadline_s: int | None = Field(default=None, ge=10, le=3600)
    rollcall_max_headcount: int | None = Field(default=None, ge=1, le=100_000)


def _check_window(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise ValueError("scheduled_end must be after scheduled_start")


class SessionCreate(StrictModel):
    title: Title
    hall_name: HallName = ""
    description: Description = ""
    scheduled_start: When | None = None
    scheduled_end: When | None = None
    settings: SessionSettings = Field(default_factory=SessionSettings)

    @model_validator(mode="after")
    def _window(self) -> SessionCreate:
        _check_window(self.scheduled_start, self.scheduled_end)
        return self


class SessionUpdate(StrictModel):
    title: Title | None = None
    hall_name: HallName | None = None
    description: Description | None = None
    scheduled_start: When | None = None
    scheduled_end: When | None = None
    settings: SessionSettingsPatch | None = None

    @model_validator(mode="after")
    def _window(self) -> SessionUpdate:
        _check_window(self.scheduled_start, self.scheduled_end)
        return self


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    hall_name: str
    description: str
    scheduled_start: datetime | None
    scheduled_end: datetime | None
    status: SessionStatus
    settings: SessionSettings
    last_seq: int
    created_at: datetime
    updated_at: datetime
    allowed_actions: list[LifecycleCommand]
    invited_points: int


class SessionPage(BaseModel):
    items: list[SessionRead]
    total: int
