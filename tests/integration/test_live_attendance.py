"""The attendance report of a real round with the 526 Hanoi wards: most confirm, some late, some
absent, one excused; the HTTP API drives the desk; the report is checked cell by cell in JSON, CSV
and XLSX, and the printable page is checked for what a clerk needs."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from typing import Any

import openpyxl
import pytest

from tests.integration.conftest import HANOI_POINTS, Client, Live

LATE = 7
ABSENT = 40
EXCUSED_CODE_INDEX = 0  # the first absent point is excused


def headcount_of(code: str) -> int:
    return int(code) % 97 + 3


async def confirm(client: Client, code: str, round_: int = 1) -> dict[str, Any]:
    reply = await client.request(
        {
            "type": "rollcall",
            "id": f"c-{code}",
            "action": "confirm",
            "round": round_,
            "headcount": headcount_of(code),
            "note": f"Điểm cầu {code}",
            "key": uuid.uuid4().hex,
        },
        within=30,
    )
    assert reply["type"] == "ack", reply
    result: dict[str, Any] = reply["result"]
    return result


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The desk's clock, moved forward by the test to pass the deadline."""
    offset = [0.0]
    real = time.time
    monkeypatch.setattr("signaling.rollcall.time.time", lambda: real() + offset[0])
    return offset


async def test_a_full_round_and_its_reports(live_server: Live, clock: list[float]) -> None:
    live = live_server
    codes = sorted(live.credentials)
    assert len(codes) == HANOI_POINTS
    on_time = codes[: HANOI_POINTS - LATE - ABSENT]
    late = codes[len(on_time) : len(on_time) + LATE]
    absent = codes[len(on_time) + LATE :]
    excused = absent[EXCUSED_CODE_INDEX]

    opened = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/rollcalls",
        json={"deadline_s": 120, "message": "Điểm danh đầu phiên"},
        headers=live.op,
    )
    assert opened.status_code == 201, opened.text
    assert opened.json()["round"]["round"] == 1
    assert opened.json()["round"]["counts"]["waiting"] == HANOI_POINTS

    clients = await asyncio.gather(*(live.hello_point(live.credentials[c]) for c in on_time + late))
    by_code = dict(zip(on_time + late, clients, strict=True))
    answers = await asyncio.gather(*(confirm(by_code[c], c) for c in on_time))
    assert {a["status"] for a in answers} == {"present"}
    clock[0] = 121.0
    answers = await asyncio.gather(*(confirm(by_code[c], c) for c in late))
    assert {a["status"] for a in answers} == {"late"}

    marked = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/rollcalls/1/records/{excused}",
        json={"status": "excused", "reason": "Mất điện cả phường"},
        headers=live.op,
    )
    assert marked.status_code == 200, marked.text
    assert marked.json()["status"] == "excused"
    closed = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/rollcalls/1/close", headers=live.op
    )
    assert closed.status_code == 200, closed.text
    detail = closed.json()
    expected_headcount = sum(headcount_of(c) for c in on_time + late)
    assert detail["round"]["counts"] == {
        "present": len(on_time),
        "late": LATE,
        "absent": ABSENT - 1,
        "excused": 1,
        "waiting": 0,
        "headcount": expected_headcount,
        "expected": HANOI_POINTS,
    }
    assert len(detail["records"]) == HANOI_POINTS
    assert sum(a["counts"]["expected"] for a in detail["areas"]) == HANOI_POINTS
    assert sum(a["counts"]["headcount"] for a in detail["areas"]) == expected_headcount

    # Wrong role, wrong session, bad body: typed errors, nothing changed.
    observer = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/rollcalls/1/close", headers=live.headers["observer"]
    )
    assert observer.status_code == 403
    again = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/rollcalls/1/close", headers=live.op
    )
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_transition"
    assert again.json()["details"]["reason"] == "round_closed"
    missing = await live.http.get("/api/v1/sessions/99999/rollcalls", headers=live.op)
    assert missing.status_code == 404
    no_reason = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/rollcalls/1/records/{absent[1]}",
        json={"status": "excused", "reason": ""},
        headers=live.op,
    )
    assert no_reason.status_code == 422

    # The report, as data (presence intervals are written in half-second batches).
    await live.state.signaling.intervals.flush()
    report = (
        await live.http.get(f"/api/v1/sessions/{live.session_id}/attendance", headers=live.op)
    ).json()
    assert len(report["rounds"]) == 1
    rows = {p["code"]: p for p in report["points"]}
    assert len(rows) == HANOI_POINTS
    assert rows[on_time[0]]["rounds"][0]["status"] == "present"
    assert rows[on_time[0]]["rounds"][0]["headcount"] == headcount_of(on_time[0])
    assert rows[on_time[0]]["rounds"][0]["note"] == f"Điểm cầu {on_time[0]}"
    assert rows[late[0]]["rounds"][0]["status"] == "late"
    assert rows[excused]["rounds"][0] == {
        "status": "excused",
        "headcount": None,
        "confirmed_at": None,
        "note": "",
        "reason": "Mất điện cả phường",
    }
    assert rows[absent[1]]["rounds"][0]["status"] == "absent"
    # Presence: every confirming point is connected now, with one open interval.
    assert rows[on_time[0]]["first_join"] is not None
    assert len(rows[on_time[0]]["intervals"]) == 1
    assert rows[absent[1]]["intervals"] == []
    assert rows[absent[1]]["connected_s"] == 0
    assert rows[on_time[0]]["name"] == live_name(rows, on_time[0])
    await check_files(live, on_time, late, absent, excused, expected_headcount)


