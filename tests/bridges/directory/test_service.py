"""The directory service on SQLite and PostgreSQL: idempotent upsert by code, search, areas, edits."""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import Conflict, ImportRejected, NotFound
from app.sessions.schemas import SessionCreate
from app.sessions.service import create_session
from bridges.directory import service
from bridges.directory.csv_format import parse_points_csv
from bridges.directory.schemas import ImportReport, PointCreate, PointUpdate
from bridges.directory.text import fold
from bridges.invitations.schemas import InviteRequest
from bridges.invitations.service import invite
from models import Point
from tests.conftest import COMMUNES_CSV, HANOI_CSV

Factory = async_sessionmaker[AsyncSession]
HANOI = HANOI_CSV.read_bytes()
COMMUNES = COMMUNES_CSV.read_bytes()


def raw_names(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["code"]: row["name"] for row in csv.DictReader(handle)}


async def run_import(
    factory: Factory, data: bytes, *, skip_invalid: bool = False, dry_run: bool = False
) -> ImportReport:
    """What the HTTP route and the CLI do: parse, import, commit (or roll back on error)."""
    parsed = parse_points_csv(data, max_rows=20_000)
    async with factory() as db:
        try:
            report = await service.import_points(
                db, parsed, skip_invalid=skip_invalid, dry_run=dry_run
            )
        except BaseException:
            await db.rollback()
            raise
        await db.commit()
    return report


async def count_points(factory: Factory) -> int:
    async with factory() as db:
        return int(await db.scalar(select(func.count()).select_from(Point)) or 0)


async def snapshot(factory: Factory) -> dict[str, tuple[str, datetime]]:
    async with factory() as db:
        rows = await db.execute(select(Point.code, Point.name, Point.updated_at))
        return {code: (name, updated_at) for code, name, updated_at in rows}


def counts(report: ImportReport) -> tuple[int, int, int, int, int]:
    return report.rows, report.created, report.updated, report.unchanged, report.skipped


def codes(points: Sequence[Point]) -> list[str]:
    return [p.code for p in points]


# ---- import ---------------------------------------------------------------------------------


async def test_hanoi_import_and_idempotent_reimport(db_factory: Factory) -> None:
    report = await run_import(db_factory, HANOI)
    assert report.format == "hanoi-wards-2024"
    assert counts(report) == (526, 526, 0, 0, 0)
    assert (report.errors, report.dry_run) == ([], False)
    before = await snapshot(db_factory)
    assert len(before) == 526

    again = await run_import(db_factory, HANOI)
    assert counts(again) == (526, 0, 0, 526, 0)
    assert await snapshot(db_factory) == before

    async with db_factory() as db:
        first = await service.get_point(db, "00001")
    assert (first.name, first.search_name, first.kind) == (
        "Phường Phúc Xá",
        "phuong phuc xa",
        "Phường",
    )
    assert (first.district_code, first.district_name) == ("001", "Quận Ba Đình")
    assert (first.province_code, first.province_name) == ("01", "Thành phố Hà Nội")
    assert (first.lat, first.lon, first.active) == (21.046798, 105.848112, True)


async def test_changed_name_updates_exactly_that_row(db_factory: Factory) -> None:
    await run_import(db_factory, HANOI)
    before = await snapshot(db_factory)
    changed = HANOI.replace(
        "00004,Phường Trúc Bạch,".encode(), "00004,Phường Trúc Bạch Mới,".encode()
    )
    assert changed != HANOI

    report = await run_import(db_factory, changed)
    assert counts(report) == (526, 0, 1, 525, 0)
    after = await snapshot(db_factory)
    assert after.keys() == before.keys()
    differing = {code for code in after if after[code] != before[code]}
    assert differing == {"00004"}
    assert after["00004"][0] == "Phường Trúc Bạch Mới"
    assert after["00004"][1] > before["00004"][1]
    async with db_factory() as db:
        found, total = await service.search_points(db, q="truc bach moi")
    assert (codes(found), total) == (["00004"], 1)


