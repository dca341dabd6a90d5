"""Settings: DIEMCAU_* environment variables, defaults, and the generated secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import SECRET_FILE_NAME, Settings, load_or_create_secret


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("DIEMCAU_"):
            monkeypatch.delenv(key)
    # Relative defaults (var/) resolve against the working directory: keep it out of the repo.
    monkeypatch.chdir(tmp_path)


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIEMCAU_VAR_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DIEMCAU_DATABASE_URL", "postgresql+asyncpg://diemcau@db:5432/diemcau")
    monkeypatch.setenv("DIEMCAU_HOST", "0.0.0.0")
    monkeypatch.setenv("DIEMCAU_PORT", "9000")
    monkeypatch.setenv("DIEMCAU_PUBLIC_URL", "https://hoinghi.hanoi.gov.vn/")
    monkeypatch.setenv("DIEMCAU_LOG_FORMAT", "json")
    monkeypatch.setenv("DIEMCAU_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("DIEMCAU_ACCESS_TOKEN_TTL_S", "600")
    monkeypatch.setenv("DIEMCAU_PASSWORD_MIN_LENGTH", "14")
    monkeypatch.setenv("DIEMCAU_LOGIN_MAX_FAILURES", "3")
    monkeypatch.setenv("DIEMCAU_SECRET_KEY", "s" * 48)
    settings = Settings()
    assert settings.var_dir == tmp_path / "state"
    assert settings.effective_database_url == "postgresql+asyncpg://diemcau@db:5432/diemcau"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.effective_public_url == "https://hoinghi.hanoi.gov.vn"
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    assert settings.access_token_ttl_s == 600
    assert settings.password_min_length == 14
    assert settings.login_max_failures == 3
    assert settings.secret() == "s" * 48
    # The secret never shows in a repr.
    assert "s" * 48 not in repr(settings)


def test_allowed_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIEMCAU_ALLOWED_ORIGINS", "https://a.example.vn, https://b.example.vn/ ,,")
    monkeypatch.setenv("DIEMCAU_PUBLIC_URL", "https://diemcau.example.vn")
    settings = Settings()
    assert settings.allowed_origins == ["https://a.example.vn", "https://b.example.vn/"]
    assert settings.effective_origins == [
        "https://diemcau.example.vn",
        "https://a.example.vn",
        "https://b.example.vn",
    ]


def test_defaults() -> None:
    settings = Settings()
    assert settings.var_dir == Path("var")
    assert settings.database_url is None
    assert settings.effective_database_url == "sqlite+aiosqlite:///var/diemcau.sqlite3"
    assert settings.effective_public_url == "http://127.0.0.1:8000"
    assert settings.effective_origins == ["http://127.0.0.1:8000"]
    assert settings.allowed_origins == []
    assert (settings.log_format, settings.log_level) == ("text", "INFO")


def test_default_database_url_is_under_var_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DIEMCAU_VAR_DIR", str(tmp_path / "var"))
    settings = Settings()
    expected = (tmp_path / "var" / "diemcau.sqlite3").as_posix()
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{expected}"
    # An empty DIEMCAU_DATABASE_URL counts as unset.
    monkeypatch.setenv("DIEMCAU_DATABASE_URL", "")
    assert Settings().effective_database_url == f"sqlite+aiosqlite:///{expected}"


def test_no_hard_coded_default_secret() -> None:
    settings = Settings()
    assert settings.secret_key is None
    with pytest.raises(RuntimeError, match="with_secret"):
        settings.secret()


def test_with_secret_generates_and_persists(tmp_path: Path) -> None:
    var = tmp_path / "var"
    settings = Settings(var_dir=var)
    first = settings.with_secret()
    secret = first.secret()
    assert len(secret) >= 32
    path = var / SECRET_FILE_NAME
    assert path.read_text(encoding="ascii").strip() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.secret_key is None  # the original (frozen) settings are unchanged
    assert Settings(var_dir=var).with_secret().secret() == secret
    assert load_or_create_secret(var) == secret
    # Another var directory gets another secret.
    assert Settings(var_dir=tmp_path / "other").with_secret().secret() != secret


def test_with_secret_keeps_a_given_secret(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var", secret_key="k" * 40)
    assert settings.with_secret() is settings
    assert not (tmp_path / "var" / SECRET_FILE_NAME).exists()


def test_a_short_secret_file_is_replaced(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    path = var / SECRET_FILE_NAME
    path.write_text("short\n", encoding="ascii")
    path.chmod(0o644)
    secret = load_or_create_secret(var)
    assert len(secret) >= 32
    assert path.read_text(encoding="ascii").strip() == secret
    # The new secret is not left readable by others just because the old file was.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (
        ("DIEMCAU_PORT", "0"),
        ("DIEMCAU_PORT", "http"),
        ("DIEMCAU_LOG_FORMAT", "xml"),
        ("DIEMCAU_PASSWORD_MIN_LENGTH", "4"),
        ("DIEMCAU_ACCESS_TOKEN_TTL_S", "10"),
    ):
        with monkeypatch.context() as patch:
            patch.setenv(key, value)
            with pytest.raises(ValidationError):
                Settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]
