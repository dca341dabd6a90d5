"""parse_points_csv: bytes in, validated rows and row errors (with physical line numbers) out."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from app.errors import ImportRejected
from bridges.directory.csv_format import HEADER_ALIASES, ParsedFile, parse_points_csv
from bridges.directory.schemas import RowError
from tests.conftest import COMMUNES_CSV, HANOI_CSV


def parse(text: str, *, max_rows: int = 100, newline: str = "\n") -> ParsedFile:
    return parse_points_csv(text.replace("\n", newline).encode("utf-8"), max_rows=max_rows)


def rejected(data: bytes, *, max_rows: int = 100) -> ImportRejected:
    with pytest.raises(ImportRejected) as caught:
        parse_points_csv(data, max_rows=max_rows)
    assert caught.value.code == "import_invalid_rows"
    assert caught.value.status == 422
    return caught.value


def raw_rows(path: Path) -> list[dict[str, str]]:
    """The reference file read with nothing but the csv module: the oracle for byte-exact names."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def errors_by_line(parsed: ParsedFile) -> dict[int, list[RowError]]:
    found: dict[int, list[RowError]] = {}
    for error in parsed.errors:
        found.setdefault(error.line, []).append(error)
    return found


# ---- the two reference files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt", "count"),
    [(HANOI_CSV, "hanoi-wards-2024", 526), (COMMUNES_CSV, "vietnam-communes-2025", 3321)],
)
def test_reference_files_parse_without_errors(path: Path, fmt: str, count: int) -> None:
    parsed = parse_points_csv(path.read_bytes(), max_rows=20_000)
    assert parsed.format == fmt
    assert parsed.errors == []
    assert parsed.ignored_columns == []
    assert len(parsed.rows) == count
    # No blank lines or multi-line fields in these files: row i is on line i + 2.
    assert [row.line for row in parsed.rows] == list(range(2, count + 2))


@pytest.mark.parametrize("path", [HANOI_CSV, COMMUNES_CSV])
def test_reference_values_survive_byte_exact(path: Path) -> None:
    parsed = parse_points_csv(path.read_bytes(), max_rows=20_000)
    raw = raw_rows(path)
    assert len(raw) == len(parsed.rows)
    for row, cells in zip(parsed.rows, raw, strict=True):
        point = row.point
        assert point.code == cells["code"]
        assert point.name.encode("utf-8") == cells["name"].encode("utf-8"), row.line
        assert point.kind == cells["kind"]
        assert point.province_code == cells["province_code"]
        assert point.province_name == cells["province_name"]
        assert point.district_code == cells.get("district_code")
        assert point.district_name == cells.get("district_name")
        assert point.lat == float(cells["lat"])
        assert point.lon == float(cells["lon"])
        assert point.active is True
        assert point.capacity is None
        assert point.contact_phone is None


def test_hanoi_reads_past_district_kind() -> None:
    parsed = parse_points_csv(HANOI_CSV.read_bytes(), max_rows=20_000)
    first = parsed.rows[0].point
    assert (first.code, first.name, first.district_code, first.district_name) == (
        "00001",
        "Phường Phúc Xá",
        "001",
        "Quận Ba Đình",
    )
    assert "district_kind" not in first.model_dump()


def test_reference_file_with_bom_and_crlf_keeps_its_format() -> None:
    text = HANOI_CSV.read_text(encoding="utf-8")
    data = "\ufeff".encode() + text.replace("\n", "\r\n").encode("utf-8")
    parsed = parse_points_csv(data, max_rows=20_000)
    assert parsed.format == "hanoi-wards-2024"
    assert parsed.errors == []
    assert len(parsed.rows) == 526
    assert parsed.rows[0].point.code == "00001"
    assert parsed.rows[-1].line == 527
    assert all(not r.point.name.endswith("\r") for r in parsed.rows)
    assert all(r.point.lon is not None for r in parsed.rows)


# ---- the generic format ---------------------------------------------------------------------


def test_generic_english_headers_every_column() -> None:
    parsed = parse(
        "code,name,kind,district_code,district_name,province_code,province_name,"
        "contact_name,contact_phone,capacity,active,lat,lon\n"
        "P001,Phường Một,Phường,D01,Quận Một,01,Hà Nội,Nguyễn Văn A,+84 912 345 678,120,yes,"
        "21.03,105.85\n"
        "P002,Xã Hai,Xã,,,01,Hà Nội,,,0,no,,\n"
    )
    assert parsed.format == "generic"
    assert parsed.errors == []
    one, two = (row.point for row in parsed.rows)
    assert one.model_dump() == {
        "code": "P001",
        "name": "Phường Một",
        "kind": "Phường",
        "district_code": "D01",
        "district_name": "Quận Một",
        "province_code": "01",
        "province_name": "Hà Nội",
        "contact_name": "Nguyễn Văn A",
        "contact_phone": "+84 912 345 678",
        "capacity": 120,
        "active": True,
        "lat": 21.03,
        "lon": 105.85,
    }
    assert (two.capacity, two.active, two.district_code, two.lat, two.contact_phone) == (
        0,
        False,
        None,
        None,
        None,
    )


