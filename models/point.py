"""The point directory: every connection point (ward, commune) that can be invited."""

from __future__ import annotations

from sqlalchemy import Boolean, Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, TimestampMixin


class Point(TimestampMixin, Base):
    __tablename__ = "points"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Lower-case, diacritics folded: lets "phuc xa" find "Phường Phúc Xá".
    search_name: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(50), default="")
    district_code: Mapped[str | None] = mapped_column(String(16), index=True, default=None)
    district_name: Mapped[str | None] = mapped_column(String(200), default=None)
    province_code: Mapped[str | None] = mapped_column(String(16), index=True, default=None)
    province_name: Mapped[str | None] = mapped_column(String(200), default=None)
    contact_name: Mapped[str | None] = mapped_column(String(200), default=None)
    contact_phone: Mapped[str | None] = mapped_column(String(32), default=None)
    capacity: Mapped[int | None] = mapped_column(Integer, default=None)
    lat: Mapped[float | None] = mapped_column(Float, default=None)
    lon: Mapped[float | None] = mapped_column(Float, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
