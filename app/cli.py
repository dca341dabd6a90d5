"""The `diemcau` command line: serve, migrate, and everything an operator prepares a session with.

Commands talk to the configured database directly (the same services the HTTP API calls), so a
hall team can prepare a session on the control-desk machine before the server is even started.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import DiemcauError
from app.settings import Settings

T = TypeVar("T")

cli = typer.Typer(
    name="diemcau",
    help="diemcau: run hybrid dialogue conferences with hundreds to thousands of connection points.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
user_cli = typer.Typer(
    help="Staff accounts (admin, operator, moderator, observer).", no_args_is_help=True
)
points_cli = typer.Typer(
    help="The point directory: import and list connection points.", no_args_is_help=True
)
session_cli = typer.Typer(
    help="Sessions: create, invite points, export join links, lifecycle.", no_args_is_help=True
)
cli.add_typer(user_cli, name="user")
cli.add_typer(points_cli, name="points")
bench_cli = typer.Typer(help="Benchmarks that print numbers.", no_args_is_help=True)
cli.add_typer(session_cli, name="session")
cli.add_typer(bench_cli, name="bench")
protocol_cli = typer.Typer(
    help="The live protocol (WebSocket): its JSON Schema.", no_args_is_help=True
)
cli.add_typer(protocol_cli, name="protocol")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _settings() -> Settings:
    return Settings().with_secret()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _run_db(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run one unit of work in one transaction; a typed error exits 1 with its code and details."""
    from models.engine import create_engine, session_factory, unit_of_work

    settings = _settings()

    async def main() -> T:
        engine = create_engine(settings.effective_database_url)
        try:
            async with unit_of_work(session_factory(engine)) as db:
                return await work(db, settings)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except DiemcauError as exc:
        _print_error(exc)
        raise typer.Exit(1) from None


def _print_error(exc: DiemcauError) -> None:
    err.print(f"[red]error[/red] {escape(f'[{exc.code}]')} {escape(exc.message)}")
    errors = exc.details.get("errors")
    if isinstance(errors, list):
        for row in errors[:50]:
            field = f" ({row.get('field')})" if row.get("field") else ""
            err.print(escape(f"  line {row.get('line')}{field}: {row.get('message')}"))
        if len(errors) > 50:
            err.print(f"  … and {len(errors) - 50} more")
    else:
        for key, value in exc.details.items():
            err.print(escape(f"  {key}: {value}"))


# ---- service -------------------------------------------------------------------------------


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default DIEMCAU_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default DIEMCAU_PORT).")] = None,
) -> None:
    """Serve the HTTP API and the live WebSocket (and the media plane) on one port."""
    import uvicorn

    from app.logging_setup import configure_logging
    from app.server import server_config

    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = _settings().model_copy(update=overrides)
    configure_logging(settings.log_level, settings.log_format)
    base = settings.effective_public_url
    out.print(f"diemcau serving on http://{settings.host}:{settings.port}")
    out.print(f"  console       {base}/console   (staff sign in at {base}/login)")
    out.print(f"  API docs      {base}/docs")
    out.print(f"  OpenAPI       {base}/openapi.json")
    out.print(f"  API root      {base}/api/v1")
    out.print(f"  health        {base}/healthz")
    out.print(f"  database      {_safe_url(settings.effective_database_url)}")
    uvicorn.Server(server_config(settings)).run()


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@cli.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
    downgrade: Annotated[bool, typer.Option("--downgrade", help="Go down to REVISION.")] = False,
) -> None:
    """Bring the database schema up to date (or down with --downgrade)."""
    from migrations import runner

    url = _settings().effective_database_url
    if downgrade:
        runner.downgrade(url, revision)
    else:
        runner.upgrade(url, revision)
    out.print(f"database {_safe_url(url)} at revision {runner.current_revision(url) or 'base'}")


@cli.command()
def init(
    username: Annotated[str, typer.Option(help="Username of the first account.")] = "admin",
) -> None:
    """Migrate, then create the first admin account if there is none and print its password once."""
    from app.accounts import service
    from app.accounts.schemas import AccountCreate
    from app.auth.passwords import Passwords
    from migrations import runner
    from models import Role

    settings = _settings()
    runner.upgrade(settings.effective_database_url)

    async def work(db: AsyncSession, s: Settings) -> tuple[str, str] | None:
        if await service.count_accounts(db) > 0:
            return None
        passwords = Passwords(time_cost=s.argon2_time_cost, memory_kib=s.argon2_memory_kib)
        account, generated = await service.create_account(
            db,
            AccountCreate(username=username, display_name="Quản trị viên", role=Role.ADMIN),
            passwords=passwords,
            min_length=s.password_min_length,
        )
        assert generated is not None
        return account.username, generated

    created = _run_db(work)
    if created is None:
        out.print("database ready; accounts already exist")
        return
    out.print("[bold]First account created. This password is shown only once:[/bold]")
    out.print(f"  username  {created[0]}")
    out.print(f"  password  {created[1]}")
    out.print("  role      admin (prepares and runs sessions, manages accounts)")


