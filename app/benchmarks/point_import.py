"""How long importing a point directory takes: parse, first import, idempotent re-import.

Each repetition runs against a fresh database (a new SQLite file, or a new PostgreSQL database created
and dropped on the given server), so the numbers measure a cold directory, as an operator would see it.
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bridges.directory import service
from bridges.directory.csv_format import parse_points_csv
from migrations import runner
from models.engine import create_engine, session_factory, unit_of_work
from models.scratch import create_scratch, drop_scratch

TARGET_S = 5.0


@dataclass
class ImportRun:
    parse_s: float
    first_import_s: float
    reimport_s: float
    created: int
    unchanged_on_reimport: int


@dataclass
class ImportBenchResult:
    file: str
    rows: int
    backend: str
    repeats: int
    runs: list[ImportRun]
    median_total_s: float
    target_s: float
    passed: bool
    python: str
    machine: str


async def _import_once(url: str, data: bytes, max_rows: int) -> ImportRun:
    engine = create_engine(url)
    factory = session_factory(engine)
    try:
        started = time.perf_counter()
        parsed = parse_points_csv(data, max_rows=max_rows)
        parse_s = time.perf_counter() - started
        async with unit_of_work(factory) as db:
            first = await service.import_points(db, parsed, skip_invalid=False)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        reparsed = parse_points_csv(data, max_rows=max_rows)
        async with unit_of_work(factory) as db:
            again = await service.import_points(db, reparsed, skip_invalid=False)
        return ImportRun(
            parse_s=parse_s,
            first_import_s=first_s,
            reimport_s=time.perf_counter() - started,
            created=first.created,
            unchanged_on_reimport=again.unchanged,
        )
    finally:
        await engine.dispose()


def run(file: Path, *, repeats: int, postgres_url: str | None, max_rows: int) -> ImportBenchResult:
    data = file.read_bytes()
    runs: list[ImportRun] = []
    for _ in range(repeats):
        if postgres_url:
            url = create_scratch(postgres_url, "diemcau_bench")
            try:
                runner.upgrade(url)
                runs.append(asyncio.run(_import_once(url, data, max_rows)))
            finally:
                drop_scratch(postgres_url, url)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
                runner.upgrade(url)
                runs.append(asyncio.run(_import_once(url, data, max_rows)))
    median = statistics.median(r.first_import_s for r in runs)
    return ImportBenchResult(
        file=file.name,
        rows=runs[0].created if runs else 0,
        backend="postgresql" if postgres_url else "sqlite",
        repeats=repeats,
        runs=runs,
        median_total_s=median,
        target_s=TARGET_S,
        passed=median < TARGET_S,
        python=platform.python_version(),
        machine=f"{platform.machine()}, {__import__('os').cpu_count()} cores",
    )


def as_dict(result: ImportBenchResult) -> dict[str, object]:
    return asdict(result)