def test_generic_only_code_and_name_are_required() -> None:
    parsed = parse("name,code\nXã Một,X1\n")
    assert parsed.errors == []
    point = parsed.rows[0].point
    assert (point.code, point.name, point.kind, point.active) == ("X1", "Xã Một", "", True)


def test_generic_vietnamese_headers() -> None:
    parsed = parse(
        "Mã,Tên,Loại,Mã quận huyện,Quận huyện,Mã tỉnh,Tỉnh/Thành phố,Người liên hệ,"
        "Số điện thoại,Sức chứa,Hoạt động,Vĩ độ,Kinh độ\n"
        "00001,Phường Phúc Xá,Phường,001,Quận Ba Đình,01,Thành phố Hà Nội,Trần Thị B,"
        "0912.345.678,80,có,21.0468,105.8481\n"
        "00004,Phường Trúc Bạch,Phường,001,Quận Ba Đình,01,Thành phố Hà Nội,,,,Không,,\n"
        "00006,Phường Vĩnh Phúc,Phường,001,Quận Ba Đình,01,Thành phố Hà Nội,,,,CÓ,,\n"
    )
    assert parsed.format == "generic"
    assert parsed.errors == []
    assert parsed.ignored_columns == []
    first, second, third = (row.point for row in parsed.rows)
    assert first.name == "Phường Phúc Xá"
    assert (first.district_code, first.district_name) == ("001", "Quận Ba Đình")
    assert (first.province_code, first.province_name) == ("01", "Thành phố Hà Nội")
    assert (first.contact_name, first.contact_phone, first.capacity) == (
        "Trần Thị B",
        "0912.345.678",
        80,
    )
    assert (first.lat, first.lon) == (21.0468, 105.8481)
    assert (first.active, second.active, third.active) == (True, False, True)


@pytest.mark.parametrize(
    "header",
    [
        "Mã đơn vị,Tên đơn vị,Điện thoại,Số chỗ,Sử dụng",
        "MÃ ĐIỂM CẦU,TÊN ĐIỂM CẦU,SĐT,SỨC CHỨA,HOẠT ĐỘNG",
        "ma_dvhc,ten,sdt,so cho ngoi,hoat dong",
        "MÃ,TÊN,SO_DIEN_THOAI,SỨC-CHỨA,Hoạt  động",
        "Code,Name,Phone,Seats,Active",
        " code , name , contact-phone , capacity , active ",
    ],
)
def test_header_aliases(header: str) -> None:
    parsed = parse(f"{header}\nA1,Xã Một,0912345678,50,1\n")
    assert parsed.errors == []
    assert parsed.ignored_columns == []
    point = parsed.rows[0].point
    assert (point.code, point.name, point.contact_phone, point.capacity, point.active) == (
        "A1",
        "Xã Một",
        "0912345678",
        50,
        True,
    )


def test_multiword_english_headers_with_spaces() -> None:
    parsed = parse(
        "Code,Name,District Code,District Name,Province Code,Province Name,Contact Name,"
        "Contact Phone\nA1,Xã Một,D1,Huyện Một,01,Hà Nội,Lê C,0912345678\n"
    )
    assert parsed.ignored_columns == []
    point = parsed.rows[0].point
    assert (point.district_code, point.district_name, point.province_code) == (
        "D1",
        "Huyện Một",
        "01",
    )
    assert (point.province_name, point.contact_name, point.contact_phone) == (
        "Hà Nội",
        "Lê C",
        "0912345678",
    )


@pytest.mark.parametrize(
    ("word", "active"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        ("x", True),
        ("có", True),
        ("Co", True),
        ("active", True),
        ("0", False),
        ("FALSE", False),
        ("no", False),
        ("không", False),
        ("KHÔNG", False),
        ("inactive", False),
        ("", True),
    ],
)
def test_active_words(word: str, active: bool) -> None:
    parsed = parse(f"code,name,active\nA1,Xã Một,{word}\n")
    assert parsed.errors == []
    assert parsed.rows[0].point.active is active


