"""The `diemcau` command line against a real SQLite database under a temporary var directory.

CLI commands run asyncio.run themselves, so these tests are synchronous.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
import typer
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from rich.console import Console
from typer.testing import CliRunner, Result

from app import cli as cli_module
from app.cli import cli
from migrations.runner import head_revision
from tests.conftest import HANOI_CSV

PUBLIC = "https://diemcau.hanoi.test"


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("DIEMCAU_"):
            monkeypatch.delenv(key)
    var = tmp_path / "var"
    monkeypatch.setenv("DIEMCAU_VAR_DIR", str(var))
    monkeypatch.setenv("DIEMCAU_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("DIEMCAU_ARGON2_TIME_COST", "1")
    monkeypatch.setenv("DIEMCAU_ARGON2_MEMORY_KIB", "1024")
    # Wide consoles so that tables do not wrap Vietnamese names.
    monkeypatch.setattr(cli_module, "out", Console(highlight=False, soft_wrap=True, width=200))
    monkeypatch.setattr(
        cli_module, "err", Console(stderr=True, highlight=False, soft_wrap=True, width=200)
    )
    return var


@pytest.fixture
def run(var_dir: Path) -> CliRunnerCall:
    return CliRunnerCall()


class CliRunnerCall:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, code: int = 0) -> Result:
        result = self.runner.invoke(cli, list(args), input=input)
        assert result.exit_code == code, (
            f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n"
            f"exception: {result.exception!r}"
        )
        return result


def db_path(var_dir: Path) -> Path:
    return var_dir / "diemcau.sqlite3"


def query(var_dir: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db_path(var_dir))
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def password_works(var_dir: Path, username: str, password: str) -> bool:
    (row,) = query(var_dir, "SELECT password_hash FROM accounts WHERE username = ?", username)
    try:
        return PasswordHasher().verify(str(row[0]), password)
    except VerificationError:
        return False


def shown_password(output: str, label: str) -> str:
    """The password printed on the one line that starts with `label`."""
    (line,) = [line for line in output.splitlines() if line.strip().startswith(label)]
    return line.split()[-1]


# ---- init, migrate, secret -----------------------------------------------------------------


def test_init_creates_database_and_prints_password_once(run: CliRunnerCall, var_dir: Path) -> None:
    first = run("init")
    assert db_path(var_dir).exists()
    assert "shown only once" in first.stdout
    password = shown_password(first.stdout, "password ")
    assert len(password) >= 20
    assert password_works(var_dir, "admin", password)
    assert query(var_dir, "SELECT username, role, active FROM accounts") == [("admin", "admin", 1)]

    second = run("init")
    assert "accounts already exist" in second.stdout
    assert "password" not in second.stdout
    assert password not in second.stdout
    assert query(var_dir, "SELECT count(*) FROM accounts") == [(1,)]
    # The secret was generated on first use and is readable by the owner only.
    secret = var_dir / "secret_key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) >= 32


def test_init_with_another_username(run: CliRunnerCall, var_dir: Path) -> None:
    result = run("init", "--username", "quantri")
    assert "quantri" in result.stdout
    assert query(var_dir, "SELECT username FROM accounts") == [("quantri",)]


def test_migrate_up_and_down(run: CliRunnerCall, var_dir: Path) -> None:
    result = run("migrate")
    head = head_revision()
    assert head is not None
    assert f"at revision {head}" in result.stdout
    tables = {row[0] for row in query(var_dir, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"accounts", "points", "invitations", "conference_sessions", "session_events"} <= tables

    result = run("migrate", "base", "--downgrade")
    assert "at revision base" in result.stdout
    tables = {row[0] for row in query(var_dir, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert not tables & {"accounts", "points", "invitations"}

    result = run("migrate")
    assert f"at revision {head}" in result.stdout
    run("init")
    assert query(var_dir, "SELECT count(*) FROM accounts") == [(1,)]


# ---- accounts ------------------------------------------------------------------------------


def test_user_create_list_and_passwd(run: CliRunnerCall, var_dir: Path) -> None:
    run("init")
    result = run("user", "create", "chutoa", "--role", "moderator", "--name", "Chủ tọa")
    assert "account chutoa created (moderator)" in result.stdout
    generated = shown_password(result.stdout, "password (shown once)")
    assert password_works(var_dir, "chutoa", generated)

    result = run("user", "create", "vanhanh", "--password-stdin", input="mật khẩu đủ dài\n")
    assert "account vanhanh created (operator)" in result.stdout
    assert "shown once" not in result.stdout
    assert password_works(var_dir, "vanhanh", "mật khẩu đủ dài")

    listing = run("user", "list").stdout
    for expected in ("admin", "chutoa", "Chủ tọa", "moderator", "vanhanh", "operator"):
        assert expected in listing
    assert generated not in listing

    generation = query(var_dir, "SELECT token_generation FROM accounts WHERE username='chutoa'")
    result = run("user", "passwd", "chutoa")
    new_password = shown_password(result.stdout, "new password (shown once)")
    assert new_password != generated
    assert password_works(var_dir, "chutoa", new_password)
    assert not password_works(var_dir, "chutoa", generated)
    # Old tokens stop working: the token generation moved on.
    after = query(var_dir, "SELECT token_generation FROM accounts WHERE username='chutoa'")
    assert after[0][0] == int(str(generation[0][0])) + 1

    result = run("user", "passwd", "chutoa", "--password-stdin", input="another long one\n")
    assert "shown once" not in result.stdout
    assert password_works(var_dir, "chutoa", "another long one")


def test_user_errors(run: CliRunnerCall, var_dir: Path) -> None:
    run("init")
    result = run("user", "create", "admin", code=1)
    assert "[conflict]" in result.stderr
    result = run("user", "create", "shorty", "--password-stdin", input="short\n", code=1)
    assert "[validation_error]" in result.stderr
    run("user", "create", "Upper", code=2)  # usernames are lower case
    run("user", "create", "someone", "--role", "king", code=2)
    run("user", "create", "empty", "--password-stdin", input="\n", code=2)
    result = run("user", "passwd", "nobody", code=1)
    assert "[not_found]" in result.stderr
    result = run("user", "passwd", "admin", "--password-stdin", input="short\n", code=1)
    assert "[validation_error]" in result.stderr
    assert query(var_dir, "SELECT username FROM accounts ORDER BY username") == [("admin",)]


# ---- points --------------------------------------------------------------------------------


def test_points_import_and_reimport(run: CliRunnerCall, var_dir: Path) -> None:
    run("migrate")
    result = run("points", "import", str(HANOI_CSV))
    assert "526 rows (hanoi-wards-2024): 526 were created, 0 updated, 0 unchanged" in result.stdout
    assert query(var_dir, "SELECT count(*) FROM points") == [(526,)]
    result = run("points", "import", str(HANOI_CSV))
    assert "0 were created, 0 updated, 526 unchanged" in result.stdout
    assert query(var_dir, "SELECT count(*) FROM points") == [(526,)]
    (name,) = query(var_dir, "SELECT name FROM points WHERE code='00001'")
    assert name == ("Phường Phúc Xá",)

    listing = run("points", "list", "-q", "phuc xa").stdout
    assert "1 point(s)" in listing
    assert "Phường Phúc Xá" in listing
    assert "Quận Ba Đình" in listing
    listing = run("points", "list", "--district", "268", "--limit", "100").stdout
    assert "15 point(s)" in listing
    listing = run("points", "list", "-q", "khong co xa nay").stdout
    assert "0 point(s)" in listing


def test_points_dry_run_writes_nothing(run: CliRunnerCall, var_dir: Path) -> None:
    run("migrate")
    result = run("points", "import", str(HANOI_CSV), "--dry-run")
    assert "526 would be created" in result.stdout
    assert query(var_dir, "SELECT count(*) FROM points") == [(0,)]


BAD_CSV = (
    "code,name,district_code,capacity\n"
    "00001,Phường Phúc Xá,001,50\n"
    ",Phường không mã,001,10\n"
    "00004,,001,10\n"
    "00001,Trùng mã,001,10\n"
    "00007,Phường Cống Vị,001,nhiều\n"
)


def test_bad_csv_exits_1_with_line_numbers_and_imports_nothing(
    run: CliRunnerCall, var_dir: Path, tmp_path: Path
) -> None:
    run("migrate")
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV, encoding="utf-8")
    result = run("points", "import", str(bad), code=1)
    assert "[import_invalid_rows]" in result.stderr
    for line in (3, 4, 5, 6):
        assert f"line {line}" in result.stderr
    assert not re.search(r"^\s+line 2\b", result.stderr, re.MULTILINE)
    assert "first on line 2" in result.stderr
    assert query(var_dir, "SELECT count(*) FROM points") == [(0,)]

    result = run("points", "import", str(bad), "--skip-invalid")
    assert "1 were created" in result.stdout
    assert "4 skipped" in result.stdout
    assert "skipped line 3" in result.stderr
    assert query(var_dir, "SELECT code, capacity FROM points") == [("00001", 50)]

    run("points", "import", str(tmp_path / "missing.csv"), code=2)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = run("points", "import", str(empty), code=1)
    assert "line 1" in result.stderr


# ---- sessions ------------------------------------------------------------------------------


def read_links(path: Path) -> list[dict[str, str]]:
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    assert text.splitlines()[0] == "code,name,district,province,link"
    return list(csv.DictReader(io.StringIO(text)))


def test_session_preparation_and_lifecycle(
    run: CliRunnerCall, var_dir: Path, tmp_path: Path
) -> None:
    run("init")
    run("points", "import", str(HANOI_CSV))
    title = "Đối thoại giữa Chủ tịch UBND Thành phố với Nhân dân"
    result = run("session", "create", "--title", title, "--hall", "Hội trường Thành ủy")
    assert "session 1 created (draft)" in result.stdout
    assert query(var_dir, "SELECT title, hall_name, status FROM conference_sessions") == [
        (title, "Hội trường Thành ủy", "draft")
    ]

    result = run("session", "invite", "1", "--district", "001")
    assert "13 invited, 0 reinstated, 0 already invited; 13 points in session 1" in result.stdout
    result = run("session", "invite", "1", "--district", "001")
    assert "0 invited, 0 reinstated, 13 already invited" in result.stdout
    result = run("session", "invite", "1", "--code", "99999", code=1)
    assert "[validation_error]" in result.stderr
    assert "99999" in result.stderr
    run("session", "invite", "1", code=2)  # nothing chosen
    assert query(var_dir, "SELECT count(*) FROM invitations") == [(13,)]

    out = tmp_path / "links" / "session-1.csv"
    result = run("session", "links", "1", "--out", str(out))
    assert "13 join link(s) written" in result.stdout
    rows = read_links(out)
    assert len(rows) == 13
    assert rows[0]["name"] == "Phường Phúc Xá"
    assert rows[0]["district"] == "Quận Ba Đình"
    assert rows[0]["province"] == "Thành phố Hà Nội"
    assert {row["code"] for row in rows} == {
        str(r[0])
        for r in query(
            var_dir,
            "SELECT p.code FROM invitations i JOIN points p ON p.id = i.point_id",
        )
    }
    for row in rows:
        assert row["link"].startswith(f"{PUBLIC}/join#dc1_")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    # Credentials are shown once: the database keeps only their hashes.
    stored = {str(r[0]) for r in query(var_dir, "SELECT credential_hash FROM invitations")}
    assert all(len(h) == 64 for h in stored)
    assert not any(row["link"].split("#")[1] in stored for row in rows)

    # An existing file is never overwritten, and nothing is minted for it.
    before = out.read_bytes()
    result = run("session", "links", "1", "--out", str(out), "--rotate", code=2)
    assert "exists" in result.stderr
    assert out.read_bytes() == before
    assert {str(r[0]) for r in query(var_dir, "SELECT credential_hash FROM invitations")} == stored

    again = tmp_path / "again.csv"
    result = run("session", "links", "1", "--out", str(again))
    assert "0 join link(s) written" in result.stdout
    assert "13 point(s) already had one" in result.stdout
    assert read_links(again) == []

    result = run("session", "go-live", "1", code=1)
    assert "invalid_transition" in result.stderr
    assert "draft" in result.stderr
    for command, status in (("open", "open"), ("go-live", "live"), ("end", "ended")):
        result = run("session", command, "1")
        assert f"session 1 is now {status}" in result.stdout
    result = run("session", "end", "1", code=1)
    assert "invalid_transition" in result.stderr
    result = run("session", "invite", "1", "--all", code=1)
    assert "invalid_transition" in result.stderr
    assert query(var_dir, "SELECT count(*) FROM invitations") == [(13,)]

    listing = run("session", "list").stdout
    assert title in listing
    assert "ended" in listing
    types = [str(r[0]) for r in query(var_dir, "SELECT type FROM session_events ORDER BY seq")]
    assert types == [
        "session.created",
        "invitations.added",
        "credentials.issued",
        "session.status_changed",
        "session.status_changed",
        "session.status_changed",
    ]
    actors = {str(r[0]) for r in query(var_dir, "SELECT actor FROM session_events")}
    assert all(actor.startswith("cli") for actor in actors)


def test_session_errors(run: CliRunnerCall, var_dir: Path) -> None:
    run("migrate")
    result = run("session", "open", "42", code=1)
    assert "[not_found]" in result.stderr
    run("session", "create", "--title", "   ", code=2)
    run("session", "create", "--title", "Hội nghị", "--start", "2026-12-01T08:00", code=2)
    run("session", "create", "--title", "Hội nghị")
    result = run("session", "schedule", "1", code=1)
    assert "[conflict]" in result.stderr
    result = run("session", "cancel", "1")
    assert "cancelled" in result.stdout
    assert query(var_dir, "SELECT status FROM conference_sessions") == [("cancelled",)]


def _command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            paths.extend(_command_paths(command, (*prefix, name)))
        else:
            paths.append((*prefix, name))
    return paths


def test_every_help_exits_0(run: CliRunnerCall) -> None:
    root = typer.main.get_command(cli)
    paths = _command_paths(root)
    assert ("user",) in paths
    assert ("points", "import") in paths
    assert ("session", "links") in paths
    for path in paths:
        result = run(*path, "--help")
        assert "Usage" in result.stdout, path


def test_links_file_is_private_and_removed_when_nothing_was_minted(
    run: CliRunnerCall, var_dir: Path, tmp_path: Path
) -> None:
    run("migrate")
    out = tmp_path / "links.csv"
    result = run("session", "links", "7", "--out", str(out), code=1)
    assert "[not_found]" in result.stderr
    assert not out.exists()

    run("points", "import", str(HANOI_CSV))
    run("session", "create", "--title", "Đối thoại")
    run("session", "invite", "1", "--code", "00001")
    run("session", "links", "1", "--out", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "Phường Phúc Xá" in out.read_text(encoding="utf-8-sig")
