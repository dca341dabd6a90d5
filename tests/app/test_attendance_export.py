"""The report files from plain data: what a clerk opens in Excel or prints, word for word."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import openpyxl

from app.attendance.export import csv_bytes, district_totals, grand_total, html_text, xlsx_bytes
from app.attendance.model import AttendanceReport, Interval, PointRow, RoundCell, RoundInfo

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def cell(
    status: str, headcount: int | None = None, minute: float | None = None, **kw: str
) -> RoundCell:
    return RoundCell(
        status=status,
        headcount=headcount,
        confirmed_at=None if minute is None else at(minute),
        note=kw.get("note", ""),
        reason=kw.get("reason", ""),
    )


def point(
    code: str,
    name: str,
    district: tuple[str, str] | None,
    rounds: tuple[RoundCell | None, ...],
    stays: tuple[Interval, ...] = (),
    speaking: tuple[int, float] = (0, 0.0),
) -> PointRow:
    connected = sum(
        ((i.disconnected_at or at(120)) - i.connected_at).total_seconds() for i in stays
    )
    return PointRow(
        code=code,
        name=name,
        district_code=district[0] if district else None,
        district_name=district[1] if district else None,
        province_code="01",
        province_name="Thành phố Hà Nội",
        rounds=rounds,
        intervals=stays,
        first_join=stays[0].connected_at if stays else None,
        last_leave=stays[-1].disconnected_at if stays else None,
        connected_s=connected,
        speaking_turns=speaking[0],
        speaking_s=speaking[1],
    )


BA_DINH = ("001", "Quận Ba Đình")
HOAN_KIEM = ("002", "Quận Hoàn Kiếm")


def report(rounds: int = 2) -> AttendanceReport:
    infos = (
        RoundInfo(1, at(0), at(2), at(10), "Điểm danh đầu phiên"),
        RoundInfo(2, at(60), at(62), None, "Sau giờ nghỉ"),
    )[:rounds]
    points = (
        point(
            "00001",
            "Phường Phúc Xá",
            BA_DINH,
            (cell("present", 25, 1, note="Có đại biểu HĐND"), cell("waiting"))[:rounds],
            (Interval(at(-5), at(30)), Interval(at(40), None)),
            (2, 150.0),
        ),
        point(
            "00004",
            'Phường "Trúc Bạch", cũ',
            BA_DINH,
            (cell("late", 12, 3), cell("present", 14, 61))[:rounds],
            (Interval(at(0), at(90)),),
        ),
        point(
            "00037",
            "<script>alert(1)</script>",
            HOAN_KIEM,
            (cell("excused", reason="Mất điện"), None)[:rounds],
        ),
        point("99999", "Xã Đồng Tâm", None, (cell("absent"), cell("waiting"))[:rounds]),
    )
    return AttendanceReport(
        session_id=7,
        title="Đối thoại với Thành ủy",
        hall_name="Hội trường Thành ủy",
        scheduled_start=at(0),
        generated_at=at(120),
        timezone="Asia/Ho_Chi_Minh",
        rounds=infos,
        points=points,
    )


def test_csv_starts_with_a_bom_and_round_trips_every_name() -> None:
    data = csv_bytes(report())
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["Mã điểm cầu", "Tên điểm cầu", "Quận/Huyện", "Tỉnh/Thành phố"]
    assert rows[0][4:12] == [
        "Lượt 1: trạng thái",
        "Lượt 1: số người",
        "Lượt 1: giờ xác nhận",
        "Lượt 1: ghi chú/lý do",
        "Lượt 2: trạng thái",
        "Lượt 2: số người",
        "Lượt 2: giờ xác nhận",
        "Lượt 2: ghi chú/lý do",
    ]
    assert rows[1] == [
        "00001",
        "Phường Phúc Xá",
        "Quận Ba Đình",
        "Thành phố Hà Nội",
        "Có mặt",
        "25",
        "2026-12-01 08:01:00",  # local time, not UTC
        "Có đại biểu HĐND",
        "Chưa trả lời",
        "",
        "",
        "",
        "2026-12-01 07:55:00",
        "",  # still connected
        "115.0",  # 35 min + 80 min to the report's time
        "2",
        "2",
        "2.5",
    ]
    assert rows[2][1] == 'Phường "Trúc Bạch", cũ'
    assert rows[2][4] == "Đến muộn"
    assert rows[3][4:12] == ["Có lý do", "", "", "Mất điện", "", "", "", ""]
    assert rows[4][2] == ""
    assert rows[4][4] == "Vắng"


def test_english_words_and_same_names() -> None:
    rows = list(csv.reader(io.StringIO(csv_bytes(report(), lang="en").decode("utf-8-sig"))))
    assert rows[0][:5] == ["Point code", "Point name", "District", "Province", "Round 1: status"]
    assert rows[1][1] == "Phường Phúc Xá"
    assert rows[1][4] == "Present"
    assert rows[2][4] == "Late"


def test_district_totals_by_hand() -> None:
    totals = district_totals(report())
    assert [(t.district_code, t.district_name, t.points) for t in totals] == [
        ("", "(không rõ)", 1),
        ("001", "Quận Ba Đình", 2),
        ("002", "Quận Hoàn Kiếm", 1),
    ]
    ba_dinh = totals[1]
    assert (ba_dinh.rounds[0].present, ba_dinh.rounds[0].late, ba_dinh.rounds[0].headcount) == (
        1,
        1,
        37,
    )
    assert (ba_dinh.rounds[1].waiting, ba_dinh.rounds[1].present, ba_dinh.rounds[1].headcount) == (
        1,
        1,
        14,
    )
    assert ba_dinh.points_connected == 2
    hoan_kiem = totals[2]
    assert hoan_kiem.rounds[1].invited == 0  # not in round 2
    total = grand_total(report())
    assert total.rounds[0].invited == 4
    assert total.rounds[0].headcount == 37
    assert total.rounds[1].invited == 3
    assert sum(t.rounds[0].headcount for t in totals) == total.rounds[0].headcount


def test_workbook_cells() -> None:
    book = openpyxl.load_workbook(io.BytesIO(xlsx_bytes(report())))
    assert book.sheetnames == ["Điểm danh", "Khoảng kết nối", "Tổng theo quận huyện"]
    sheet = book["Điểm danh"]
    assert sheet.freeze_panes == "C2"
    assert sheet["B2"].value == "Phường Phúc Xá"
    assert sheet["F2"].value == 25
    assert sheet["F3"].value == 12
    assert sheet["O2"].value == 115  # minutes, a number Excel can sum
    assert sheet["B4"].value == "<script>alert(1)</script>"
    assert sheet.column_dimensions["B"].width > 10
    stays = book["Khoảng kết nối"]
    assert [c.value for c in stays[2]] == [
        "00001",
        "Phường Phúc Xá",
        "Quận Ba Đình",
        "2026-12-01 07:55:00",
        "2026-12-01 08:30:00",
        35.0,
    ]
    assert stays.max_row == 1 + 3
    totals = book["Tổng theo quận huyện"]
    assert [c.value for c in totals[totals.max_row]][:9] == ["Tổng cộng", 4, 4, 1, 1, 1, 1, 0, 37]


class Rows(HTMLParser):
    """Body rows per table."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[int] = []
        self.in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self.tables.append(0)
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.tables[-1] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self.in_body = False


def test_printable_page_escapes_and_counts() -> None:
    page = html_text(report())
    assert page.startswith("<!doctype html>")
    assert '<html lang="vi">' in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "size: A4 landscape" in page
    assert "display: table-header-group" in page
    parser = Rows()
    parser.feed(page)
    # summary: 2 rounds; points: 4; totals: 3 districts + the total
    assert parser.tables == [2, 4, 4]
    assert "<td>37</td>" in page


def test_empty_reports_render() -> None:
    empty = AttendanceReport(
        session_id=1,
        title="Trống",
        hall_name="",
        scheduled_start=None,
        generated_at=T0,
        timezone="Asia/Ho_Chi_Minh",
        rounds=(),
        points=(),
    )
    assert csv_bytes(empty).decode("utf-8-sig").count("\n") == 1
    assert openpyxl.load_workbook(io.BytesIO(xlsx_bytes(empty)))["Điểm danh"].max_row == 1
    assert "Chưa có lượt điểm danh nào." in html_text(empty)
    assert len(report(rounds=0).points) == 4
    assert (
        csv_bytes(report(rounds=0))
        .decode("utf-8-sig")
        .splitlines()[0]
        .endswith("Số phút phát biểu")
    )