def test_unknown_columns_are_ignored_and_listed() -> None:
    parsed = parse("code,name,Ghi chú,,notes\nA1,Xã Một,x,y,z\n")
    assert parsed.errors == []
    assert parsed.ignored_columns == ["Ghi chú", "notes"]
    assert parsed.rows[0].point.name == "Xã Một"


def test_bom_is_stripped_from_the_first_header() -> None:
    data = "\ufeffMã,Tên\nA1,Xã Một\n".encode()
    parsed = parse_points_csv(data, max_rows=10)
    assert parsed.errors == []
    assert parsed.rows[0].point.code == "A1"


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
def test_delimiters(delimiter: str) -> None:
    lines = [
        ["code", "name", "capacity", "lat"],
        ["A1", '"Xã Một, Hai"', "10", "21.5"],
        ["A2", "Xã; Ba", "", ""] if delimiter != ";" else ["A2", '"Xã; Ba"', "", ""],
    ]
    text = "\n".join(delimiter.join(cells) for cells in lines) + "\n"
    parsed = parse(text)
    assert parsed.errors == []
    assert [(r.point.code, r.point.name) for r in parsed.rows] == [
        ("A1", "Xã Một, Hai"),
        ("A2", "Xã; Ba"),
    ]
    assert parsed.rows[0].point.capacity == 10
    assert parsed.rows[0].point.lat == 21.5


def test_blank_lines_are_skipped_and_do_not_shift_line_numbers() -> None:
    parsed = parse("code,name\n\nA1,Xã Một\n\n   \n,,\nA2,Xã Hai\n\n")
    assert parsed.errors == []
    assert [(r.line, r.point.code) for r in parsed.rows] == [(3, "A1"), (7, "A2")]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_line_endings(newline: str) -> None:
    parsed = parse("code,name\nA1,Xã Một\nA2,Xã Hai\n,bad\n", newline=newline)
    assert [(r.line, r.point.name) for r in parsed.rows] == [(2, "Xã Một"), (3, "Xã Hai")]
    assert [(e.line, e.field) for e in parsed.errors] == [(4, "code")]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_quoted_fields_with_newlines_keep_line_numbers(newline: str) -> None:
    parsed = parse(
        'code,name,contact_name\nA1,"Xã\nMột","Người\nliên\nhệ"\nA2,Xã Hai,\n,no code,\n'
        'A3,"Xã ""Ba""",\nA4,"x' + "y" * 200 + '",\n',
        newline=newline,
    )
    assert [(r.line, r.point.code) for r in parsed.rows] == [(2, "A1"), (6, "A2"), (8, "A3")]
    assert parsed.rows[0].point.name == f"Xã{newline}Một"
    assert parsed.rows[2].point.name == 'Xã "Ba"'
    assert [(e.line, e.field) for e in parsed.errors] == [(7, "code"), (9, "name")]


def test_malformed_csv_rows_are_reported_on_their_line() -> None:
    parsed = parse('code,name\nA1,"Xã" Một\nA2,Xã Hai\nA3,"never closed\nA4,Xã Bốn\n')
    assert [(r.line, r.point.code) for r in parsed.rows] == [(3, "A2")]
    assert [e.line for e in parsed.errors] == [2, 4]
    assert all(e.field is None and e.message.startswith("malformed CSV") for e in parsed.errors)


# ---- invalid rows ---------------------------------------------------------------------------


def test_invalid_rows_are_reported_with_line_and_field() -> None:
    rows = [
        "code,name,capacity,lat,lon,contact_phone,active",
        "OK1,Xã Một,10,21,105,0912345678,có",  # 2
        ",Xã không mã,,,,,",  # 3
        "A B,Xã Hai,,,,,",  # 4
        "-A,Xã Ba,,,,,",  # 5
        "ABCDEFGHIJKLMNOPQ,Xã Bốn,,,,,",  # 6: 17 characters
        "A7," + "x" * 201 + ",,,,,",  # 7
        "A8,,,,,,",  # 8
        "A9,Xã Chín,nhiều,,,,",  # 9
        "A10,Xã Mười,-1,,,,",  # 10
        "A11,Xã,1.5,,,,",  # 11
        "A12,Xã,,91,,,",  # 12
        "A13,Xã,,,-181,,",  # 13
        "A14,Xã,,abc,,,",  # 14
        "A15,Xã,,nan,inf,,",  # 15
        "A16,Xã,,,,12ab,",  # 16
        "A17,Xã,,,,123,",  # 17: too short
        "A18,Xã,,,,,maybe",  # 18
        "OK1,Xã Một lần nữa,,,,,",  # 19
        "A20,Xã,,,,,,extra",  # 20
        "A21,Xã,100001,,,,",  # 21
        "OK2,Xã Hai mươi hai",  # 22: short rows are fine
    ]
    parsed = parse("\n".join(rows) + "\n")
    assert [(r.line, r.point.code) for r in parsed.rows] == [(2, "OK1"), (22, "OK2")]
    found = errors_by_line(parsed)
    expected_fields: dict[int, list[str | None]] = {
        3: ["code"],
        4: ["code"],
        5: ["code"],
        6: ["code"],
        7: ["name"],
        8: ["name"],
        9: ["capacity"],
        10: ["capacity"],
        11: ["capacity"],
        12: ["lat"],
        13: ["lon"],
        14: ["lat"],
        15: ["lat", "lon"],
        16: ["contact_phone"],
        17: ["contact_phone"],
        18: ["active"],
        19: ["code"],
        20: [None],
        21: ["capacity"],
    }
    assert {line: [e.field for e in errs] for line, errs in found.items()} == expected_fields
    assert found[19][0].message == "duplicate code OK1, first on line 2"
    assert found[20][0].message == "expected 7 columns, found 8"
    assert "200" in found[7][0].message
    assert "greater than or equal to 0" in found[10][0].message
    assert "yes/no" in found[18][0].message
    assert all(e.message for e in parsed.errors)