async def test_reimport_keeps_columns_the_file_does_not_have(db_factory: Factory) -> None:
    """Edits made since the last import (phone, capacity, active) survive a re-import of a file
    without those columns, and a contacts-only file does not wipe the districts."""
    await run_import(db_factory, HANOI)
    async with db_factory() as db:
        await service.update_point(
            db, "00001", PointUpdate(contact_phone="024 3823 4567", capacity=80, active=False)
        )
        await db.commit()
    before = await snapshot(db_factory)

    report = await run_import(db_factory, HANOI)
    assert counts(report) == (526, 0, 0, 526, 0)
    assert await snapshot(db_factory) == before

    contacts = "Mã,Tên,Số điện thoại\n00001,Phường Phúc Xá,0912 000 001\n00004,Phường Trúc Bạch,\n"
    report = await run_import(db_factory, contacts.encode())
    assert counts(report) == (2, 0, 1, 1, 0)
    async with db_factory() as db:
        first = await service.get_point(db, "00001")
        assert (first.contact_phone, first.capacity, first.active) == ("0912 000 001", 80, False)
        assert (first.district_code, first.kind, first.lat) == ("001", "Phường", 21.046798)
        _, total = await service.search_points(db, district_codes=["001"])
        assert total == 13

    # A column the file has is written, an empty cell included: it clears the value.
    clear = "code,name,contact_phone,active\n00001,Phường Phúc Xá,,\n"
    report = await run_import(db_factory, clear.encode())
    assert counts(report) == (1, 0, 1, 0, 0)
    async with db_factory() as db:
        first = await service.get_point(db, "00001")
        assert (first.contact_phone, first.capacity, first.active) == (None, 80, True)


async def test_new_rows_take_defaults_for_missing_columns(db_factory: Factory) -> None:
    report = await run_import(db_factory, "code,name\nA1,Xã Một\n".encode())
    assert counts(report) == (1, 1, 0, 0, 0)
    async with db_factory() as db:
        point = await service.get_point(db, "A1")
        assert (point.kind, point.district_code, point.capacity, point.active) == (
            "",
            None,
            None,
            True,
        )


async def test_one_invalid_row_writes_nothing(db_factory: Factory) -> None:
    await run_import(db_factory, HANOI)
    before = await snapshot(db_factory)
    lines = HANOI.decode().splitlines()
    lines[1] = lines[1].replace("Phường Phúc Xá", "Phường Phúc Xá đổi tên")
    lines.append("99999,Xã Mới,Xã,999,Huyện Mới,Huyện,01,Thành phố Hà Nội,21,105")
    lines.insert(300, "BAD CODE,Xã Hỏng,Xã,001,Quận Ba Đình,Quận,01,Thành phố Hà Nội,21,105")
    data = ("\n".join(lines) + "\n").encode()

    with pytest.raises(ImportRejected) as caught:
        await run_import(db_factory, data)
    exc = caught.value
    assert exc.code == "import_invalid_rows"
    assert exc.details["error_count"] == 1
    assert exc.details["errors"] == [
        {"line": 301, "field": "code", "message": exc.details["errors"][0]["message"]}
    ]
    assert "nothing was imported" in exc.message
    assert await count_points(db_factory) == 526
    assert await snapshot(db_factory) == before


async def test_invalid_row_on_an_empty_directory_writes_nothing(db_factory: Factory) -> None:
    data = "code,name,capacity\nA1,Xã Một,10\nA2,Xã Hai,-5\nA3,Xã Ba,\n".encode()
    with pytest.raises(ImportRejected) as caught:
        await run_import(db_factory, data)
    assert [(e["line"], e["field"]) for e in caught.value.details["errors"]] == [(3, "capacity")]
    assert await count_points(db_factory) == 0