# ---- accounts ------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    value = sys.stdin.readline().rstrip("\n")
    if not value:
        raise typer.BadParameter("no password on standard input")
    return value


@user_cli.command("create")
def user_create(
    username: str,
    role: Annotated[str, typer.Option(help="admin, operator, moderator or observer.")] = "operator",
    name: Annotated[str | None, typer.Option(help="Display name (default: the username).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a staff account; without --password-stdin a password is generated and printed once."""
    from pydantic import ValidationError

    from app.accounts import service
    from app.accounts.schemas import AccountCreate
    from app.auth.passwords import Passwords

    password = _read_password(password_stdin)
    try:
        data = AccountCreate.model_validate(
            {
                "username": username,
                "display_name": name or username,
                "role": role,
                "password": password,
            }
        )
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors(include_url=False)[0]["msg"]) from None

    async def work(db: AsyncSession, s: Settings) -> tuple[str, str | None]:
        passwords = Passwords(time_cost=s.argon2_time_cost, memory_kib=s.argon2_memory_kib)
        account, generated = await service.create_account(
            db, data, passwords=passwords, min_length=s.password_min_length
        )
        return account.username, generated

    created, generated = _run_db(work)
    out.print(f"account {created} created ({data.role.value})")
    if generated:
        out.print(f"password (shown once): {generated}")


@user_cli.command("list")
def user_list() -> None:
    """List staff accounts."""
    from app.accounts import service

    async def work(db: AsyncSession, _: Settings) -> list[tuple[str, str, str, bool]]:
        return [
            (a.username, a.display_name, a.role.value, a.active)
            for a in await service.list_accounts(db)
        ]

    table = Table("username", "name", "role", "active")
    for username, display, role, active in _run_db(work):
        table.add_row(username, display, role, "yes" if active else "no")
    out.print(table)


@user_cli.command("passwd")
def user_passwd(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from standard input.")
    ] = False,
) -> None:
    """Set a new password (generated and printed once unless --password-stdin); old tokens stop working."""
    from app.accounts import service
    from app.auth.passwords import Passwords
    from app.errors import NotFound

    password = _read_password(password_stdin)

    async def work(db: AsyncSession, s: Settings) -> str | None:
        account = await service.find_by_username(db, username)
        if account is None:
            raise NotFound("account not found", details={"username": username})
        passwords = Passwords(time_cost=s.argon2_time_cost, memory_kib=s.argon2_memory_kib)
        _, generated = await service.set_password(
            db, account.id, password, passwords=passwords, min_length=s.password_min_length
        )
        return generated

    generated = _run_db(work)
    out.print(f"password of {username} changed")
    if generated:
        out.print(f"new password (shown once): {generated}")


# ---- points --------------------------------------------------------------------------------


@points_cli.command("import")
def points_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the valid rows even if some are invalid.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and count, write nothing.")
    ] = False,
) -> None:
    """Import (upsert by code) connection points from a CSV; see docs/points-import.md."""
    from app.errors import PayloadTooLarge
    from bridges.directory import service
    from bridges.directory.csv_format import parse_points_csv
    from bridges.directory.schemas import ImportReport

    settings = _settings()
    if file.stat().st_size > settings.max_import_bytes:
        _print_error(PayloadTooLarge(f"the file exceeds {settings.max_import_bytes} bytes"))
        raise typer.Exit(1)

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("reading", total=None)
        try:
            parsed = parse_points_csv(file.read_bytes(), max_rows=settings.max_import_rows)
        except DiemcauError as exc:
            bar.stop()
            _print_error(exc)
            raise typer.Exit(1) from None
        bar.update(task, description="importing", total=len(parsed.rows), completed=0)

        def progress(done: int, total: int) -> None:
            bar.update(task, total=max(total, 1), completed=done)

        async def work(db: AsyncSession, _: Settings) -> ImportReport:
            return await service.import_points(
                db, parsed, skip_invalid=skip_invalid, dry_run=dry_run, progress=progress
            )

        report = _run_db(work)
        bar.update(
            task,
            description="done",
            total=max(report.created + report.updated, 1),
            completed=max(report.created + report.updated, 1),
        )
    verb = "would be" if dry_run else "were"
    out.print(
        f"{report.rows} rows ({report.format}): {report.created} {verb} created, "
        f"{report.updated} updated, {report.unchanged} unchanged, {report.skipped} skipped"
    )
    for error in report.errors[:50]:
        field = f" ({error.field})" if error.field else ""
        err.print(f"  skipped line {error.line}{field}: {error.message}")
    if parsed.ignored_columns:
        err.print("  columns not read: " + ", ".join(parsed.ignored_columns))