def test_duplicate_code_points_at_the_first_valid_occurrence() -> None:
    parsed = parse("code,name\nA1,\nA1,Xã Một\n\nA1,Xã Một bis\nA1,Xã Một ter\n")
    assert [(r.line, r.point.name) for r in parsed.rows] == [(3, "Xã Một")]
    assert [(e.line, e.message) for e in parsed.errors] == [
        (2, "Field required"),
        (5, "duplicate code A1, first on line 3"),
        (6, "duplicate code A1, first on line 3"),
    ]


def test_codes_and_names_are_trimmed() -> None:
    parsed = parse("code,name\n  A1 ,  Xã Một  \n")
    assert parsed.errors == []
    assert (parsed.rows[0].point.code, parsed.rows[0].point.name) == ("A1", "Xã Một")


# ---- files rejected as a whole --------------------------------------------------------------


def _only_error(exc: ImportRejected) -> dict[str, Any]:
    errors = exc.details["errors"]
    assert isinstance(errors, list)
    assert len(errors) >= 1
    first: dict[str, Any] = errors[0]
    return first


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("name,kind", ["code"]),
        ("code,kind", ["name"]),
        ("kind,lat,lon", ["code", "name"]),
    ],
)
def test_missing_required_columns(header: str, missing: list[str]) -> None:
    exc = rejected(f"{header}\nA1,Xã,1\n".encode())
    assert [e["field"] for e in exc.details["errors"]] == missing
    assert all(e["line"] == 1 for e in exc.details["errors"])
    assert all(e["message"] == "required column missing" for e in exc.details["errors"])


@pytest.mark.parametrize(
    "header", ["code,name,Mã", "code,name,Tên đơn vị", "Số chỗ,code,name,seats"]
)
def test_duplicated_column(header: str) -> None:
    exc = rejected(f"{header}\n".encode())
    error = _only_error(exc)
    assert (error["line"], error["message"]) == (1, "duplicate column")
    assert error["field"] in {"code", "name", "capacity"}
    assert "appears twice" in exc.message


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"   \n\r\n\n", b"\t\n"])
def test_empty_file(data: bytes) -> None:
    exc = rejected(data)
    error = _only_error(exc)
    assert error["line"] == 1
    assert exc.message == "the file is empty"


def test_header_only_file_has_no_rows() -> None:
    parsed = parse("code,name\n")
    assert (parsed.format, parsed.rows, parsed.errors) == ("generic", [], [])


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ("code,name\nA1,Đông Anh\nA2,Ba Vi\n".encode("cp1258"), 2),
        ("code,name\nA1,Ba Vi\nA2,Ba Vì\n".encode("latin-1"), 3),
        ("code,nám\nA1,Ba\n".encode("latin-1"), 1),
        (b"code,name\r\nA1,Ba\r\n\r\nA2,\xff\r\n", 4),
    ],
)
def test_non_utf8_bytes_are_rejected_with_a_line(data: bytes, line: int) -> None:
    exc = rejected(data)
    error = _only_error(exc)
    assert error["line"] == line
    assert error["message"] == "invalid UTF-8 byte"
    assert "UTF-8" in exc.message


def test_a_utf16_file_is_rejected() -> None:
    exc = rejected("code,name\nA1,Xã Một\n".encode("utf-16"))
    assert _only_error(exc)["line"] == 1