async def test_skip_invalid_imports_the_valid_rows(db_factory: Factory) -> None:
    data = (
        "Mã;Tên;Sức chứa;Hoạt động\n"
        "A1;Xã Một;10;có\n"
        ";Xã không mã;;\n"
        "A3;Xã Ba;;không\n"
        "A1;Xã Một lần hai;;\n"
        "A5;Xã Năm;nhiều;\n"
    ).encode()
    report = await run_import(db_factory, data, skip_invalid=True)
    assert report.format == "generic"
    assert counts(report) == (5, 2, 0, 0, 3)
    assert [(e.line, e.field) for e in report.errors] == [(3, "code"), (5, "code"), (6, "capacity")]
    assert "first on line 2" in report.errors[1].message
    async with db_factory() as db:
        rows, total = await service.search_points(db)
        assert total == 2
        assert [(p.code, p.name, p.capacity, p.active) for p in rows] == [
            ("A1", "Xã Một", 10, True),
            ("A3", "Xã Ba", None, False),
        ]


async def test_error_report_is_capped_but_counted(db_factory: Factory) -> None:
    data = ("code,name\n" + "".join(f",Xã {i}\n" for i in range(1500)) + "A1,Xã Một\n").encode()
    with pytest.raises(ImportRejected) as caught:
        await run_import(db_factory, data)
    details = caught.value.details
    assert details["error_count"] == 1500
    assert len(details["errors"]) == 1000
    assert (details["errors"][0]["line"], details["errors"][-1]["line"]) == (2, 1001)
    assert await count_points(db_factory) == 0

    report = await run_import(db_factory, data, skip_invalid=True)
    assert counts(report) == (1501, 1, 0, 0, 1500)
    assert len(report.errors) == 1000
    assert await count_points(db_factory) == 1


async def test_dry_run_counts_and_writes_nothing(db_factory: Factory) -> None:
    report = await run_import(db_factory, HANOI, dry_run=True)
    assert counts(report) == (526, 526, 0, 0, 0)
    assert report.dry_run is True
    assert await count_points(db_factory) == 0

    await run_import(db_factory, HANOI)
    before = await snapshot(db_factory)
    changed = HANOI.replace("Phường Phúc Xá".encode(), "Phường Phúc Xá 2".encode())
    changed += "X1,Xã Thêm,Xã,001,Quận Ba Đình,Quận,01,Thành phố Hà Nội,,\n".encode()
    report = await run_import(db_factory, changed, dry_run=True)
    assert counts(report) == (527, 1, 1, 525, 0)
    assert await snapshot(db_factory) == before

    invalid = changed + b",no code,,,,,,,,\n"
    report = await run_import(db_factory, invalid, dry_run=True, skip_invalid=True)
    assert counts(report) == (528, 1, 1, 525, 1)
    assert await snapshot(db_factory) == before
    with pytest.raises(ImportRejected):
        await run_import(db_factory, invalid, dry_run=True)


async def test_national_file_imports_with_exact_names(
    db_factory: Factory, database_url: str
) -> None:
    backend = make_url(database_url).get_backend_name()
    started = time.perf_counter()
    report = await run_import(db_factory, COMMUNES)
    elapsed = time.perf_counter() - started
    print(f"import 3321 rows on {backend}: {elapsed:.2f}s")
    assert report.format == "vietnam-communes-2025"
    assert counts(report) == (3321, 3321, 0, 0, 0)

    expected = raw_names(COMMUNES_CSV)
    assert len(expected) == 3321
    async with db_factory() as db:
        stored = {code: name for code, name in await db.execute(select(Point.code, Point.name))}
        assert stored == expected
        for code, name in expected.items():
            assert stored[code].encode("utf-8") == name.encode("utf-8")

        areas = await service.list_areas(db)
        assert len(areas) == 34
        assert {a.level for a in areas} == {"province"}
        assert sum(a.points for a in areas) == 3321
        assert len({a.code for a in areas}) == 34
        hanoi = next(a for a in areas if a.code == "01")
        assert (hanoi.name, hanoi.province_code) == ("Thành phố Hà Nội", "01")

        rows, total = await service.search_points(db, province_codes=["79"], limit=5)
        assert total == sum(a.points for a in areas if a.code == "79")
        assert all(p.province_code == "79" for p in rows)
        rows, total = await service.search_points(db, q="con dao")
        assert [p.name for p in rows] == ["Đặc khu Côn Đảo"]

    again = await run_import(db_factory, COMMUNES)
    assert counts(again) == (3321, 0, 0, 3321, 0)