@points_cli.command("list")
def points_list(
    q: Annotated[str | None, typer.Option("--search", "-q", help="Code prefix or name.")] = None,
    district: Annotated[list[str] | None, typer.Option(help="District code (repeatable).")] = None,
    province: Annotated[list[str] | None, typer.Option(help="Province code (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """Search the point directory."""
    from bridges.directory import service

    async def work(db: AsyncSession, _: Settings) -> tuple[list[Any], int]:
        rows, total = await service.search_points(
            db, q=q, district_codes=district or [], province_codes=province or [], limit=limit
        )
        return list(rows), total

    rows, total = _run_db(work)
    table = Table(
        "code", "name", "kind", "district", "province", "active", title=f"{total} point(s)"
    )
    for p in rows:
        table.add_row(
            p.code,
            p.name,
            p.kind,
            p.district_name or "",
            p.province_name or "",
            "yes" if p.active else "no",
        )
    out.print(table)


# ---- sessions ------------------------------------------------------------------------------


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} needs a time zone, e.g. 2026-12-01T08:00:00+07:00")
    return parsed


@session_cli.command("create")
def session_create(
    title: Annotated[str, typer.Option(help="Title shown to every point.")],
    hall: Annotated[str, typer.Option(help="Hall name.")] = "",
    description: Annotated[str, typer.Option(help="Description.")] = "",
    start: Annotated[str | None, typer.Option(help="Scheduled start, ISO 8601 with zone.")] = None,
    end: Annotated[str | None, typer.Option(help="Scheduled end, ISO 8601 with zone.")] = None,
) -> None:
    """Create a session (status draft)."""
    from pydantic import ValidationError

    from app.sessions import service
    from app.sessions.schemas import SessionCreate

    try:
        data = SessionCreate(
            title=title,
            hall_name=hall,
            description=description,
            scheduled_start=_parse_time(start),
            scheduled_end=_parse_time(end),
        )
    except (ValidationError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None

    async def work(db: AsyncSession, _: Settings) -> int:
        return (await service.create_session(db, data, actor=_actor(), account_id=None)).id

    out.print(f"session {_run_db(work)} created (draft)")


@session_cli.command("list")
def session_list() -> None:
    """List sessions, newest first."""
    from app.sessions import service

    async def work(db: AsyncSession, _: Settings) -> list[tuple[Any, int]]:
        rows, _total = await service.list_sessions(db, status=None, limit=200, offset=0)
        counts = await service.count_invited(db, [s.id for s in rows])
        return [(s, counts.get(s.id, 0)) for s in rows]

    table = Table("id", "title", "status", "scheduled start", "invited")
    for s, invited in _run_db(work):
        start = s.scheduled_start.isoformat(timespec="minutes") if s.scheduled_start else ""
        table.add_row(str(s.id), s.title, s.status.value, start, str(invited))
    out.print(table)


def _lifecycle(session_id: int, command: str) -> None:
    from app.sessions import service
    from app.sessions.lifecycle import LifecycleCommand

    async def work(db: AsyncSession, _: Settings) -> str:
        session = await service.apply_command(
            db, session_id, LifecycleCommand(command), actor=_actor()
        )
        return session.status.value

    out.print(f"session {session_id} is now {_run_db(work)}")


@session_cli.command("schedule")
def session_schedule(session_id: int) -> None:
    """draft → scheduled (needs a scheduled start)."""
    _lifecycle(session_id, "schedule")


@session_cli.command("open")
def session_open(session_id: int) -> None:
    """Open the session: points may connect and check in."""
    _lifecycle(session_id, "open")


@session_cli.command("go-live")
def session_go_live(session_id: int) -> None:
    """open → live: the program is running."""
    _lifecycle(session_id, "go-live")


@session_cli.command("end")
def session_end(session_id: int) -> None:
    """End the session."""
    _lifecycle(session_id, "end")


@session_cli.command("cancel")
def session_cancel(session_id: int) -> None:
    """Cancel a session that has not gone live."""
    _lifecycle(session_id, "cancel")


@session_cli.command("invite")
def session_invite(
    session_id: int,
    all_points: Annotated[bool, typer.Option("--all", help="Every active point.")] = False,
    district: Annotated[list[str] | None, typer.Option(help="District code (repeatable).")] = None,
    province: Annotated[list[str] | None, typer.Option(help="Province code (repeatable).")] = None,
    code: Annotated[list[str] | None, typer.Option(help="Point code (repeatable).")] = None,
    expected: Annotated[
        int | None, typer.Option(help="Expected attendees per point (default: capacity).")
    ] = None,
) -> None:
    """Invite points: all, by district/province, or by code. Inviting twice changes nothing."""
    from pydantic import ValidationError

    from bridges.invitations import service
    from bridges.invitations.schemas import InviteRequest, InviteResult

    try:
        request = InviteRequest(
            all=all_points,
            district_codes=district or [],
            province_codes=province or [],
            point_codes=code or [],
            expected_attendees=expected,
        )
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors(include_url=False)[0]["msg"]) from None

    async def work(db: AsyncSession, _: Settings) -> InviteResult:
        return await service.invite(db, session_id, request, actor=_actor())

    result = _run_db(work)
    out.print(
        f"{result.invited} invited, {result.reinstated} reinstated, "
        f"{result.already_invited} already invited; {result.total_invited} points in session {session_id}"
    )


@session_cli.command("links")
def session_links(
    session_id: int,
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="CSV file to write.", dir_okay=False)
    ],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Replace existing links too (old ones stop working).")
    ] = False,
    code: Annotated[
        list[str] | None, typer.Option(help="Only these point codes (repeatable).")
    ] = None,
    district: Annotated[
        list[str] | None, typer.Option(help="Only these districts (repeatable).")
    ] = None,
    province: Annotated[
        list[str] | None, typer.Option(help="Only these provinces (repeatable).")
    ] = None,
) -> None:
    """Mint join links and write them to a CSV (code, name, district, province, link).

    A credential is shown only once: points that already have one are skipped unless --rotate.
    """
    from bridges.invitations import service
    from bridges.invitations.export import links_csv
    from bridges.invitations.schemas import JoinLinks, JoinLinksRequest

    request = JoinLinksRequest(
        point_codes=code or [],
        district_codes=district or [],
        province_codes=province or [],
        rotate=rotate,
    )
    out_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Created before minting, owner-only, never over an existing file: a credential that was
        # minted must land somewhere, since it is shown only once.
        fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise typer.BadParameter(
            f"{out_file} exists; choose a new file (links are shown once)"
        ) from None
    except OSError as exc:
        raise typer.BadParameter(f"cannot create {out_file}: {exc.strerror}") from None

    async def work(db: AsyncSession, s: Settings) -> JoinLinks:
        links = await service.issue_join_links(
            db, session_id, request, public_url=s.effective_public_url, actor=_actor()
        )
        # Written and synced before the transaction commits: if writing fails, nothing is minted.
        os.write(fd, links_csv(links))
        os.fsync(fd)
        return links

    try:
        links = _run_db(work)
    except BaseException:
        os.close(fd)
        out_file.unlink(missing_ok=True)
        raise
    os.close(fd)
    out.print(
        f"{links.issued} join link(s) written to {out_file}; "
        f"{links.skipped_with_credential} point(s) already had one (use --rotate to replace)"
    )


# ---- protocol ------------------------------------------------------------------------------


@protocol_cli.command("schema")
def protocol_schema(
    out_file: Annotated[
        str, typer.Option("--out", "-o", help="File to write, or - for standard output.")
    ] = "docs/protocol.schema.json",
) -> None:
    """Write the JSON Schema of every live-protocol message (docs/protocol.schema.json)."""
    import json

    from signaling import protocol

    text = json.dumps(protocol.json_schema(), indent=2, ensure_ascii=False) + "\n"
    if out_file == "-":
        typer.echo(text, nl=False)
        return
    path = Path(out_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    out.print(f"protocol v{protocol.PROTOCOL_VERSION} schema written to {path}")


# ---- benchmarks ----------------------------------------------------------------------------


@bench_cli.command("import")
def bench_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    repeats: Annotated[int, typer.Option(min=1, max=20)] = 3,
    postgres_url: Annotated[
        str | None,
        typer.Option(
            help="Measure on PostgreSQL: a fresh database is made on this server per run."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Time a point import into a fresh database (target: 3,321 rows under 5 s)."""
    import json

    from app.benchmarks import point_import

    result = point_import.run(
        file, repeats=repeats, postgres_url=postgres_url, max_rows=_settings().max_import_rows
    )
    if as_json:
        out.print(json.dumps(point_import.as_dict(result), ensure_ascii=False))
        return
    out.print(
        f"point import: {result.file}, {result.rows} rows, {result.backend}, {result.machine}"
    )
    for index, item in enumerate(result.runs, 1):
        out.print(
            f"  run {index}: parse {item.parse_s * 1000:.0f} ms, import {item.first_import_s:.2f} s, "
            f"re-import {item.reimport_s:.2f} s ({item.unchanged_on_reimport} unchanged)"
        )
    verdict = "PASS" if result.passed else "FAIL"
    out.print(
        f"  median import {result.median_total_s:.2f} s (target < {result.target_s:.0f} s): {verdict}"
    )


def _report_bench(module: Any, options: Any, *, as_json: bool) -> None:
    """Run a benchmark module (`run`, `as_dict`, `render`, `BenchError`) and print its result."""
    import json

    try:
        result = module.run(options)
    except module.BenchError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(module.as_dict(result), ensure_ascii=False))
        return
    out.print(module.render(result))


@bench_cli.command("signaling")
def bench_signaling(
    points: Annotated[int, typer.Option(min=1, max=3321, help="Simulated points (N).")],
    processes: Annotated[int, typer.Option(min=1, max=64, help="Client processes (K).")] = 2,
    events: Annotated[int, typer.Option(min=1, max=1000, help="Session events (M).")] = 20,
    event_interval_ms: Annotated[int, typer.Option(min=10, max=10_000)] = 300,
    batch: Annotated[
        int, typer.Option(min=0, help="Points per join batch; 0: all join at once.")
    ] = 0,
    batch_interval_ms: Annotated[int, typer.Option(min=0, max=10_000)] = 100,
    join_timeout_s: Annotated[float, typer.Option(min=1, max=600)] = 60.0,
    profile_dir: Annotated[
        Path | None,
        typer.Option(
            help="Write the server's cProfile and GC pauses per phase here (slows it down).",
            file_okay=False,
        ),
    ] = None,
    server_gc_freeze: Annotated[
        bool,
        typer.Option(
            "--server-gc-freeze",
            help="Experiment: gc.freeze() in the server before each measured phase.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Join storm of N points over WebSockets, then event fan-out against a websockets baseline."""

    from app.benchmarks import signaling

    options = signaling.SignalingOptions(
        points=points,
        processes=processes,
        events=events,
        event_interval_ms=event_interval_ms,
        batch=batch,
        batch_interval_ms=batch_interval_ms,
        join_timeout_s=join_timeout_s,
        profile_dir=profile_dir,
        server_gc_freeze=server_gc_freeze,
    )
    _report_bench(signaling, options, as_json=as_json)


@bench_cli.command("media")
def bench_media(
    subscribers: Annotated[
        int, typer.Option(min=1, max=1000, help="Subscribers (N), each with program and floor.")
    ],
    decoding: Annotated[
        int, typer.Option(min=0, max=50, help="Of them, subscribers that decode (D).")
    ] = 2,
    seconds: Annotated[float, typer.Option(min=1, max=600, help="Measurement window.")] = 10.0,
    codec: Annotated[str, typer.Option(help="Hall video codec: VP8 or H264.")] = "VP8",
    workers: Annotated[
        int, typer.Option(min=0, max=64, help="Media forwarding processes; 0: one loop.")
    ] = 0,
    join_rate: Annotated[
        float, typer.Option(min=0.1, max=1000, help="Subscribers starting per second.")
    ] = 10.0,
    switches: Annotated[int, typer.Option(min=0, max=100, help="Floor switches A→B→A….")] = 5,
    load_processes: Annotated[
        int,
        typer.Option(min=0, max=32, help="Processes for load-only subscribers; 0: 1 per 40."),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Hall program to N subscribers through the media server, then floor switches; CPU per packet."""

    from app.benchmarks import media

    options = media.MediaOptions(
        subscribers=subscribers,
        decoding=decoding,
        seconds=seconds,
        codec=codec.upper(),
        workers=workers,
        join_rate=join_rate,
        switches=switches,
        load_processes=load_processes,
    )
    _report_bench(media, options, as_json=as_json)


@bench_cli.command("floor")
def bench_floor(
    points: Annotated[int, typer.Option(min=2, max=3321, help="Connected points (N).")],
    passes: Annotated[int, typer.Option(min=1, max=10_000, help="Floor passes.")] = 100,
    media_points: Annotated[
        int,
        typer.Option(
            min=0,
            max=100,
            help="Of the N, points that publish video (M, 0 or 2+); the passes go round them "
            "and the hall times the first frame of each new speaker.",
        ),
    ] = 0,
    pass_interval_ms: Annotated[
        int,
        typer.Option(min=0, max=60_000, help="Between passes; 0: 500 ms, 2,000 with media."),
    ] = 0,
    processes: Annotated[int, typer.Option(min=1, max=64, help="Point client processes.")] = 2,
    batch: Annotated[
        int, typer.Option(min=0, help="Points per join batch; 0: all join at once.")
    ] = 0,
    batch_interval_ms: Annotated[int, typer.Option(min=0, max=10_000)] = 100,
    join_timeout_s: Annotated[float, typer.Option(min=1, max=600)] = 60.0,
    media_fps: Annotated[int, typer.Option(min=1, max=30, help="Media points' frame rate.")] = 15,
    media_audio: Annotated[
        bool, typer.Option("--media-audio", help="Media points also send an Opus tone.")
    ] = False,
    codec: Annotated[str, typer.Option(help="Media points' video codec: VP8 or H264.")] = "VP8",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """N points listen while a moderator passes the floor; time to the event everywhere, and with
    media points, to the new speaker's first frame at the hall."""

    from app.benchmarks import floor

    options = floor.FloorOptions(
        points=points,
        passes=passes,
        media_points=media_points,
        pass_interval_ms=pass_interval_ms,
        processes=processes,
        batch=batch,
        batch_interval_ms=batch_interval_ms,
        join_timeout_s=join_timeout_s,
        media_fps=media_fps,
        media_audio=media_audio,
        codec=codec.upper(),
    )
    _report_bench(floor, options, as_json=as_json)


@bench_cli.command("rollcall")
def bench_rollcall(
    points: Annotated[int, typer.Option(min=1, max=3321, help="Connected points (N).")],
    window_s: Annotated[
        float, typer.Option(min=0.1, max=600, help="Every point confirms once within this window.")
    ] = 10.0,
    processes: Annotated[int, typer.Option(min=1, max=64, help="Point client processes.")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """N points confirm a roll-call within a window: time to each ack and to the operator's tally,
    nothing lost, the database intact."""

    from app.benchmarks import rollcall

    options = rollcall.RollcallOptions(points=points, window_s=window_s, processes=processes)
    _report_bench(rollcall, options, as_json=as_json)


@bench_cli.command("janus")
def bench_janus(
    subscribers: Annotated[
        str, typer.Option(help="Loads to compare at, comma separated (each 1..500).")
    ] = "50,100",
    decoding: Annotated[int, typer.Option(min=0, help="Decoding subscribers per run.")] = 1,
    window_s: Annotated[float, typer.Option(min=2, max=600, help="Measured window.")] = 10.0,
    processes: Annotated[int, typer.Option(min=1, max=8, help="Subscriber processes.")] = 2,
    event_loops: Annotated[
        int, typer.Option(min=1, max=16, help="Janus's shared event loops (its best: cores).")
    ] = 2,
    workers: Annotated[int, typer.Option(min=0, max=16, help="Our forwarding processes.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Our embedded media plane and Janus VideoRoom (Debian's janus, started here on loopback)
    with the same publisher and subscribers, one after the other at each load: server CPU per
    subscriber, subscribers per core, and the ratio ours/Janus (target >= 0.5)."""
    from app.benchmarks import sfu

    try:
        loads = tuple(int(part) for part in subscribers.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter("--subscribers must be numbers, e.g. 50,100") from None
    options = sfu.SfuOptions(
        subscribers=loads,
        decoding=decoding,
        window_s=window_s,
        processes=processes,
        event_loops=event_loops,
        workers=workers,
    )
    _report_bench(sfu, options, as_json=as_json)


@bench_cli.command("growth")
def bench_growth(
    sizes: Annotated[str, typer.Option(help="Point counts, growing, comma separated.")] = (
        "100,526,3321"
    ),
    processes: Annotated[int, typer.Option(min=1, max=64, help="Client processes.")] = 2,
    events: Annotated[int, typer.Option(min=1, max=1000, help="Events fanned out per size.")] = 20,
    batch: Annotated[int, typer.Option(min=1, help="Points per arrival batch.")] = 50,
    batch_interval_ms: Annotated[int, typer.Option(min=0, max=10_000)] = 100,
    out_dir: Annotated[
        Path, typer.Option(help="Where growth.md and growth.png go.", file_okay=False)
    ] = Path("docs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The signaling benchmark at each size: how join time, fan-out time, memory and CPU grow;
    writes a table (growth.md) and a plot (growth.png)."""
    import json

    from app.benchmarks import growth

    try:
        counts = tuple(int(part) for part in sizes.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter("--sizes must be numbers, e.g. 100,526,3321") from None
    options = growth.GrowthOptions(
        sizes=counts,
        processes=processes,
        events=events,
        batch=batch,
        batch_interval_ms=batch_interval_ms,
        out_dir=out_dir,
    )
    try:
        result = growth.run(options)
    except growth.BenchError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    growth.write(result, out_dir)
    if as_json:
        typer.echo(json.dumps(growth.as_dict(result), ensure_ascii=False))
        return
    out.print(growth.render(result))


@bench_cli.command("all")
def bench_all(
    points: Annotated[
        int, typer.Option(min=2, max=3321, help="Points for signaling, floor, roll-call.")
    ] = 3321,
    subscribers: Annotated[int, typer.Option(min=2, max=500, help="Media subscribers.")] = 80,
    media_points: Annotated[int, typer.Option(min=0, max=100, help="Floor media points.")] = 50,
    passes: Annotated[int, typer.Option(min=1, max=10_000, help="Floor passes.")] = 100,
    import_repeats: Annotated[int, typer.Option(min=1, max=20)] = 3,
    document: Annotated[
        Path | None,
        typer.Option(help="Append the dated section here (default docs/benchmarks.md)."),
    ] = Path("docs/benchmarks.md"),
    no_write: Annotated[bool, typer.Option("--no-write", help="Print only.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Every benchmark (import, signaling, media, floor, roll-call) one after another, and a dated
    section of the record with the machine, the commands, the numbers and the targets."""
    import json

    from app.benchmarks import record

    options = record.RecordOptions(
        points=points,
        subscribers=subscribers,
        media_points=media_points,
        passes=passes,
        import_repeats=import_repeats,
    )
    result = record.run(options)
    if document is not None and not no_write:
        record.write(result, document)
    if as_json:
        typer.echo(json.dumps(record.as_dict(result), ensure_ascii=False))
        return
    out.print(record.render(result))


# ---- rehearsal ---------------------------------------------------------------------------------


def _range(text: str, name: str) -> tuple[float, float]:
    """`low-high` or a single number, in seconds."""
    try:
        low, _, high = text.partition("-")
        bounds = (float(low), float(high or low))
    except ValueError:
        raise typer.BadParameter(f"{name} must be low-high in seconds, e.g. 1-10") from None
    if bounds[0] < 0 or bounds[1] < bounds[0]:
        raise typer.BadParameter(f"{name} must be low-high with 0 <= low <= high")
    return bounds


@cli.command("simulate")
def simulate(
    server: Annotated[str, typer.Option(help="The running server, e.g. http://127.0.0.1:8000.")],
    session_id: Annotated[int, typer.Option("--session", min=1, help="The session to join.")],
    points: Annotated[
        Path | None,
        typer.Option(
            help="A points file: its points are invited and get NEW join links (old ones stop "
            "working; use a rehearsal session). Needs --username and DIEMCAU_PASSWORD.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    links: Annotated[
        Path | None,
        typer.Option(
            help="A join-links file exported from the console (no login needed).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    username: Annotated[str, typer.Option(help="An operator's account (with --points).")] = "",
    limit: Annotated[int, typer.Option(min=0, help="Only the first N rooms (0: all).")] = 0,
    media_points: Annotated[
        int, typer.Option(min=0, max=100, help="Rooms with real media (aiortc).")
    ] = 0,
    processes: Annotated[int, typer.Option(min=1, max=32, help="Client processes.")] = 2,
    join_spread_s: Annotated[float, typer.Option(min=0, help="Joins spread over S s.")] = 10.0,
    drop_share: Annotated[float, typer.Option(min=0, max=1, help="Rooms that drop.")] = 0.02,
    hand_share: Annotated[
        float, typer.Option(min=0, max=1, help="Rooms that raise a hand.")
    ] = 0.02,
    silent_share: Annotated[
        float, typer.Option(min=0, max=1, help="Rooms that never answer a roll-call.")
    ] = 0.02,
    answer_delay: Annotated[str, typer.Option(help="Roll-call answer after low-high s.")] = "1-10",
    seed: Annotated[int, typer.Option(help="The same seed, the same behaviour.")] = 1,
    duration_s: Annotated[
        float, typer.Option(min=0, help="Stop after S s (0: when the session ends).")
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Simulated connection points against a running server: real WebSockets for all, real media
    for some; staggered joins, drops and resumes, hands, roll-call answers, silent rooms."""
    import json

    from app.simulate import run as sim
    from app.simulate.plan import Behaviour

    options = sim.SimulateOptions(
        server=server,
        session_id=session_id,
        points=points,
        links=links,
        username=username,
        password=os.environ.get("DIEMCAU_PASSWORD", "")
        if not points or not username
        else os.environ.get("DIEMCAU_PASSWORD") or getpass.getpass(f"Password for {username}: "),
        limit=limit,
        processes=processes,
        duration_s=duration_s,
        behaviour=Behaviour(
            join_spread_s=join_spread_s,
            drop_share=drop_share,
            hand_share=hand_share,
            silent_share=silent_share,
            answer_delay_s=_range(answer_delay, "--answer-delay"),
            media_points=media_points,
            seed=seed,
        ),
    )
    try:
        summary = sim.simulate(options, progress=lambda status: err.print(status.line()))
    except (sim.SimulateError, ValueError) as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(sim.as_dict(summary), ensure_ascii=False))
    else:
        out.print(sim.render(summary))
    if summary.errors:
        raise typer.Exit(1)


@cli.command("rehearse")
def rehearse(
    points: Annotated[
        Path,
        typer.Option(help="The points file (CSV) to rehearse with.", exists=True, dir_okay=False),
    ],
    media_points: Annotated[
        int, typer.Option(min=0, max=100, help="Rooms with real media (aiortc).")
    ] = 20,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N points (0: all).")] = 0,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Rehearse on this database (e.g. the configured PostgreSQL); default: a fresh "
            "SQLite file, removed afterwards."
        ),
    ] = None,
    processes: Annotated[int, typer.Option(min=1, max=32, help="Room processes.")] = 2,
    media_workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=64,
            help="The server's media forwarding processes; default as `diemcau serve`: one per "
            "core (0: on the API's own loop).",
        ),
    ] = None,
    passes: Annotated[int, typer.Option(min=1, max=100, help="Floor passes.")] = 5,
    pass_interval_s: Annotated[float, typer.Option(min=2, max=120)] = 8.0,
    join_spread_s: Annotated[
        float | None, typer.Option(min=0, help="Default: 1 s per 100 points, 5-60 s.")
    ] = None,
    drop_share: Annotated[float, typer.Option(min=0, max=1, help="Rooms that drop.")] = 0.02,
    hand_share: Annotated[
        float, typer.Option(min=0, max=1, help="Rooms that raise a hand.")
    ] = 0.02,
    silent_share: Annotated[
        float, typer.Option(min=0, max=1, help="Rooms that never answer a roll-call.")
    ] = 0.02,
    seed: Annotated[int, typer.Option(help="The same seed, the same rooms drop.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A whole conference on this machine: a server, a session for the file's points, a join
    storm, a roll-call, floor passes with media, a second roll-call, the end; then the report."""
    import json

    from app.rehearsal import script
    from app.simulate.plan import Behaviour

    options = script.RehearseOptions(
        points=points,
        media_points=media_points,
        limit=limit,
        database_url=database_url,
        processes=processes,
        media_workers=media_workers,
        passes=passes,
        pass_interval_s=pass_interval_s,
        join_spread_s=join_spread_s,
        behaviour=Behaviour(
            answer_delay_s=(1.0, 8.0),
            drop_share=drop_share,
            hand_share=hand_share,
            silent_share=silent_share,
            seed=seed,
        ),
    )
    try:
        report = script.run(options, progress=lambda line: err.print(escape(line)))
    except (script.RehearsalError, script.FleetError) as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(script.as_dict(report), ensure_ascii=False))
    else:
        out.print(script.render(report))
    if not report.passed_all:
        raise typer.Exit(1)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