def test_more_rows_than_max_rows() -> None:
    text = "code,name\n" + "".join(f"A{i},Xã {i}\n" for i in range(1, 6))
    assert len(parse(text, max_rows=5).rows) == 5
    exc = rejected(text.encode(), max_rows=4)
    error = _only_error(exc)
    assert error["line"] == 6
    assert error["message"] == "too many rows"
    assert "more than 4 rows" in exc.message


def test_blank_lines_do_not_count_towards_max_rows() -> None:
    text = "code,name\n\n\nA1,Xã Một\n\n\nA2,Xã Hai\n\n\n"
    assert len(parse(text, max_rows=2).rows) == 2


def test_reference_file_over_max_rows() -> None:
    exc = rejected(COMMUNES_CSV.read_bytes(), max_rows=3320)
    assert _only_error(exc)["line"] == 3322


def test_invalid_rows_do_not_raise_at_parse_time() -> None:
    """Parsing reports; deciding to reject is the service's job (skip_invalid)."""
    data = io.StringIO()
    writer = csv.writer(data, lineterminator="\n")
    writer.writerow(["code", "name"])
    writer.writerows([["A1", "Xã Một"], ["", "Xã không mã"], ["A3", "Xã Ba"]])
    parsed = parse(data.getvalue())
    assert [r.line for r in parsed.rows] == [2, 4]
    assert [(e.line, e.field) for e in parsed.errors] == [(3, "code")]


def test_nul_characters_are_refused_per_field() -> None:
    """PostgreSQL text cannot store NUL; the row is reported instead of failing in the database."""
    parsed = parse(
        "code,name,kind,contact_name\nA1,Xã\x00Một,,\nA2,Xã Hai,X\x00,\nA3,Ba,,Lê\x00\nA4,Bốn,,\n"
    )
    assert [r.point.code for r in parsed.rows] == ["A4"]
    assert [(e.line, e.field) for e in parsed.errors] == [
        (2, "name"),
        (3, "kind"),
        (4, "contact_name"),
    ]
    assert all("NUL" in e.message for e in parsed.errors)


# ---- docs/points-import.md stays true ---------------------------------------------------------

DOC = Path(__file__).resolve().parents[3] / "docs" / "points-import.md"


def _doc_header_table() -> list[tuple[str, list[str]]]:
    """(column, every header the table lists for it) from the generic-format table of the doc."""
    rows: list[tuple[str, list[str]]] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        column = cells[0].strip("`")
        headers = [
            h.strip().strip("`") for part in cells[2:4] for h in part.split(",") if h.strip()
        ]
        rows.append((column, headers))
    return rows


def test_doc_lists_every_column() -> None:
    documented = [column for column, _ in _doc_header_table()]
    assert documented == list(HEADER_ALIASES)


@pytest.mark.parametrize(
    ("column", "header"),
    [(column, header) for column, headers in _doc_header_table() for header in headers],
)
def test_doc_headers_are_accepted(column: str, header: str) -> None:
    values = {
        "code": "A1",
        "name": "Xã Một",
        "kind": "Xã",
        "district_code": "D1",
        "district_name": "Huyện Một",
        "province_code": "P1",
        "province_name": "Tỉnh Một",
        "contact_name": "Lê Văn C",
        "contact_phone": "0912 345 678",
        "capacity": "7",
        "active": "không",
        "lat": "21.5",
        "lon": "105.5",
    }
    extra = [c for c in ("code", "name") if c != column]
    text = (
        ",".join([*extra, header]) + "\n" + ",".join([*(values[c] for c in extra), values[column]])
    )
    parsed = parse(text + "\n")
    assert parsed.errors == []
    assert parsed.ignored_columns == []
    stored = parsed.rows[0].point.model_dump()[column]
    expected = {"capacity": 7, "active": False, "lat": 21.5, "lon": 105.5}.get(
        column, values[column]
    )
    assert stored == expected


def test_doc_example_file_parses() -> None:
    text = DOC.read_text(encoding="utf-8")
    example = text.split("```csv\n", 1)[1].split("```", 1)[0]
    parsed = parse(example)
    assert parsed.errors == []
    assert parsed.ignored_columns == []
    assert [(r.line, r.point.code) for r in parsed.rows] == [
        (2, "00001"),
        (3, "00004"),
        (4, "HT-01"),
    ]
    first, _, hall = (r.point for r in parsed.rows)
    assert (first.contact_phone, first.capacity, first.active) == ("0912 345 678", 80, True)
    assert (hall.name, hall.active, hall.district_code) == (
        "Hội trường Thành ủy; phòng 2",
        False,
        None,
    )
