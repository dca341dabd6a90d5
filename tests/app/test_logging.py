"""Logging: secrets scrubbed from every record, JSON lines, request ids."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import httpx
import pytest

from app.auth.tokens import issue_access_token
from app.logging_setup import JsonFormatter, ScrubFilter, configure_logging, scrub
from bridges.invitations.credentials import new_credential
from models import Role
from tests.conftest import TEST_PASSWORD

CREDENTIAL = "dc1_" + "Ab3_-" * 8 + "xyz"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxIiwiZ2VuIjowLCJyb2xlIjoiYWRtaW4ifQ"
    ".Qx3v_8mNq1-Zb0kS9dPpYHc2rT7uWfL4eA6gJiOoKlM"
)
REQUEST_ID_HEX = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """Logging does not depend on the database: these tests run on SQLite only."""
    return sqlite_url


# ---- scrub ---------------------------------------------------------------------------------


def test_scrub_removes_join_credentials() -> None:
    credential = new_credential()
    assert len(CREDENTIAL) == 47
    for text in (
        f"join with {credential} now",
        f"http://x/join#{credential}",
        f'{{"credential": "{credential}"}}',
        f"GET /api/v1/join/{credential}",
    ):
        cleaned = scrub(text)
        assert credential not in cleaned
        assert "dc1_" not in cleaned
        assert "[redacted]" in cleaned
    assert scrub(f"a {CREDENTIAL} b") == "a [redacted] b"


def test_scrub_removes_bearer_tokens_and_jwts() -> None:
    assert scrub(f"Authorization: Bearer {JWT}") == "Authorization: Bearer [redacted]"
    assert scrub("authorization: bearer opaque-token_123") == "authorization: bearer [redacted]"
    cleaned = scrub(f"token in a url /x?t={JWT}&y=1")
    assert JWT not in cleaned
    assert "&y=1" in cleaned
    real, _ = issue_access_token("k" * 40, account_id=7, generation=0, role=Role.ADMIN, ttl_s=60)
    assert real not in scrub(f"decoded {real} for account 7")
    assert scrub(f'{{"access_token": "{real}", "token_type": "bearer"}}').count(real) == 0


@pytest.mark.parametrize(
    "text",
    [
        "password=hunter2",
        "password: hunter2",
        "PASSWORD = hunter2&next=1",
        "login?username=a&password=hunter2&x=1",
        '{"password": "hunter2"}',
        "{'password': 'hunter2'}",
        "secret=hunter2",
        '{"new_password": "hunter2", "username": "ward"}',
        "token=hunter2",
        '{"password": "x hunter2',  # a record cut short inside the value
        '{"password": "with \\" quote hunter2"}',
    ],
)
def test_scrub_removes_password_values(text: str) -> None:
    cleaned = scrub(text)
    assert "hunter2" not in cleaned
    assert "[redacted]" in cleaned


@pytest.mark.parametrize(
    "text",
    [
        f'{{"username": "admin", "password": "{TEST_PASSWORD}"}}',
        f"{{'username': 'admin', 'password': '{TEST_PASSWORD}'}}",
        str({"username": "admin", "password": TEST_PASSWORD}),
    ],
)
def test_scrub_removes_whole_passphrases(text: str) -> None:
    cleaned = scrub(text)
    for word in TEST_PASSWORD.split():
        assert word not in cleaned
    assert "admin" in cleaned  # the rest of the record survives


def test_scrub_leaves_ordinary_text_alone() -> None:
    for text in (
        "POST /api/v1/sessions/1/invitations 200 12.3ms",
        "wrong username or password",
        "Phường Phúc Xá joined session 3",
        "credential_hash lookup",
    ):
        assert scrub(text) == text


# ---- records through handlers --------------------------------------------------------------


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    watched = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved_uv = [(list(lg.handlers), lg.propagate) for lg in watched]
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    for lg, (handlers, propagate) in zip(watched, saved_uv, strict=True):
        lg.handlers[:] = handlers
        lg.propagate = propagate


def test_scrub_filter_cleans_args_and_exceptions(restore_logging: None) -> None:
    handler = ListHandler()
    handler.addFilter(ScrubFilter())
    handler.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    logger = logging.getLogger("diemcau.test.scrub")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.info("verify %s with %r", CREDENTIAL, {"password": "hunter2"})
        try:
            raise ValueError(f"bad credential {CREDENTIAL} and Bearer {JWT}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    text = "\n".join(handler.lines)
    assert CREDENTIAL not in text
    assert JWT not in text
    assert "hunter2" not in text
    assert "ValueError" in text  # the traceback is kept, only cleaned
    assert handler.lines[0].startswith("- verify [redacted]")


async def test_real_request_logs_no_secret(
    client: httpx.AsyncClient, staff: dict[str, dict[str, str]], restore_logging: None
) -> None:
    op = staff["operator"]
    token = op["Authorization"].split()[1]
    response = await client.post(
        "/api/v1/points", json={"code": "00001", "name": "Phường Phúc Xá"}, headers=op
    )
    assert response.status_code == 201, response.text
    session_id = (
        await client.post("/api/v1/sessions", json={"title": "Đối thoại"}, headers=op)
    ).json()["id"]
    await client.post(
        f"/api/v1/sessions/{session_id}/invitations", json={"point_codes": ["00001"]}, headers=op
    )
    links = await client.post(f"/api/v1/sessions/{session_id}/join-links", json={}, headers=op)
    credential = links.json()["links"][0]["credential"]

    root = logging.getLogger()
    raw = ListHandler()  # sees each record before the scrubbing handler changes it
    scrubbed = ListHandler()
    scrubbed.addFilter(ScrubFilter())
    scrubbed.setFormatter(logging.Formatter("%(name)s [%(request_id)s] %(message)s"))
    root.addHandler(raw)
    root.addHandler(scrubbed)
    root.setLevel(logging.DEBUG)
    try:
        response = await client.post(
            "/api/v1/join/verify", json={"credential": credential}, headers=op
        )
        assert response.status_code == 200
        # Secrets pasted into a path are logged by the access log (and httpx): they must not stay.
        response = await client.get(f"/api/v1/join/{credential}", headers=op)
        assert response.status_code in (404, 405)
        response = await client.get(f"/api/v1/tokens/{token}", headers=op)
        assert response.status_code == 404
        response = await client.post(
            "/api/v1/auth/login", json={"username": "operator", "password": TEST_PASSWORD}
        )
        assert response.status_code == 200
    finally:
        root.removeHandler(raw)
        root.removeHandler(scrubbed)
    raw_text = "\n".join(raw.lines)
    text = "\n".join(scrubbed.lines)
    assert "POST /api/v1/join/verify 200" in text
    assert credential in raw_text  # the test really exercised a leaking record
    assert credential not in text
    assert token not in text
    assert "dc1_" not in text
    assert "correct horse" not in text
    assert len(scrubbed.lines) >= 4


async def test_json_lines_carry_the_request_id(
    client: httpx.AsyncClient,
    restore_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    capsys.readouterr()
    response = await client.get("/healthz", headers={"X-Request-ID": "req-json-000001"})
    assert response.status_code == 200
    await client.post("/api/v1/join/verify", json={"credential": CREDENTIAL})
    logging.getLogger("diemcau.test").warning("plain %s line with Phường", "Ánh")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is valid JSON
    assert entries
    for entry in entries:
        assert {"ts", "level", "logger", "request_id", "message"} <= set(entry)
    access = [e for e in entries if e["logger"] == "diemcau.access"]
    assert access[0]["request_id"] == "req-json-000001"
    assert access[0]["message"].startswith("GET /healthz 200")
    assert access[0]["level"] == "INFO"
    assert REQUEST_ID_HEX.fullmatch(access[1]["request_id"])
    outside = [e for e in entries if e["logger"] == "diemcau.test"]
    assert outside == [{**outside[0], "request_id": "-", "message": "plain Ánh line with Phường"}]
    assert CREDENTIAL not in "\n".join(lines)


async def test_text_format_has_request_id(
    client: httpx.AsyncClient, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "text")
    capsys.readouterr()
    await client.get("/healthz", headers={"X-Request-ID": "req-text-000001"})
    err = capsys.readouterr().err
    assert "INFO diemcau.access [req-text-000001] GET /healthz 200" in err


def test_json_formatter_includes_cleaned_exception() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %s", (CREDENTIAL,), None)
    try:
        raise RuntimeError(CREDENTIAL)
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    ScrubFilter().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "boom [redacted]"
    assert "RuntimeError" in entry["exc"]
    assert CREDENTIAL not in json.dumps(entry)


# ---- X-Request-ID --------------------------------------------------------------------------


async def test_request_id_is_set_and_sane_ones_are_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert REQUEST_ID_HEX.fullmatch(response.headers["X-Request-ID"])
    other = await client.get("/healthz")
    assert other.headers["X-Request-ID"] != response.headers["X-Request-ID"]
    for sane in ("abcdefgh", "req-2026.12.01_hall-1", "A" * 64):
        response = await client.get("/healthz", headers={"X-Request-ID": sane})
        assert response.headers["X-Request-ID"] == sane
    # Error responses carry it too, along with the security headers.
    response = await client.get("/api/v1/nowhere", headers={"X-Request-ID": "trace-404-0001"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "trace-404-0001"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


INSANE_IDS = (
    "A" * 65,
    "short",
    "has space in it",
    "inject\\r\\nSet-Cookie:x",
    "semi;colon;id",
    "ồồồồồồồồồ",
)


async def test_insane_request_ids_are_replaced(client: httpx.AsyncClient) -> None:
    for insane in INSANE_IDS:
        response = await client.get("/healthz", headers=[(b"X-Request-ID", insane.encode())])
        assert response.status_code == 200
        echoed = response.headers["X-Request-ID"]
        assert echoed != insane
        assert REQUEST_ID_HEX.fullmatch(echoed), insane
