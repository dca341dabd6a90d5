"""Reading a CSV of connection points: header mapping, per-row validation, line numbers.

Pure: bytes in, records and row errors out. Accepts the two reference files (Hanoi wards 2024,
Vietnam communes 2025) as they are, and the documented generic format with English or Vietnamese
headers (see docs/points-import.md).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.errors import ImportRejected
from bridges.directory.schemas import PointCreate, RowError
from bridges.directory.text import fold

HANOI_WARDS_2024 = (
    "code,name,kind,district_code,district_name,district_kind,province_code,province_name,lat,lon"
)
VIETNAM_COMMUNES_2025 = "code,name,kind,province_code,province_name,lat,lon"

# Canonical column -> accepted headers, compared after folding (case and diacritics ignored).
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "code": ("code", "ma", "ma don vi", "ma dvhc", "ma diem cau"),
    "name": ("name", "ten", "ten don vi", "ten diem cau"),
    "kind": ("kind", "loai", "cap"),
    "district_code": ("district_code", "ma quan huyen", "ma huyen", "ma quan"),
    "district_name": ("district_name", "quan huyen", "ten quan huyen", "huyen", "quan"),
    "province_code": ("province_code", "ma tinh", "ma tinh thanh pho"),
    "province_name": ("province_name", "tinh", "ten tinh", "tinh thanh pho", "tinh/thanh pho"),
    "contact_name": ("contact_name", "contact", "nguoi lien he", "can bo dau moi"),
    "contact_phone": ("contact_phone", "phone", "dien thoai", "so dien thoai", "sdt"),
    "capacity": ("capacity", "seats", "so cho", "suc chua", "so cho ngoi"),
    "active": ("active", "hoat dong", "su dung"),
    "lat": ("lat", "latitude", "vi do"),
    "lon": ("lon", "lng", "longitude", "kinh do"),
}
# Columns of the reference files that we read past on purpose.
KNOWN_IGNORED = frozenset({"district_kind", "province_kind"})
_ALIAS_INDEX = {alias: column for column, aliases in HEADER_ALIASES.items() for alias in aliases}

TRUE_WORDS = frozenset({"1", "true", "yes", "y", "x", "co", "active"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "khong", "inactive"})


@dataclass(frozen=True)
class ParsedRow:
    line: int
    point: PointCreate


@dataclass
class ParsedFile:
    format: str
    rows: list[ParsedRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    # The canonical columns the header has; an update writes only these (None: every column).
    columns: frozenset[str] | None = None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportRejected(
            "the file is not UTF-8 text: save it as CSV UTF-8",
            details={"errors": [{"line": line, "field": None, "message": "invalid UTF-8 byte"}]},
        ) from None


def _dialect(header_line: str) -> str:
    counts = {delimiter: header_line.count(delimiter) for delimiter in (",", ";", "\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _map_header(header: list[str]) -> tuple[dict[int, str], list[str]]:
    mapping: dict[int, str] = {}
    ignored: list[str] = []
    for index, raw in enumerate(header):
        key = fold(raw.strip()).replace("-", "_")
        column = (
            _ALIAS_INDEX.get(key)
            or _ALIAS_INDEX.get(key.replace("_", " "))
            or _ALIAS_INDEX.get(key.replace(" ", "_"))
        )
        if column is None:
            if key not in KNOWN_IGNORED and raw.strip():
                ignored.append(raw.strip())
            continue
        if column in mapping.values():
            raise ImportRejected(
                f"column {column!r} appears twice in the header",
                details={"errors": [{"line": 1, "field": column, "message": "duplicate column"}]},
            )
        mapping[index] = column
    missing = [c for c in ("code", "name") if c not in mapping.values()]
    if missing:
        raise ImportRejected(
            "the header lacks required columns: " + ", ".join(missing),
            details={
                "errors": [
                    {"line": 1, "field": c, "message": "required column missing"} for c in missing
                ]
            },
        )
    return mapping, ignored


def _detect_format(header: list[str]) -> str:
    joined = ",".join(h.strip() for h in header)
    if joined == HANOI_WARDS_2024:
        return "hanoi-wards-2024"
    if joined == VIETNAM_COMMUNES_2025:
        return "vietnam-communes-2025"
    return "generic"


def _parse_bool(value: str) -> bool:
    word = fold(value)
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("expected yes/no (1/0, true/false, có/không)")


def _row_values(
    cells: list[str], mapping: dict[int, str], line: int
) -> tuple[dict[str, Any], list[RowError]]:
    values: dict[str, Any] = {}
    errors: list[RowError] = []
    for index, column in mapping.items():
        cell = cells[index].strip() if index < len(cells) else ""
        if cell == "":
            continue
        if column == "active":
            try:
                values[column] = _parse_bool(cell)
            except ValueError as exc:
                errors.append(RowError(line=line, field=column, message=str(exc)))
            continue
        values[column] = cell
    return values, errors


def parse_points_csv(data: bytes, *, max_rows: int) -> ParsedFile:
    """Parse and validate every row; the caller decides what to do with a file that has errors."""
    text = _decode(data)
    if not text.strip():
        raise ImportRejected(
            "the file is empty",
            details={"errors": [{"line": 1, "field": None, "message": "no header row"}]},
        )
    first_line = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_dialect(first_line), strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise ImportRejected(
            "the header row is not valid CSV",
            details={"errors": [{"line": 1, "field": None, "message": str(exc)}]},
        ) from None
    mapping, ignored = _map_header(header)
    parsed = ParsedFile(
        format=_detect_format(header), ignored_columns=ignored, columns=frozenset(mapping.values())
    )
    first_seen: dict[str, int] = {}
    data_rows = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.errors.append(RowError(line=line, field=None, message=f"malformed CSV: {exc}"))
            continue
        if not any(cell.strip() for cell in cells):
            continue
        data_rows += 1
        if data_rows > max_rows:
            raise ImportRejected(
                f"the file has more than {max_rows} rows",
                details={"errors": [{"line": line, "field": None, "message": "too many rows"}]},
            )
        if len(cells) > len(header):
            parsed.errors.append(
                RowError(
                    line=line,
                    field=None,
                    message=f"expected {len(header)} columns, found {len(cells)}",
                )
            )
            continue
        values, errors = _row_values(cells, mapping, line)
        if errors:
            parsed.errors.extend(errors)
            continue
        try:
            point = PointCreate.model_validate(values)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                column = str(error["loc"][0]) if error["loc"] else None
                parsed.errors.append(RowError(line=line, field=column, message=error["msg"]))
            continue
        if point.code in first_seen:
            parsed.errors.append(
                RowError(
                    line=line,
                    field="code",
                    message=f"duplicate code {point.code}, first on line {first_seen[point.code]}",
                )
            )
            continue
        first_seen[point.code] = line
        parsed.rows.append(ParsedRow(line=line, point=point))
    return parsed