async def test_the_two_reference_files_share_126_codes(db_factory: Factory) -> None:
    await run_import(db_factory, HANOI)
    report = await run_import(db_factory, COMMUNES)
    assert (report.created, report.updated, report.unchanged) == (3321 - 126, 126, 0)
    assert await count_points(db_factory) == 526 + 3321 - 126
    newer = raw_names(COMMUNES_CSV)
    async with db_factory() as db:
        shared = set(raw_names(HANOI_CSV)) & set(newer)
        assert len(shared) == 126
        rows = await db.execute(
            select(Point.code, Point.name, Point.district_code).where(Point.code.in_(shared))
        )
        for code, name, district_code in rows:
            assert name == newer[code]
            # The 2025 file has no district columns: the 2024 district stays, mixing two
            # generations of the map. Hence "import one reference file per directory".
            assert district_code is not None


# ---- search and areas -----------------------------------------------------------------------


async def test_search_points(db_factory: Factory) -> None:
    await run_import(db_factory, HANOI)
    async with db_factory() as db:
        for q in ("phuc xa", "Phúc Xá", "PHÚC XÁ", "  phường   phúc xá ", "Phuc Xa"):
            rows, total = await service.search_points(db, q=q)
            assert (codes(rows), total) == (["00001"], 1), q

        rows, total = await service.search_points(db, q="đồng")
        names = [p.name for p in rows]
        assert total == len(rows) == 39
        assert "Phường Đồng Xuân" in names
        assert "Xã Đông Xuân" in names
        assert "Phường Mai Động" in names
        assert all("dong" in fold(n) for n in names)
        assert codes(rows) == sorted(codes(rows))

        rows, total = await service.search_points(db, q="0000")
        assert (codes(rows), total) == (["00001", "00004", "00006", "00007", "00008"], 5)

        rows, total = await service.search_points(db, q="%")
        assert total == 0
        rows, total = await service.search_points(db, q="_")
        assert total == 0

        rows, total = await service.search_points(db, district_codes=["001"])
        assert total == 13
        assert {p.district_name for p in rows} == {"Quận Ba Đình"}
        rows, total = await service.search_points(db, district_codes=["001", "002"])
        assert total == 31
        rows, total = await service.search_points(db, district_codes=["001"], q="vinh phuc")
        assert (codes(rows), total) == (["00006"], 1)
        rows, total = await service.search_points(db, district_codes=["002"], q="vinh phuc")
        assert total == 0

        rows, total = await service.search_points(db, province_codes=["01"], limit=1)
        assert (len(rows), total) == (1, 526)
        rows, total = await service.search_points(db, province_codes=["79"])
        assert (rows, total) == ([], 0)

        await service.update_point(db, "00004", PointUpdate(active=False))
        await service.update_point(db, "00007", PointUpdate(active=False))
        await db.commit()
        rows, total = await service.search_points(db, active=False)
        assert (codes(rows), total) == (["00004", "00007"], 2)
        rows, total = await service.search_points(db, active=True)
        assert total == 524
        rows, total = await service.search_points(db, active=True, q="0000")
        assert codes(rows) == ["00001", "00006", "00008"]

        everything, total = await service.search_points(db, limit=1000)
        assert total == len(everything) == 526
        page, total = await service.search_points(db, limit=10, offset=520)
        assert total == 526
        assert codes(page) == codes(everything)[520:]
        page, total = await service.search_points(db, limit=50, offset=100)
        assert codes(page) == codes(everything)[100:150]
        page, total = await service.search_points(db, limit=10, offset=600)
        assert (page, total) == ([], 526)