def live_name(rows: dict[str, Any], code: str) -> str:
    name: str = rows[code]["name"]
    assert name.startswith(("Phường ", "Xã ", "Thị trấn ")), name
    return name


async def check_files(
    live: Live,
    on_time: list[str],
    late: list[str],
    absent: list[str],
    excused: str,
    expected_headcount: int,
) -> None:
    base = f"/api/v1/sessions/{live.session_id}/attendance"
    response = await live.http.get(f"{base}.csv", headers=live.op)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(table) == HANOI_POINTS + 1
    assert table[0][:8] == [
        "Mã điểm cầu",
        "Tên điểm cầu",
        "Quận/Huyện",
        "Tỉnh/Thành phố",
        "Lượt 1: trạng thái",
        "Lượt 1: số người",
        "Lượt 1: giờ xác nhận",
        "Lượt 1: ghi chú/lý do",
    ]
    rows = {r[0]: r for r in table[1:]}
    first = rows["00001"]
    assert first[:6] == [
        "00001",
        "Phường Phúc Xá",
        "Quận Ba Đình",
        "Thành phố Hà Nội",
        "Có mặt",
        str(headcount_of("00001")),
    ]
    assert first[7] == "Điểm cầu 00001"
    assert rows[late[0]][4] == "Đến muộn"
    assert rows[excused][4:8] == ["Có lý do", "", "", "Mất điện cả phường"]
    assert rows[absent[1]][4:6] == ["Vắng", ""]
    assert rows[absent[1]][-4:] == ["0.0", "0", "0", "0.0"]
    assert int(rows["00001"][-3]) == 1  # one stay so far

    response = await live.http.get(f"{base}.xlsx", headers=live.op)
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["Điểm danh", "Khoảng kết nối", "Tổng theo quận huyện"]
    sheet = book["Điểm danh"]
    assert sheet.freeze_panes == "C2"
    assert sheet.max_row == HANOI_POINTS + 1
    assert sheet["A1"].value == "Mã điểm cầu"
    assert sheet["A1"].font.b is True
    codes_in_sheet = [sheet.cell(row=r, column=1).value for r in range(2, sheet.max_row + 1)]
    assert codes_in_sheet == sorted(on_time + late + absent)
    by_code = {sheet.cell(row=r, column=1).value: r for r in range(2, sheet.max_row + 1)}
    r = by_code["00001"]
    assert [sheet.cell(row=r, column=c).value for c in range(1, 7)] == [
        "00001",
        "Phường Phúc Xá",
        "Quận Ba Đình",
        "Thành phố Hà Nội",
        "Có mặt",
        headcount_of("00001"),
    ]
    assert isinstance(sheet.cell(row=r, column=6).value, int)
    assert sheet.cell(row=by_code[excused], column=8).value == "Mất điện cả phường"
    assert sheet.column_dimensions["B"].width >= len("Phường Phúc Xá")
    stays = book["Khoảng kết nối"]
    assert stays.max_row - 1 == len(on_time) + len(late)
    totals = book["Tổng theo quận huyện"]
    last = totals.max_row
    assert totals.cell(row=last, column=1).value == "Tổng cộng"
    assert totals.cell(row=last, column=2).value == HANOI_POINTS
    head = [c.value for c in totals[1]]
    present_col = head.index("Lượt 1: Có mặt") + 1
    headcount_col = head.index("Lượt 1: số người") + 1
    assert totals.cell(row=last, column=present_col).value == len(on_time)
    assert totals.cell(row=last, column=headcount_col).value == expected_headcount
    assert (
        sum(totals.cell(row=i, column=headcount_col).value for i in range(2, last))
        == expected_headcount
    )
    ba_dinh = next(
        i for i in range(2, last) if totals.cell(row=i, column=1).value == "Quận Ba Đình"
    )
    assert totals.cell(row=ba_dinh, column=2).value == 13

    response = await live.http.get(f"{base}.html", headers=live.op)
    assert response.status_code == 200
    page = response.text
    assert '<html lang="vi">' in page
    assert "Phường Phúc Xá" in page
    assert f"<td>{expected_headcount}</td>" in page
    # summary: head + one round; points: head + 526; totals: head + 30 districts + the total
    assert page.count("<tr>") == (1 + 1) + (1 + HANOI_POINTS) + (1 + 30 + 1)

    english = await live.http.get(f"{base}.csv?lang=en", headers=live.op)
    assert english.content.decode("utf-8-sig").splitlines()[0].startswith("Point code,Point name")
    bad = await live.http.get(f"{base}.csv?lang=fr", headers=live.op)
    assert bad.status_code == 422
