"""The point directory over HTTP, on SQLite and PostgreSQL: import, search, areas, edits."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from models import Role
from tests.conftest import COMMUNES_CSV, HANOI_CSV, assert_error, create_staff, login, make_settings

IMPORT = "/api/v1/points/import"
HANOI = HANOI_CSV.read_bytes()
CSV_HEADERS = {"Content-Type": "text/csv"}


async def total_points(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/api/v1/points", params={"limit": 1}, headers=headers)
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


async def import_csv(
    client: httpx.AsyncClient, headers: dict[str, str], data: bytes, **params: str
) -> httpx.Response:
    return await client.post(
        IMPORT, content=data, params=params, headers={**headers, **CSV_HEADERS}
    )


# ---- import ---------------------------------------------------------------------------------


async def test_import_text_csv_then_multipart(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    op = staff["operator"]
    response = await import_csv(client, op, HANOI)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "format": "hanoi-wards-2024",
        "rows": 526,
        "created": 526,
        "updated": 0,
        "unchanged": 0,
        "skipped": 0,
        "errors": [],
        "dry_run": False,
    }

    response = await client.post(
        IMPORT,
        files={"file": ("hanoi-wards-2024.csv", HANOI, "text/csv")},
        headers=staff["admin"],
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 0, 526)
    assert await total_points(client, staff["observer"]) == 526

    response = await client.get("/api/v1/points/00001", headers=staff["observer"])
    assert response.status_code == 200
    assert response.json()["name"] == "Phường Phúc Xá"


async def test_multipart_national_file_keeps_every_name(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    op = staff["operator"]
    data = COMMUNES_CSV.read_bytes()
    response = await client.post(
        IMPORT, files={"file": ("communes.csv", data, "application/octet-stream")}, headers=op
    )
    assert response.status_code == 200, response.text
    assert (response.json()["format"], response.json()["created"]) == (
        "vietnam-communes-2025",
        3321,
    )
    with COMMUNES_CSV.open(encoding="utf-8", newline="") as handle:
        expected = {row["code"]: row["name"] for row in csv.DictReader(handle)}
    stored: dict[str, str] = {}
    for offset in range(0, 3321, 1000):
        response = await client.get(
            "/api/v1/points", params={"limit": 1000, "offset": offset}, headers=op
        )
        assert response.status_code == 200
        stored.update({p["code"]: p["name"] for p in response.json()["items"]})
    assert stored == expected

    response = await client.get("/api/v1/points/areas", headers=op)
    assert response.status_code == 200
    areas = response.json()
    assert len(areas) == 34
    assert {a["level"] for a in areas} == {"province"}
    assert sum(a["points"] for a in areas) == 3321


async def test_multipart_without_a_file_field(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    response = await client.post(
        IMPORT, data={"csv": "code,name\nA1,Xã Một\n"}, headers=staff["operator"]
    )
    assert_error(response, 400, "bad_request")
    response = await client.post(
        IMPORT,
        files={"upload": ("a.csv", b"code,name\nA1,x\n", "text/csv")},
        headers=staff["operator"],
    )
    assert_error(response, 400, "bad_request")
    assert await total_points(client, staff["operator"]) == 0


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
async def test_import_wrong_content_type(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]], content_type: str
) -> None:
    response = await client.post(
        IMPORT, content=HANOI, headers={**staff["operator"], "Content-Type": content_type}
    )
    body = assert_error(response, 400, "bad_request")
    assert body["details"] == {"content_type": content_type}
    assert await total_points(client, staff["operator"]) == 0


async def test_import_without_content_type(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    response = await client.post(IMPORT, content=b"code,name\nA1,x\n", headers=staff["operator"])
    body = assert_error(response, 400, "bad_request")
    assert body["details"] == {"content_type": None}
    assert await total_points(client, staff["operator"]) == 0


async def test_invalid_rows_reject_the_file(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    op = staff["operator"]
    data = (
        "Mã,Tên,Số điện thoại,Sức chứa,Hoạt động\n"
        "A1,Xã Một,0912345678,10,có\n"
        "A2,Xã Hai,không phải số,,\n"
        "\n"
        "A4,Xã Bốn,,-3,\n"
        "A1,Xã Một lần nữa,,,\n"
        "A6,Xã Sáu,,,không\n"
    ).encode()
    response = await import_csv(client, op, data)
    body = assert_error(response, 422, "import_invalid_rows")
    assert body["details"]["error_count"] == 3
    errors = body["details"]["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [
        (3, "contact_phone"),
        (5, "capacity"),
        (6, "code"),
    ]
    assert all(set(e) == {"line", "field", "message"} and e["message"] for e in errors)
    assert errors[2]["message"] == "duplicate code A1, first on line 2"
    assert await total_points(client, op) == 0

    response = await import_csv(client, op, data, dry_run="true", skip_invalid="true")
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["rows"], report["created"], report["skipped"], report["dry_run"]) == (
        5,
        2,
        3,
        True,
    )
    assert await total_points(client, op) == 0

    response = await import_csv(client, op, data, skip_invalid="true")
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["skipped"], report["dry_run"]) == (2, 3, False)
    assert [(e["line"], e["field"]) for e in report["errors"]] == [
        (3, "contact_phone"),
        (5, "capacity"),
        (6, "code"),
    ]
    response = await client.get("/api/v1/points", headers=op)
    assert [(p["code"], p["active"], p["capacity"]) for p in response.json()["items"]] == [
        ("A1", True, 10),
        ("A6", False, None),
    ]


async def test_file_level_rejections(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    op = staff["operator"]
    cases: list[tuple[bytes, int]] = [
        (b"", 1),
        (b"name,kind\nXa,Xa\n", 1),
        (b"code,name,ma\nA1,x,y\n", 1),
        (b"code,name\nA1,ok\nA2,x\x00y\n", 3),
        ("code,name\nA1,Xa\nA2,Đông Anh\n".encode("cp1258"), 3),
    ]
    for data, line in cases:
        response = await import_csv(client, op, data)
        body = assert_error(response, 422, "import_invalid_rows")
        assert body["details"]["errors"][0]["line"] == line, data
    assert await total_points(client, op) == 0


async def test_dry_run_on_an_existing_directory(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    op = staff["operator"]
    assert (await import_csv(client, op, HANOI)).status_code == 200
    changed = HANOI.replace("Phường Phúc Xá".encode(), "Phường Phúc Xá Mới".encode())
    response = await import_csv(client, op, changed, dry_run="true")
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["created"], report["updated"], report["unchanged"], report["dry_run"]) == (
        0,
        1,
        525,
        True,
    )
    response = await client.get("/api/v1/points/00001", headers=op)
    assert response.json()["name"] == "Phường Phúc Xá"

    response = await import_csv(client, op, changed)
    assert response.json()["updated"] == 1
    response = await client.get("/api/v1/points/00001", headers=op)
    assert response.json()["name"] == "Phường Phúc Xá Mới"


async def test_import_needs_an_operator(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    for role in ("observer", "moderator"):
        response = await import_csv(client, staff[role], HANOI)
        body = assert_error(response, 403, "forbidden")
        assert body["details"]["role"] == role
    response = await client.post(IMPORT, content=HANOI, headers=CSV_HEADERS)
    assert_error(response, 401, "unauthenticated")
    response = await client.post(
        IMPORT, content=HANOI, headers={**CSV_HEADERS, "Authorization": "Bearer not-a-token"}
    )
    assert_error(response, 401, "unauthenticated")
    assert await total_points(client, staff["observer"]) == 0


# ---- the import size limit ------------------------------------------------------------------

LIMIT = 4096


@pytest.fixture
async def small_client(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    settings = make_settings(tmp_path, database_url, max_import_bytes=LIMIT)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://diemcau.test") as http:
            await create_staff(settings, "op", Role.OPERATOR)
            yield http, await login(http, "op")


async def test_import_over_the_limit_is_refused(
    small_client: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    client, op = small_client
    assert len(HANOI) > LIMIT

    response = await import_csv(client, op, HANOI)
    body = assert_error(response, 413, "payload_too_large")
    assert body["details"] == {"limit": LIMIT}

    response = await client.post(
        IMPORT, files={"file": ("hanoi.csv", HANOI, "text/csv")}, headers=op
    )
    assert_error(response, 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(HANOI), 1000):
            yield HANOI[start : start + 1000]

    response = await client.post(IMPORT, content=chunks(), headers={**op, **CSV_HEADERS})
    assert_error(response, 413, "payload_too_large")
    assert await total_points(client, op) == 0

    small = b"\n".join(HANOI.splitlines()[:30]) + b"\n"
    assert len(small) <= LIMIT
    response = await import_csv(client, op, small)
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 29
    assert await total_points(client, op) == 29


# ---- reading the directory ------------------------------------------------------------------


async def test_search_filters_and_pagination(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    assert (await import_csv(client, staff["operator"], HANOI)).status_code == 200
    reader = staff["observer"]

    async def search(**params: Any) -> dict[str, Any]:
        response = await client.get("/api/v1/points", params=params, headers=reader)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    for q in ("phuc xa", "Phúc Xá", "PHUC XA"):
        page = await search(q=q)
        assert [p["code"] for p in page["items"]] == ["00001"]
        assert page["total"] == 1
    page = await search(q="0000")
    assert [p["code"] for p in page["items"]] == ["00001", "00004", "00006", "00007", "00008"]

    page = await search(district_code="001")
    assert page["total"] == 13
    assert {p["district_name"] for p in page["items"]} == {"Quận Ba Đình"}
    page = await search(district_code=["001", "002"])
    assert page["total"] == 31
    page = await search(province_code="01", limit=5)
    assert (page["total"], len(page["items"]), page["limit"]) == (526, 5, 5)
    page = await search(province_code="79")
    assert (page["total"], page["items"]) == (0, [])

    page = await search(limit=10, offset=520)
    assert (page["total"], len(page["items"]), page["offset"]) == (526, 6, 520)
    everything = await search(limit=1000)
    assert [p["code"] for p in everything["items"]][520:] == [p["code"] for p in page["items"]]

    response = await client.patch(
        "/api/v1/points/00004", json={"active": False}, headers=staff["operator"]
    )
    assert response.status_code == 200
    page = await search(active="false")
    assert ([p["code"] for p in page["items"]], page["total"]) == (["00004"], 1)
    page = await search(active="true", limit=1)
    assert page["total"] == 525

    response = await client.get("/api/v1/points", params={"limit": 0}, headers=reader)
    assert_error(response, 422, "validation_error")
    response = await client.get("/api/v1/points", params={"active": "perhaps"}, headers=reader)
    assert_error(response, 422, "validation_error")
    response = await client.get("/api/v1/points")
    assert_error(response, 401, "unauthenticated")


async def test_areas(client: httpx.AsyncClient, staff: dict[str, dict[str, str]]) -> None:
    response = await client.get("/api/v1/points/areas", headers=staff["moderator"])
    assert (response.status_code, response.json()) == (200, [])
    assert (await import_csv(client, staff["operator"], HANOI)).status_code == 200
    response = await client.get("/api/v1/points/areas", headers=staff["moderator"])
    assert response.status_code == 200
    areas = response.json()
    assert len(areas) == 30
    assert sum(a["points"] for a in areas) == 526
    assert areas[0] == {
        "level": "district",
        "code": "001",
        "name": "Quận Ba Đình",
        "province_code": "01",
        "points": 13,
    }


async def test_get_patch_delete_point(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    op = staff["operator"]
    assert (await import_csv(client, op, HANOI)).status_code == 200

    response = await client.get("/api/v1/points/NOPE", headers=op)
    body = assert_error(response, 404, "not_found")
    assert body["details"] == {"code": "NOPE"}
    before = (await client.get("/api/v1/points/00007", headers=op)).json()

    for patch in (
        {"contact_phone": "gọi tôi"},
        {"contact_phone": "12"},
        {"capacity": -1},
        {"lat": 91},
        {"code": "00008"},
        {"unknown": 1},
        {"name": ""},
    ):
        response = await client.patch("/api/v1/points/00007", json=patch, headers=op)
        assert_error(response, 422, "validation_error")
    response = await client.patch("/api/v1/points/00007", json={"name": None}, headers=op)
    assert_error(response, 409, "conflict")
    assert (await client.get("/api/v1/points/00007", headers=op)).json() == before

    response = await client.patch(
        "/api/v1/points/00007",
        json={"contact_phone": "024 3823 4567", "capacity": 90, "name": "Phường Cống Vị (mới)"},
        headers=op,
    )
    assert response.status_code == 200, response.text
    point = response.json()
    assert (point["contact_phone"], point["capacity"], point["name"]) == (
        "024 3823 4567",
        90,
        "Phường Cống Vị (mới)",
    )
    assert point["district_name"] == before["district_name"]
    response = await client.get("/api/v1/points", params={"q": "cong vi (moi"}, headers=op)
    assert [p["code"] for p in response.json()["items"]] == ["00007"]

    response = await client.patch("/api/v1/points/NOPE", json={"capacity": 1}, headers=op)
    assert_error(response, 404, "not_found")
    for role in ("observer", "moderator"):
        response = await client.patch(
            "/api/v1/points/00007", json={"capacity": 1}, headers=staff[role]
        )
        assert_error(response, 403, "forbidden")
        response = await client.delete("/api/v1/points/00007", headers=staff[role])
        assert_error(response, 403, "forbidden")
    assert (await client.get("/api/v1/points/00007", headers=op)).json()["capacity"] == 90

    response = await client.delete("/api/v1/points/00007", headers=op)
    assert response.status_code == 204
    assert_error(await client.get("/api/v1/points/00007", headers=op), 404, "not_found")
    assert_error(await client.delete("/api/v1/points/00007", headers=op), 404, "not_found")
    assert await total_points(client, op) == 525


async def test_create_point_and_delete_when_invited(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]]
) -> None:
    op = staff["operator"]
    new = {"code": "HN-X1", "name": "Điểm cầu Hội trường", "capacity": 200}
    response = await client.post("/api/v1/points", json=new, headers=op)
    assert response.status_code == 201, response.text
    assert (response.json()["name"], response.json()["active"]) == ("Điểm cầu Hội trường", True)
    assert_error(await client.post("/api/v1/points", json=new, headers=op), 409, "conflict")
    response = await client.post(
        "/api/v1/points", json={"code": "bad code", "name": "x"}, headers=op
    )
    assert_error(response, 422, "validation_error")
    response = await client.post(
        "/api/v1/points", json={"code": "NUL1", "name": "x\u0000y"}, headers=op
    )
    assert_error(response, 422, "validation_error")
    response = await client.patch(
        "/api/v1/points/HN-X1", json={"contact_name": "a\u0000"}, headers=op
    )
    assert_error(response, 422, "validation_error")
    assert await total_points(client, op) == 1

    response = await client.post("/api/v1/sessions", json={"title": "Đối thoại"}, headers=op)
    assert response.status_code == 201, response.text
    session_id = response.json()["id"]
    response = await client.post(
        f"/api/v1/sessions/{session_id}/invitations",
        json={"point_codes": ["HN-X1"]},
        headers=op,
    )
    assert response.status_code == 200, response.text

    response = await client.delete("/api/v1/points/HN-X1", headers=op)
    body = assert_error(response, 409, "conflict")
    assert body["details"] == {"code": "HN-X1", "invitations": 1}
    assert (await client.get("/api/v1/points/HN-X1", headers=op)).status_code == 200
