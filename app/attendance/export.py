"""The attendance report as the hall's clerk files it: CSV, an Excel workbook, a printable page.

The reader is the secretariat that attaches attendance to the minutes of a dialogue conference, in
Vietnamese, usually by opening the file in Excel. So the CSV starts with a byte-order mark (without
it Excel reads UTF-8 as a legacy code page and "Phường Phúc Xá" turns to mojibake), times are shown in
the session's local time (Asia/Ho_Chi_Minh, not UTC), statuses are words, not codes, and names are
written exactly as stored. Every word of the report is in WORDS, one table per language.

Layout, the same in every format: one row per point (code, name, district, province), then per round
its status, headcount, time confirmed and note/reason, then presence (first join, last leave,
minutes connected, stays) and speaking (turns, minutes).
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from app.attendance.model import AttendanceReport, PointRow, RoundCell

Lang = Literal["vi", "en"]
STATUSES = ("present", "late", "absent", "excused", "waiting")

WORDS: dict[str, dict[str, str]] = {
    "vi": {
        "present": "Có mặt",
        "late": "Đến muộn",
        "absent": "Vắng",
        "excused": "Có lý do",
        "waiting": "Chưa trả lời",
        "code": "Mã điểm cầu",
        "name": "Tên điểm cầu",
        "district": "Quận/Huyện",
        "province": "Tỉnh/Thành phố",
        "round": "Lượt {n}",
        "status": "trạng thái",
        "headcount": "số người",
        "confirmed_at": "giờ xác nhận",
        "note": "ghi chú/lý do",
        "first_join": "Kết nối lần đầu",
        "last_leave": "Rời lần cuối",
        "connected_min": "Số phút kết nối",
        "stays": "Số lần kết nối",
        "speaking_turns": "Số lượt phát biểu",
        "speaking_min": "Số phút phát biểu",
        "sheet_points": "Điểm danh",
        "sheet_intervals": "Khoảng kết nối",
        "sheet_totals": "Tổng theo quận huyện",
        "connected": "Kết nối",
        "disconnected": "Ngắt kết nối",
        "minutes": "Số phút",
        "invited": "được mời",
        "points_connected": "Số điểm đã kết nối",
        "total": "Tổng cộng",
        "unknown_area": "(không rõ)",
        "title": "Báo cáo điểm danh",
        "hall": "Hội trường",
        "generated": "Lập lúc",
        "times_in": "Giờ theo múi giờ {tz}",
        "summary": "Tổng hợp theo lượt",
        "opened": "mở",
        "deadline": "hạn",
        "closed": "đóng",
        "open_round": "đang mở",
        "by_district": "Tổng theo quận/huyện",
        "points": "Điểm cầu",
        "no_rounds": "Chưa có lượt điểm danh nào.",
    },
    "en": {
        "present": "Present",
        "late": "Late",
        "absent": "Absent",
        "excused": "Excused",
        "waiting": "Waiting",
        "code": "Point code",
        "name": "Point name",
        "district": "District",
        "province": "Province",
        "round": "Round {n}",
        "status": "status",
        "headcount": "headcount",
        "confirmed_at": "confirmed at",
        "note": "note/reason",
        "first_join": "First join",
        "last_leave": "Last leave",
        "connected_min": "Minutes connected",
        "stays": "Stays",
        "speaking_turns": "Speaking turns",
        "speaking_min": "Minutes speaking",
        "sheet_points": "Attendance",
        "sheet_intervals": "Connected intervals",
        "sheet_totals": "Totals by district",
        "connected": "Connected",
        "disconnected": "Disconnected",
        "minutes": "Minutes",
        "invited": "invited",
        "points_connected": "Points connected",
        "total": "Total",
        "unknown_area": "(unknown)",
        "title": "Attendance report",
        "hall": "Hall",
        "generated": "Generated",
        "times_in": "Times in {tz}",
        "summary": "Per round",
        "opened": "opened",
        "deadline": "deadline",
        "closed": "closed",
        "open_round": "open",
        "by_district": "Totals by district",
        "points": "Points",
        "no_rounds": "No roll-call round yet.",
    },
}

Cell = str | int | float | None


@dataclass
class RoundTotals:
    invited: int = 0
    present: int = 0
    late: int = 0
    absent: int = 0
    excused: int = 0
    waiting: int = 0
    headcount: int = 0

    def add(self, cell: RoundCell | None) -> None:
        if cell is None:
            return
        self.invited += 1
        if cell.status in STATUSES:
            setattr(self, cell.status, getattr(self, cell.status) + 1)
        if cell.status in ("present", "late") and cell.headcount is not None:
            self.headcount += cell.headcount


@dataclass
class AreaTotal:
    district_code: str
    district_name: str
    points: int = 0
    rounds: list[RoundTotals] = field(default_factory=list)
    points_connected: int = 0
    connected_s: float = 0.0
    speaking_s: float = 0.0

    def add(self, row: PointRow) -> None:
        self.points += 1
        for totals, cell in zip(self.rounds, row.rounds, strict=True):
            totals.add(cell)
        self.points_connected += bool(row.intervals)
        self.connected_s += row.connected_s
        self.speaking_s += row.speaking_s


def district_totals(report: AttendanceReport, lang: Lang = "vi") -> list[AreaTotal]:
    """One row per district, in code order; points without a district are one row, code ""."""
    areas: dict[str, AreaTotal] = {}
    for row in report.points:
        code = row.district_code or ""
        area = areas.get(code)
        if area is None:
            name = row.district_name or code or WORDS[lang]["unknown_area"]
            area = AreaTotal(code, name, rounds=[RoundTotals() for _ in report.rounds])
            areas[code] = area
        area.add(row)
    return [areas[code] for code in sorted(areas)]


def grand_total(report: AttendanceReport, lang: Lang = "vi") -> AreaTotal:
    total = AreaTotal("", WORDS[lang]["total"], rounds=[RoundTotals() for _ in report.rounds])
    for row in report.points:
        total.add(row)
    return total


# ---- one table, three formats ----------------------------------------------------------------


def _local(value: datetime | None, zone: ZoneInfo) -> str:
    return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _minutes(seconds: float) -> float:
    return round(seconds / 60, 1)


def header(report: AttendanceReport, lang: Lang) -> list[str]:
    w = WORDS[lang]
    columns = [w["code"], w["name"], w["district"], w["province"]]
    for info in report.rounds:
        label = w["round"].format(n=info.number)
        columns += [f"{label}: {w[key]}" for key in ("status", "headcount", "confirmed_at", "note")]
    columns += [
        w["first_join"],
        w["last_leave"],
        w["connected_min"],
        w["stays"],
        w["speaking_turns"],
        w["speaking_min"],
    ]
    return columns


def point_row(row: PointRow, zone: ZoneInfo, lang: Lang) -> list[Cell]:
    w = WORDS[lang]
    cells: list[Cell] = [row.code, row.name, row.district_name or "", row.province_name or ""]
    for cell in row.rounds:
        if cell is None:
            cells += ["", None, "", ""]
            continue
        remark = " — ".join(part for part in (cell.note, cell.reason) if part)
        cells += [
            w.get(cell.status, cell.status),
            cell.headcount,
            _local(cell.confirmed_at, zone),
            remark,
        ]
    cells += [
        _local(row.first_join, zone),
        _local(row.last_leave, zone),
        _minutes(row.connected_s),
        len(row.intervals),
        row.speaking_turns,
        _minutes(row.speaking_s),
    ]
    return cells


def rows_of(report: AttendanceReport, lang: Lang) -> list[list[Cell]]:
    zone = ZoneInfo(report.timezone)
    return [point_row(row, zone, lang) for row in report.points]


def csv_bytes(report: AttendanceReport, lang: Lang = "vi") -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header(report, lang))
    for cells in rows_of(report, lang):
        writer.writerow(["" if c is None else c for c in cells])
    return out.getvalue().encode("utf-8-sig")


def totals_header(report: AttendanceReport, lang: Lang) -> list[str]:
    w = WORDS[lang]
    columns = [w["district"], w["points"]]
    for info in report.rounds:
        label = w["round"].format(n=info.number)
        columns += [
            f"{label}: {w[key]}"
            for key in ("invited", "present", "late", "absent", "excused", "waiting", "headcount")
        ]
    return [*columns, w["points_connected"], w["connected_min"], w["speaking_min"]]


def totals_row(area: AreaTotal) -> list[Cell]:
    cells: list[Cell] = [area.district_name, area.points]
    for t in area.rounds:
        cells += [t.invited, t.present, t.late, t.absent, t.excused, t.waiting, t.headcount]
    return [*cells, area.points_connected, _minutes(area.connected_s), _minutes(area.speaking_s)]


def _sheet(
    book: Workbook, title: str, head: list[str], rows: list[list[Cell]], freeze: str
) -> None:
    sheet = book.create_sheet(title[:31])
    sheet.append(head)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for cells in rows:
        sheet.append(cells)
    sheet.freeze_panes = freeze
    for index, name in enumerate(head, start=1):
        widest = max([len(str(name))] + [len(str(r[index - 1] or "")) for r in rows[:2000]])
        sheet.column_dimensions[get_column_letter(index)].width = min(60, max(8, widest + 2))


def xlsx_bytes(report: AttendanceReport, lang: Lang = "vi") -> bytes:
    """Times are text in local time (as in the CSV): a clerk reads them, nobody computes on them;
    headcounts are integers and minutes numbers, so the clerk can sum them."""
    w = WORDS[lang]
    zone = ZoneInfo(report.timezone)
    book = Workbook()
    default = book.active
    if default is not None:
        book.remove(default)
    _sheet(book, w["sheet_points"], header(report, lang), rows_of(report, lang), "C2")
    intervals: list[list[Cell]] = []
    for row in report.points:
        for stay in row.intervals:
            end = stay.disconnected_at or report.generated_at
            intervals.append(
                [
                    row.code,
                    row.name,
                    row.district_name or "",
                    _local(stay.connected_at, zone),
                    _local(stay.disconnected_at, zone),
                    _minutes((end - stay.connected_at).total_seconds()),
                ]
            )
    _sheet(
        book,
        w["sheet_intervals"],
        [w["code"], w["name"], w["district"], w["connected"], w["disconnected"], w["minutes"]],
        intervals,
        "C2",
    )
    totals = [totals_row(a) for a in district_totals(report, lang)]
    totals.append(totals_row(grand_total(report, lang)))
    _sheet(book, w["sheet_totals"], totals_header(report, lang), totals, "B2")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def html_text(report: AttendanceReport, lang: Lang = "vi") -> str:
    w = WORDS[lang]
    zone = ZoneInfo(report.timezone)
    e = html.escape

    def table(head: list[str], rows: list[list[Cell]], css: str) -> str:
        th = "".join(f"<th>{e(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{e('' if c is None else str(c))}</td>" for c in r) + "</tr>"
            for r in rows
        )
        return f'<table class="{css}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'

    summary_rows: list[list[Cell]] = []
    total = grand_total(report, lang)
    for info, t in zip(report.rounds, total.rounds, strict=True):
        state = (
            f"{w['closed']} {_local(info.closed_at, zone)}"
            if info.closed_at is not None
            else w["open_round"]
        )
        summary_rows.append(
            [
                w["round"].format(n=info.number),
                f"{w['opened']} {_local(info.opened_at, zone)}",
                f"{w['deadline']} {_local(info.deadline, zone)}",
                state,
                t.invited,
                t.present,
                t.late,
                t.absent,
                t.excused,
                t.waiting,
                t.headcount,
            ]
        )
    summary_head = [
        "",
        w["opened"],
        w["deadline"],
        w["closed"],
        w["invited"],
        *(w[s] for s in STATUSES),
        w["headcount"],
    ]
    summary = (
        table(summary_head, summary_rows, "summary")
        if report.rounds
        else f"<p>{e(w['no_rounds'])}</p>"
    )
    totals = [totals_row(a) for a in district_totals(report, lang)]
    totals.append(totals_row(total))
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<title>{e(w["title"])} — {e(report.title)}</title>
<style>
body {{ font-family: "Times New Roman", serif; font-size: 11pt; margin: 1.5em; }}
h1 {{ font-size: 16pt; margin: 0 0 .3em; }}
table {{ border-collapse: collapse; width: 100%; margin: .6em 0 1.2em; font-size: 8.5pt; }}
th, td {{ border: 1px solid #444; padding: 2px 4px; text-align: left; vertical-align: top; }}
th {{ background: #eee; }}
thead {{ display: table-header-group; }}
tr {{ page-break-inside: avoid; }}
@media print {{ @page {{ size: A4 landscape; margin: 10mm; }} body {{ margin: 0; }} }}
</style>
</head>
<body>
<h1>{e(w["title"])}: {e(report.title)}</h1>
<p>{e(w["hall"])}: {e(report.hall_name)} · {e(w["generated"])}: {e(_local(report.generated_at, zone))}
· {e(w["times_in"].format(tz=report.timezone))}</p>
<h2>{e(w["summary"])}</h2>
{summary}
<h2>{e(w["points"])}</h2>
{table(header(report, lang), rows_of(report, lang), "points")}
<h2>{e(w["by_district"])}</h2>
{table(totals_header(report, lang), totals, "totals")}
</body>
</html>
"""
