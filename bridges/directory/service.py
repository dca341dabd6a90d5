"""The point directory: search, edit, and idempotent bulk upsert by official code."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Select, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, ImportRejected, NotFound
from bridges.directory.csv_format import ParsedFile
from bridges.directory.schemas import (
    AreaCount,
    ImportReport,
    PointCreate,
    PointFields,
    PointUpdate,
)
from bridges.directory.text import fold
from models import Invitation, Point
from models.base import utcnow

FIELDS = tuple(PointFields.model_fields)
_CHUNK = 500
SEARCH_KEY_LENGTH = 200


def search_key(name: str) -> str:
    """The stored search key; folding can lengthen a name (ß → ss), the column holds 200."""
    return fold(name)[:SEARCH_KEY_LENGTH]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(
    statement: Select[Any],
    *,
    q: str | None,
    district_codes: Sequence[str] = (),
    province_codes: Sequence[str] = (),
    active: bool | None = None,
) -> Select[Any]:
    if q:
        key = fold(q)
        statement = statement.where(
            or_(
                Point.code.like(_escape_like(q.strip()) + "%", escape="\\"),
                Point.search_name.like("%" + _escape_like(key) + "%", escape="\\"),
            )
        )
    if district_codes:
        statement = statement.where(Point.district_code.in_(district_codes))
    if province_codes:
        statement = statement.where(Point.province_code.in_(province_codes))
    if active is not None:
        statement = statement.where(Point.active.is_(active))
    return statement


async def search_points(
    db: AsyncSession,
    *,
    q: str | None = None,
    district_codes: Sequence[str] = (),
    province_codes: Sequence[str] = (),
    active: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[Sequence[Point], int]:
    def where(statement: Select[Any]) -> Select[Any]:
        return _filtered(
            statement,
            q=q,
            district_codes=district_codes,
            province_codes=province_codes,
            active=active,
        )

    rows = await db.scalars(where(select(Point)).order_by(Point.code).limit(limit).offset(offset))
    total = await db.scalar(where(select(func.count()).select_from(Point)))
    return rows.all(), int(total or 0)


async def list_areas(db: AsyncSession) -> list[AreaCount]:
    """Districts, and provinces for points without a district: what an operator invites by."""
    rows = await db.execute(
        select(
            Point.district_code,
            Point.district_name,
            Point.province_code,
            Point.province_name,
            func.count(),
        )
        .where(Point.active.is_(True))
        .group_by(
            Point.district_code, Point.district_name, Point.province_code, Point.province_name
        )
        .order_by(Point.province_code, Point.district_code)
    )
    areas: list[AreaCount] = []
    for district_code, district_name, province_code, province_name, count in rows:
        if district_code:
            areas.append(
                AreaCount(
                    level="district",
                    code=district_code,
                    name=district_name,
                    province_code=province_code,
                    points=count,
                )
            )
        elif province_code:
            areas.append(
                AreaCount(
                    level="province",
                    code=province_code,
                    name=province_name,
                    province_code=province_code,
                    points=count,
                )
            )
    return areas


async def get_point(db: AsyncSession, code: str) -> Point:
    point = await db.scalar(select(Point).where(Point.code == code))
    if point is None:
        raise NotFound("point not found", details={"code": code})
    return point


async def create_point(db: AsyncSession, data: PointCreate) -> Point:
    if await db.scalar(select(Point.id).where(Point.code == data.code)) is not None:
        raise Conflict("a point with this code exists", details={"code": data.code})
    point = Point(**data.model_dump(), search_name=search_key(data.name))
    db.add(point)
    try:
        await db.flush()
    except IntegrityError:
        raise Conflict("a point with this code exists", details={"code": data.code}) from None
    return point


async def update_point(db: AsyncSession, code: str, data: PointUpdate) -> Point:
    point = await get_point(db, code)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("name", ...) is None or changes.get("active", ...) is None:
        raise Conflict("name and active cannot be cleared", details={"fields": ["name", "active"]})
    for key, value in changes.items():
        setattr(point, key, value)
    if "name" in changes:
        point.search_name = search_key(point.name)
    await db.flush()
    return point


async def delete_point(db: AsyncSession, code: str) -> None:
    point = await get_point(db, code)
    invited = await db.scalar(select(func.count()).where(Invitation.point_id == point.id))
    if invited:
        raise Conflict(
            "the point is invited to sessions; deactivate it instead",
            details={"code": code, "invitations": invited},
        )
    await db.delete(point)
    await db.flush()


def _record(point: PointCreate) -> dict[str, Any]:
    values = point.model_dump()
    values["search_name"] = search_key(point.name)
    return values


async def import_points(
    db: AsyncSession,
    parsed: ParsedFile,
    *,
    skip_invalid: bool,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Upsert the valid rows by code; with any invalid row and no skip_invalid, write nothing."""
    if parsed.errors and not skip_invalid:
        raise ImportRejected(
            f"{len(parsed.errors)} invalid row(s); nothing was imported",
            details={
                "errors": [e.model_dump() for e in parsed.errors[:1000]],
                "error_count": len(parsed.errors),
            },
        )
    records = [_record(row.point) for row in parsed.rows]
    # An existing point keeps what the file has no column for (a phone set since the last import).
    written = {"search_name", *(FIELDS if parsed.columns is None else parsed.columns)}
    existing: dict[str, dict[str, Any]] = {}
    codes = [r["code"] for r in records]
    columns = [getattr(Point, name) for name in ("id", "code", "search_name", *FIELDS)]
    for start in range(0, len(codes), _CHUNK):
        result = await db.execute(
            select(*columns).where(Point.code.in_(codes[start : start + _CHUNK]))
        )
        for row in result.mappings():
            existing[row["code"]] = dict(row)
    new_rows: list[dict[str, Any]] = []
    changed_rows: list[dict[str, Any]] = []
    unchanged = 0
    now = utcnow()
    for record in records:
        current = existing.get(record["code"])
        if current is None:
            new_rows.append({**record, "created_at": now, "updated_at": now})
            continue
        diff = {k: v for k, v in record.items() if k in written and current.get(k) != v}
        if diff:
            changed_rows.append({"id": current["id"], **diff, "updated_at": now})
        else:
            unchanged += 1
    if not dry_run:
        total, done = len(new_rows) + len(changed_rows), 0
        if progress:
            progress(done, total)
        try:
            for start in range(0, len(new_rows), _CHUNK):
                batch = new_rows[start : start + _CHUNK]
                await db.execute(insert(Point), batch)
                done += len(batch)
                if progress:
                    progress(done, total)
            for start in range(0, len(changed_rows), _CHUNK):
                batch = changed_rows[start : start + _CHUNK]
                await db.execute(update(Point), batch)
                done += len(batch)
                if progress:
                    progress(done, total)
        except IntegrityError:
            raise Conflict("the directory changed during the import; run it again") from None
    return ImportReport(
        format=parsed.format,
        rows=len(parsed.rows) + len({e.line for e in parsed.errors}),
        created=len(new_rows),
        updated=len(changed_rows),
        unchanged=unchanged,
        skipped=len({e.line for e in parsed.errors}),
        errors=parsed.errors[:1000],
        dry_run=dry_run,
    )
