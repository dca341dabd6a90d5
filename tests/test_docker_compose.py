"""Static checks of the container files (Dockerfile, docker-compose.yml, .dockerignore).

No docker engine is needed: the files are only parsed.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

ENV_PREFIX = "DIEMCAU_"
# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}`, `${NAME?message}`
INTERPOLATION = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
PLACEHOLDER = "interpolated"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _service(name: str) -> dict[str, Any]:
    services = _compose()["services"]
    assert name in services, f"service {name!r} missing"
    service = services[name]
    assert isinstance(service, dict)
    return service


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment as a mapping (compose accepts a mapping or a KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _is_pure_interpolation(value: str) -> bool:
    return INTERPOLATION.fullmatch(value.strip()) is not None


def _resolve(value: str, *, fill: str = PLACEHOLDER) -> str:
    """Replace each interpolation by its default when it has one, else by `fill`."""

    def repl(match: re.Match[str]) -> str:
        if match.group("op") in (":-", "-"):
            return match.group("arg")
        return fill

    return INTERPOLATION.sub(repl, value)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends with a line continuation"
    return instructions


def _all_strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _all_strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _all_strings(item)]
    return []


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_has_db_and_app_services() -> None:
    services = _compose()["services"]
    assert {"db", "app"} <= set(services)


def test_db_uses_official_postgres_image() -> None:
    image = _service("db")["image"]
    assert image.startswith("postgres:"), image
    assert "/" not in image, f"not the official image: {image}"


def test_db_has_healthcheck_and_named_volume() -> None:
    db = _service("db")
    test = db["healthcheck"]["test"]
    command = test if isinstance(test, str) else " ".join(test)
    assert "pg_isready" in command

    declared = _compose().get("volumes") or {}
    mounts = [str(v).split(":") for v in db.get("volumes", [])]
    data_mounts = [m for m in mounts if len(m) >= 2 and m[1] == "/var/lib/postgresql/data"]
    assert data_mounts, "db data directory is not on a volume"
    assert data_mounts[0][0] in declared, "db data volume is not a declared named volume"


def test_db_credentials() -> None:
    env = _environment(_service("db"))
    assert env["POSTGRES_DB"] == "diemcau"
    assert env["POSTGRES_USER"] == "diemcau"
    match = INTERPOLATION.fullmatch(env["POSTGRES_PASSWORD"])
    assert match is not None
    assert match.group("op") in (":?", "?"), "the database password must be required"


def test_app_is_built_and_waits_for_healthy_db() -> None:
    app = _service("app")
    assert "build" in app
    depends_on = app["depends_on"]
    assert isinstance(depends_on, dict), "depends_on needs the long form to carry a condition"
    assert depends_on["db"]["condition"] == "service_healthy"
    assert "8000:8000" in [str(p) for p in app["ports"]]
    assert app.get("restart") == "unless-stopped"
    test = app["healthcheck"]["test"]
    assert "/healthz" in (test if isinstance(test, str) else " ".join(test))


def test_app_var_dir_is_on_named_volume() -> None:
    app = _service("app")
    env = _environment(app)
    var_dir = env["DIEMCAU_VAR_DIR"]
    declared = _compose().get("volumes") or {}
    mounts = [str(v).split(":") for v in app.get("volumes", [])]
    assert any(m[0] in declared and m[1] == var_dir for m in mounts if len(m) >= 2)


def test_app_environment_names_real_settings() -> None:
    env = _environment(_service("app"))
    keys = [key for key in env if key.startswith(ENV_PREFIX)]
    assert keys
    fields = set(Settings.model_fields)
    unknown = [key for key in keys if key[len(ENV_PREFIX) :].lower() not in fields]
    assert not unknown, f"environment keys that Settings does not read: {unknown}"


def test_app_environment_is_valid_for_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    env = _environment(_service("app"))
    for key, value in env.items():
        monkeypatch.setenv(key, _resolve(value))
    settings = Settings()
    assert settings.port == 8000
    assert settings.log_format == "json"
    assert settings.allowed_origins == []
    assert settings.secret_key is None, "no secret must be passed by default"
    assert str(settings.var_dir) == env["DIEMCAU_VAR_DIR"]


def test_database_url_is_asyncpg_to_db_service() -> None:
    url = _environment(_service("app"))["DIEMCAU_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://")
    parts = urlsplit(_resolve(url))
    assert parts.hostname == "db"
    assert parts.hostname in _compose()["services"]
    assert parts.port == 5432
    assert parts.username == "diemcau"
    assert parts.password == PLACEHOLDER, "the database password must come from ${...}"
    assert parts.path == "/diemcau"


def test_no_hard_coded_secrets() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            if any(word in key.upper() for word in SECRET_WORDS):
                assert _is_pure_interpolation(value), f"{name}.{key} looks hard-coded"
                match = INTERPOLATION.fullmatch(value.strip())
                assert match is not None
                assert match.group("op") not in (":-", "-"), f"{name}.{key} has a default"
    for text in _all_strings(compose):
        for candidate in re.findall(r"[a-z][a-z0-9+.-]*://\S+", text):
            password = urlsplit(_resolve(candidate)).password
            assert password in (None, PLACEHOLDER), f"password in URL: {candidate}"


# --- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_base_image() -> None:
    froms = [args for keyword, args in _dockerfile_instructions() if keyword == "FROM"]
    assert froms, "no FROM"
    assert froms[-1].split()[0] == "python:3.11-slim"


def test_dockerfile_runs_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [args for keyword, args in instructions[last_from:] if keyword == "USER"]
    assert users, "no USER line: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_serves_and_checks_health() -> None:
    instructions = _dockerfile_instructions()
    by_keyword: dict[str, list[str]] = {}
    for keyword, args in instructions:
        by_keyword.setdefault(keyword, []).append(args)
    assert "8000" in by_keyword["EXPOSE"][-1].split()
    assert by_keyword["WORKDIR"][-1] == "/srv/diemcau"
    assert any("pip install --no-cache-dir ." in run for run in by_keyword["RUN"])
    assert "/healthz" in by_keyword["HEALTHCHECK"][-1]
    assert "urllib" in by_keyword["HEALTHCHECK"][-1]
    cmd = by_keyword["CMD"][-1]
    assert "diemcau init && exec diemcau serve" in cmd
    assert shlex.split(cmd.strip("[]").replace(",", " "))[:2] == ["sh", "-c"]


def test_dockerignore_excludes_local_state() -> None:
    entries = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".venv", "var", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"):
        assert required in entries, required
    assert {"__pycache__", "**/__pycache__"} & entries
