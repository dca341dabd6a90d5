"""The point directory over HTTP: search, edit, import a CSV."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.auth.principal import OPERATORS, STAFF, StaffPrincipal
from app.deps import Db, Page, State, require
from app.errors import BadRequest, PayloadTooLarge
from bridges.directory import service
from bridges.directory.csv_format import parse_points_csv
from bridges.directory.schemas import (
    AreaCount,
    ImportReport,
    PointCreate,
    PointPage,
    PointRead,
    PointUpdate,
)

router = APIRouter(prefix="/points", tags=["points"])
Reader = Annotated[StaffPrincipal, Depends(require(STAFF))]
Operator = Annotated[StaffPrincipal, Depends(require(OPERATORS))]
CodeFilter = Annotated[list[str], Query(max_length=1000)]

IMPORT_PATH = "/api/v1/points/import"


@router.get("", response_model=PointPage)
async def search_points(
    db: Db,
    _: Reader,
    page: Page,
    q: Annotated[
        str | None, Query(max_length=200, description="Code prefix or name, accents optional")
    ] = None,
    district_code: CodeFilter = [],  # noqa: B006 - FastAPI copies defaults per request
    province_code: CodeFilter = [],  # noqa: B006
    active: bool | None = None,
) -> PointPage:
    limit, offset = page
    rows, total = await service.search_points(
        db,
        q=q,
        district_codes=district_code,
        province_codes=province_code,
        active=active,
        limit=limit,
        offset=offset,
    )
    return PointPage(
        items=[PointRead.model_validate(p) for p in rows], total=total, limit=limit, offset=offset
    )


@router.get("/areas", response_model=list[AreaCount])
async def list_areas(db: Db, _: Reader) -> list[AreaCount]:
    return await service.list_areas(db)


@router.post(
    "/import",
    response_model=ImportReport,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def import_points(
    request: Request,
    db: Db,
    state: State,
    _: Operator,
    skip_invalid: bool = False,
    dry_run: bool = False,
) -> ImportReport:
    """Upsert points by code from a CSV (UTF-8). Any invalid row rejects the file unless skip_invalid."""
    data = await _read_upload(request, state.settings.max_import_bytes)
    parsed = parse_points_csv(data, max_rows=state.settings.max_import_rows)
    return await service.import_points(db, parsed, skip_invalid=skip_invalid, dry_run=dry_run)


async def _read_upload(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10, max_part_size=limit)
        except ValueError:
            raise BadRequest("the multipart body could not be read") from None
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadRequest("send the CSV as a form field named 'file'")
            data = await upload.read(limit + 1)
        finally:
            await form.close()  # the uploaded files' temporary files
    elif content_type in ("text/csv", "application/csv", "text/plain", "application/octet-stream"):
        data = await request.body()
    else:
        raise BadRequest(
            "send the CSV as text/csv or multipart/form-data",
            details={"content_type": content_type or None},
        )
    if len(data) > limit:
        raise PayloadTooLarge(f"the file exceeds {limit} bytes", details={"limit": limit})
    return data


@router.post("", response_model=PointRead, status_code=201)
async def create_point(body: PointCreate, db: Db, _: Operator) -> PointRead:
    return PointRead.model_validate(await service.create_point(db, body))


@router.get("/{code}", response_model=PointRead)
async def get_point(code: str, db: Db, _: Reader) -> PointRead:
    return PointRead.model_validate(await service.get_point(db, code))


@router.patch("/{code}", response_model=PointRead)
async def update_point(code: str, body: PointUpdate, db: Db, _: Operator) -> PointRead:
    return PointRead.model_validate(await service.update_point(db, code, body))


@router.delete("/{code}", status_code=204)
async def delete_point(code: str, db: Db, _: Operator) -> None:
    await service.delete_point(db, code)