async def test_list_areas_hanoi(db_factory: Factory) -> None:
    await run_import(db_factory, HANOI)
    async with db_factory() as db:
        areas = await service.list_areas(db)
        assert len(areas) == 30
        assert {a.level for a in areas} == {"district"}
        assert {a.province_code for a in areas} == {"01"}
        assert sum(a.points for a in areas) == 526
        assert [a.code for a in areas] == sorted(a.code for a in areas)
        ba_dinh = areas[0]
        assert (ba_dinh.code, ba_dinh.name, ba_dinh.points) == ("001", "Quận Ba Đình", 13)

        await service.update_point(db, "00001", PointUpdate(active=False))
        await db.commit()
        areas = await service.list_areas(db)
        assert sum(a.points for a in areas) == 525
        assert areas[0].points == 12


async def test_list_areas_empty(db_factory: Factory) -> None:
    async with db_factory() as db:
        assert await service.list_areas(db) == []


# ---- single-point edits ---------------------------------------------------------------------


async def test_create_update_delete_point(db_factory: Factory) -> None:
    async with db_factory() as db:
        point = await service.create_point(
            db,
            PointCreate(
                code="HN-001",
                name="Điểm cầu Đống Đa",
                kind="Phường",
                district_code="006",
                contact_phone="+84 24 3825 1234",
                capacity=60,
            ),
        )
        await db.commit()
        assert point.id > 0
        assert point.search_name == "diem cau dong da"

    async with db_factory() as db:
        with pytest.raises(Conflict) as caught:
            await service.create_point(db, PointCreate(code="HN-001", name="Khác"))
        assert caught.value.details == {"code": "HN-001"}
        await db.rollback()
    assert await count_points(db_factory) == 1

    async with db_factory() as db:
        rows, _ = await service.search_points(db, q="dong da")
        assert codes(rows) == ["HN-001"]
        updated = await service.update_point(
            db, "HN-001", PointUpdate(name="Điểm cầu Ô Chợ Dừa", capacity=None)
        )
        assert (updated.name, updated.search_name, updated.capacity) == (
            "Điểm cầu Ô Chợ Dừa",
            "diem cau o cho dua",
            None,
        )
        assert updated.contact_phone == "+84 24 3825 1234"
        await db.commit()

    async with db_factory() as db:
        assert (await service.search_points(db, q="dong da"))[1] == 0
        assert codes((await service.search_points(db, q="o cho dua"))[0]) == ["HN-001"]
        for bad in (PointUpdate(name=None), PointUpdate(active=None)):
            with pytest.raises(Conflict):
                await service.update_point(db, "HN-001", bad)
        await db.rollback()
        with pytest.raises(NotFound) as missing:
            await service.update_point(db, "NOPE", PointUpdate(name="x"))
        assert missing.value.details == {"code": "NOPE"}
        with pytest.raises(NotFound):
            await service.get_point(db, "NOPE")
        with pytest.raises(NotFound):
            await service.delete_point(db, "NOPE")

    async with db_factory() as db:
        point = await service.get_point(db, "HN-001")
        assert (point.name, point.active) == ("Điểm cầu Ô Chợ Dừa", True)
        await service.delete_point(db, "HN-001")
        await db.commit()
    assert await count_points(db_factory) == 0


async def test_delete_refused_when_invited(db_factory: Factory) -> None:
    await run_import(db_factory, HANOI)
    async with db_factory() as db:
        session = await create_session(
            db, SessionCreate(title="Đối thoại"), actor="test", account_id=None
        )
        result = await invite(
            db, session.id, InviteRequest(point_codes=["00001", "00004"]), actor="test"
        )
        assert result.invited == 2
        await db.commit()

    async with db_factory() as db:
        with pytest.raises(Conflict) as caught:
            await service.delete_point(db, "00001")
        assert caught.value.details == {"code": "00001", "invitations": 1}
        await db.rollback()
        await service.delete_point(db, "00006")
        await db.commit()

    after = await snapshot(db_factory)
    assert "00001" in after
    assert "00006" not in after
    assert len(after) == 525

    # The invited point can still be taken out of use.
    async with db_factory() as db:
        point = await service.update_point(db, "00001", PointUpdate(active=False))
        assert point.active is False
        await db.commit()
