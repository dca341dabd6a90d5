"""The wire contract: the models of signaling/protocol.py, and docs/protocol.md held to them.

Examples in docs/protocol.md are fenced blocks tagged by direction, and each is validated here:
  ```json client      one client → server message (CLIENT_MESSAGE)
  ```json server      one server → client message (SERVER_MESSAGE)
  ```json http        an HTTP body (must be JSON, nothing more)
  ```transcript       lines `C: {…}` / `S: {…}` (a message per line, indented lines continue it),
                      `close: CODE reason`, and `#` comments
Every other ```json block is refused, so an example cannot escape validation by forgetting its tag.
The reference clients in the document (```python reference-client, ```js browser-client) are run
against a real server.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
import uvicorn
from pydantic import ValidationError
from typer.testing import CliRunner

from app.cli import cli
from app.server import server_config
from app.settings import Settings
from app.state import ServiceState
from models import Role
from signaling import protocol
from signaling.codes import CLOSE_REASONS, CloseCode, ErrorCode
from signaling.protocol import CLIENT_MESSAGE, CLIENT_TYPES, SERVER_MESSAGE
from tests.conftest import ROOT, create_staff, login, make_settings, unavailable

DOC = ROOT / "docs" / "protocol.md"
SCHEMA = ROOT / "docs" / "protocol.schema.json"
# Close codes a client meets that are not ours to send: no close frame, and uvicorn's restart.
FOREIGN_CLOSE_CODES = {1006, 1012}
CREDENTIAL = "dc1_" + "A" * 43


# ---- reading the document ------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    info: str
    body: str
    line: int  # of the opening fence, 1-based


def blocks(text: str) -> list[Block]:
    found: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^```(.*)$", lines[index])
        if opening is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index] != "```":
            body.append(lines[index])
            index += 1
        assert index < len(lines), f"unclosed fence at line {start + 1}"
        found.append(Block(opening.group(1).strip(), "\n".join(body), start + 1))
        index += 1
    return found


@dataclass(frozen=True)
class Example:
    direction: str  # "client" or "server"
    message: dict[str, Any]
    where: str


def transcript_examples(block: Block) -> tuple[list[Example], list[int]]:
    """The messages and close codes of one transcript block."""
    examples: list[Example] = []
    closes: list[int] = []
    current: tuple[str, list[str], int] | None = None

    def flush() -> None:
        if current is not None:
            direction, parts, line = current
            where = f"transcript line {line}"
            try:
                message = json.loads("\n".join(parts))
            except ValueError as exc:
                raise AssertionError(f"{where}: not JSON: {exc}") from None
            examples.append(Example(direction, message, where))

    for offset, line in enumerate(block.body.splitlines(), start=block.line + 1):
        if line.startswith((" ", "\t")) and current is not None:
            current[1].append(line)
            continue
        flush()
        current = None
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith(("C: ", "S: ")):
            current = ("client" if line[0] == "C" else "server", [line[3:]], offset)
        elif line.startswith("close: "):
            closes.append(int(line.split()[1]))
        else:
            raise AssertionError(f"transcript line {offset}: cannot read {line!r}")
    flush()
    return examples, closes


def doc_examples() -> tuple[list[Example], list[int]]:
    examples: list[Example] = []
    closes: list[int] = []
    for block in blocks(DOC.read_text(encoding="utf-8")):
        words = block.info.split()
        if not words:
            continue
        if words[0] == "transcript":
            found, codes = transcript_examples(block)
            examples += found
            closes += codes
        elif words[0] == "json":
            tag = words[1] if len(words) > 1 else ""
            assert tag in ("client", "server", "http"), (
                f"line {block.line}: tag every ```json block with client, server or http"
            )
            message = json.loads(block.body)
            if tag != "http":
                examples.append(Example(tag, message, f"line {block.line}"))
    return examples, closes


EXAMPLES, TRANSCRIPT_CLOSES = doc_examples()
CLIENT_EXAMPLES = [e for e in EXAMPLES if e.direction == "client"]
SERVER_EXAMPLES = [e for e in EXAMPLES if e.direction == "server"]


def code_block(info: str) -> str:
    (found,) = [b.body for b in blocks(DOC.read_text(encoding="utf-8")) if b.info == info]
    return found


# ---- the examples hold -----------------------------------------------------------------------


@pytest.mark.parametrize("example", CLIENT_EXAMPLES, ids=lambda e: e.where)
def test_client_example_is_a_valid_client_message(example: Example) -> None:
    message = CLIENT_MESSAGE.validate_python(example.message)
    assert message.type == example.message["type"]


@pytest.mark.parametrize("example", SERVER_EXAMPLES, ids=lambda e: e.where)
def test_server_example_is_a_valid_server_message(example: Example) -> None:
    message = SERVER_MESSAGE.validate_python(example.message)
    assert message.type == example.message["type"]
    # What the server would send for it carries no field the example lacks, and vice versa,
    # except the defaulted `details`/`result`, which the server always sends too.
    dumped = json.loads(message.model_dump_json())
    assert set(dumped) == set(example.message), example.where


def test_examples_were_found() -> None:
    assert len(CLIENT_EXAMPLES) >= 20
    assert len(SERVER_EXAMPLES) >= 40


def test_every_message_type_has_an_example_in_each_direction() -> None:
    server_types = {
        get_args(model.model_fields["type"].annotation)[0]
        for model in get_args(get_args(protocol.ServerMessage)[0])
    }
    assert {e.message["type"] for e in CLIENT_EXAMPLES} == set(CLIENT_TYPES)
    assert {e.message["type"] for e in SERVER_EXAMPLES} == server_types


def test_the_client_types_constant_matches_the_union() -> None:
    union_types = {
        get_args(model.model_fields["type"].annotation)[0]
        for model in get_args(get_args(protocol.ClientMessage)[0])
    }
    assert union_types == set(CLIENT_TYPES)


def test_hello_examples_cover_both_kinds_of_auth_and_a_resume() -> None:
    hellos = [e.message for e in CLIENT_EXAMPLES if e.message["type"] == "hello"]
    assert {h["auth"]["kind"] for h in hellos} == {"point", "staff"}
    assert any(h.get("last_seq") is not None for h in hellos)
    welcomes = [e.message for e in SERVER_EXAMPLES if e.message["type"] == "welcome"]
    assert any(w["resumed"] and w["replayed"] > 0 for w in welcomes)


def test_every_error_code_has_an_example_and_a_row() -> None:
    text = DOC.read_text(encoding="utf-8")
    shown = {e.message["code"] for e in SERVER_EXAMPLES if e.message["type"] == "error"}
    assert shown <= {c.value for c in ErrorCode}, "an example uses a code that does not exist"
    for code in ErrorCode:
        assert code.value in shown, f"no error example with code {code.value}"
        assert re.search(rf"^\| `{code.value}` \|", text, re.M), f"no table row for {code.value}"


def test_every_close_code_has_a_row_with_its_name() -> None:
    text = DOC.read_text(encoding="utf-8")
    for code in CloseCode:
        assert re.search(rf"^\| {int(code)} \| `{code.name}` \|", text, re.M), code
    rows = {int(m) for m in re.findall(r"^\| (\d{4}) \| `[A-Z_]+` \|", text, re.M)}
    assert rows == {int(code) for code in CloseCode}, "a row for a code that does not exist"
    for foreign in FOREIGN_CLOSE_CODES:
        assert f"**{foreign}**" in text


def test_transcript_close_codes_are_real() -> None:
    assert TRANSCRIPT_CLOSES
    known = {int(c) for c in CloseCode} | FOREIGN_CLOSE_CODES
    assert set(TRANSCRIPT_CLOSES) <= known


def test_close_reasons_cover_every_close_code() -> None:
    assert set(CLOSE_REASONS) == set(CloseCode)


def test_every_event_type_the_code_emits_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    emitted: set[str] = set()
    for source in [*ROOT.glob("app/**/*.py"), *ROOT.glob("bridges/**/*.py")]:
        emitted |= set(
            re.findall(r"append_event\(\s*db,\s*[\w.]+,\s*\"([a-z._]+)\"", source.read_text())
        )
    assert emitted >= {"session.created", "session.updated", "session.status_changed"}
    for event in emitted:
        assert re.search(rf"^\| `{re.escape(event)}` \|", text, re.M), event
        assert any(e.message.get("event") == event for e in SERVER_EXAMPLES), event


def test_settings_named_in_the_document_exist_and_their_defaults_match() -> None:
    text = DOC.read_text(encoding="utf-8")
    fields = Settings.model_fields
    named = set(re.findall(r"DIEMCAU_([A-Z0-9_]+)", text))
    for name in named:
        assert name.lower() in fields, f"DIEMCAU_{name} is not a setting"
    live = [
        f for f in fields if f.startswith(("ws_", "heartbeat_", "resume_", "degraded_", "wall_"))
    ]
    for field in live:
        assert f"DIEMCAU_{field.upper()}" in text, f"DIEMCAU_{field.upper()} is not documented"
    rows = re.findall(r"^\| `DIEMCAU_([A-Z0-9_]+)` \| ([0-9.]+) \|", text, re.M)
    assert len(rows) >= len(live)
    for name, default in rows:
        assert float(default) == fields[name.lower()].default, name


def test_defaults_in_the_welcome_examples_match_the_settings() -> None:
    defaults = Settings.model_fields
    for example in SERVER_EXAMPLES:
        if example.message["type"] != "welcome":
            continue
        heartbeat, limits = example.message["heartbeat"], example.message["limits"]
        assert heartbeat["ping_interval_s"] == defaults["heartbeat_interval_s"].default
        assert heartbeat["timeout_s"] == defaults["heartbeat_timeout_s"].default
        assert heartbeat["resume_window_s"] == defaults["resume_window_s"].default
        assert limits["max_message_bytes"] == defaults["ws_max_message_bytes"].default
        assert limits["messages_per_s"] == defaults["ws_rate_per_s"].default
        assert limits["burst"] == defaults["ws_rate_burst"].default


def test_reference_clients_parse() -> None:
    ast.parse(code_block("python reference-client"))
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: the JavaScript snippet is only run where it is")
    result = subprocess.run(
        [node, "--check", "-"],
        input=code_block("js browser-client"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# ---- the exported schema ---------------------------------------------------------------------


def schema_text() -> str:
    return json.dumps(protocol.json_schema(), indent=2, ensure_ascii=False) + "\n"


def test_schema_file_is_the_generated_schema() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == schema_text(), (
        "docs/protocol.schema.json is stale: run `diemcau protocol schema`"
    )


def test_cli_writes_the_schema_to_a_file_and_to_stdout(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "nested" / "schema.json"
    result = runner.invoke(cli, ["protocol", "schema", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == schema_text()
    result = runner.invoke(cli, ["protocol", "schema", "--out", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout == schema_text()


def test_cli_default_target_is_docs_protocol_schema_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["protocol", "schema"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "docs" / "protocol.schema.json").read_text(encoding="utf-8") == schema_text()


def test_schema_lists_every_type_under_its_discriminator() -> None:
    schema = protocol.json_schema()
    assert schema["protocol"] == protocol.PROTOCOL_VERSION == 1
    client = schema["client_to_server"]["discriminator"]
    assert client["propertyName"] == "type"
    assert set(client["mapping"]) == set(CLIENT_TYPES)
    server = schema["server_to_client"]["discriminator"]
    assert set(server["mapping"]) == {
        "welcome",
        "snapshot",
        "event",
        "ack",
        "error",
        "ping",
        "wall.snapshot",
        "wall.delta",
        "rollcall.tally",
    }
    definitions = schema["client_to_server"]["$defs"]
    for name in ("Hello", "Pong", "Stats", "Ping", "Resync", "WallGet", "Bye", "PointAuth"):
        assert definitions[name]["additionalProperties"] is False, name
    # Serialization mode: what the server always sends is required, defaults included.
    welcome = schema["server_to_client"]["$defs"]["Welcome"]
    assert {"type", "id", "protocol", "seq", "resumed", "replayed"} <= set(welcome["required"])


async def test_schema_is_served_over_http(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/ws/schema.json")
    assert response.status_code == 200
    assert response.json() == json.loads(SCHEMA.read_text(encoding="utf-8"))


# ---- the models --------------------------------------------------------------------------------


def hello(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "hello",
        "id": "h-1",
        "protocol": 1,
        "auth": {"kind": "point", "credential": CREDENTIAL},
    }
    message.update(changes)
    return message


def staff_auth(**changes: Any) -> dict[str, Any]:
    auth: dict[str, Any] = {"kind": "staff", "token": "t" * 40, "session_id": 2}
    auth.update(changes)
    return auth


def refusal(message: object) -> list[dict[str, Any]]:
    """The pydantic errors for a client message that must be refused."""
    with pytest.raises(ValidationError) as caught:
        CLIENT_MESSAGE.validate_python(message)
    return [dict(error) for error in caught.value.errors()]


@pytest.mark.parametrize(
    ("raw", "model"),
    [
        (hello(), protocol.Hello),
        ({"type": "pong", "nonce": 3}, protocol.Pong),
        ({"type": "stats"}, protocol.Stats),
        ({"type": "ping", "id": "p"}, protocol.Ping),
        ({"type": "resync", "id": "r"}, protocol.Resync),
        ({"type": "wall.get", "id": "w"}, protocol.WallGet),
        ({"type": "bye"}, protocol.Bye),
        ({"type": "bye", "id": "b"}, protocol.Bye),
    ],
)
def test_client_union_picks_the_model_by_type(raw: dict[str, Any], model: type) -> None:
    message = CLIENT_MESSAGE.validate_python(raw)
    assert type(message) is model
    assert CLIENT_MESSAGE.validate_json(json.dumps(raw)) == message


def test_unknown_and_missing_type_are_refused_by_the_discriminator() -> None:
    (error,) = refusal({"type": "welcome", "id": "x"})
    assert error["type"] == "union_tag_invalid"
    (error,) = refusal({"id": "x"})
    assert error["type"] == "union_tag_not_found"
    (error,) = refusal(["hello"])
    assert error["type"] == "model_attributes_type"


@pytest.mark.parametrize(
    "raw",
    [
        {**hello(), "token": "x"},
        hello(auth={"kind": "point", "credential": CREDENTIAL, "session_id": 2}),
        hello(auth=staff_auth(credential=CREDENTIAL)),
        hello(client={"name": "x", "os": "linux"}),
        {"type": "pong", "nonce": 1, "id": "p"},
        {"type": "stats", "rtt": 10},
        {"type": "ping", "id": "p", "nonce": 1},
        {"type": "resync", "id": "r", "seq": 3},
        {"type": "wall.get", "id": "w", "area": "001"},
        {"type": "bye", "reason": "done"},
    ],
)
def test_extra_fields_are_forbidden_everywhere(raw: dict[str, Any]) -> None:
    errors = refusal(raw)
    assert {e["type"] for e in errors} == {"extra_forbidden"}


def test_hello_requires_an_auth_with_a_kind() -> None:
    (error,) = refusal({k: v for k, v in hello().items() if k != "auth"})
    assert (error["type"], error["loc"]) == ("missing", ("hello", "auth"))
    (error,) = refusal(hello(auth={"credential": CREDENTIAL}))
    assert error["type"] == "union_tag_not_found"
    (error,) = refusal(hello(auth={"kind": "robot", "credential": CREDENTIAL}))
    assert error["type"] == "union_tag_invalid"


def test_each_kind_of_auth_requires_its_own_fields() -> None:
    (error,) = refusal(hello(auth={"kind": "point"}))
    assert (error["type"], error["loc"][-1]) == ("missing", "credential")
    missing = {e["loc"][-1] for e in refusal(hello(auth={"kind": "staff", "token": "t"}))}
    assert missing == {"session_id"}
    missing = {e["loc"][-1] for e in refusal(hello(auth={"kind": "staff"}))}
    assert missing == {"token", "session_id"}
    message = CLIENT_MESSAGE.validate_python(hello(auth=staff_auth()))
    assert isinstance(message, protocol.Hello)
    assert isinstance(message.auth, protocol.StaffAuth)
    assert message.auth.role is None
    for role in ("operator", "moderator", "hall", "observer"):
        CLIENT_MESSAGE.validate_python(hello(auth=staff_auth(role=role)))
    for role in ("admin", "point", ""):
        (error,) = refusal(hello(auth=staff_auth(role=role)))
        assert error["type"] == "literal_error"


def test_hello_requires_id_and_protocol() -> None:
    for field in ("id", "protocol"):
        (error,) = refusal({k: v for k, v in hello().items() if k != field})
        assert (error["type"], error["loc"]) == ("missing", ("hello", field))


@pytest.mark.parametrize(
    ("changes", "error_type"),
    [
        ({"id": ""}, "string_too_short"),
        ({"id": "x" * 65}, "string_too_long"),
        ({"protocol": 0}, "greater_than_equal"),
        ({"protocol": 1001}, "less_than_equal"),
        ({"last_seq": -1}, "greater_than_equal"),
        ({"last_seq": 2**62 + 1}, "less_than_equal"),
        ({"auth": {"kind": "point", "credential": ""}}, "string_too_short"),
        ({"auth": {"kind": "point", "credential": "x" * 201}}, "string_too_long"),
        ({"auth": staff_auth(token="")}, "string_too_short"),
        ({"auth": staff_auth(token="t" * 4097)}, "string_too_long"),
        ({"auth": staff_auth(session_id=0)}, "greater_than_equal"),
        ({"auth": staff_auth(session_id=2**62 + 1)}, "less_than_equal"),
        ({"client": {"name": "n" * 65}}, "string_too_long"),
        ({"client": {"version": "v" * 33}}, "string_too_long"),
        ({"client": {"user_agent": "u" * 301}}, "string_too_long"),
    ],
)
def test_hello_limits(changes: dict[str, Any], error_type: str) -> None:
    (error,) = refusal(hello(**changes))
    assert error["type"] == error_type


def test_hello_limits_are_inclusive() -> None:
    message = CLIENT_MESSAGE.validate_python(
        hello(
            id="x" * 64,
            protocol=1000,
            last_seq=2**62,
            auth={"kind": "point", "credential": "c" * 200},
            client={"name": "n" * 64, "version": "v" * 32, "user_agent": "u" * 300},
        )
    )
    assert isinstance(message, protocol.Hello)
    assert message.last_seq == 2**62
    staff = CLIENT_MESSAGE.validate_python(
        hello(last_seq=0, auth=staff_auth(token="t" * 4096, session_id=2**62))
    )
    assert isinstance(staff, protocol.Hello)
    assert staff.last_seq == 0


def test_hello_defaults() -> None:
    message = CLIENT_MESSAGE.validate_python(hello())
    assert isinstance(message, protocol.Hello)
    assert message.last_seq is None
    assert message.client == protocol.ClientInfo(name="", version="", user_agent="")
    assert CLIENT_MESSAGE.validate_python(hello(last_seq=None)) == message


@pytest.mark.parametrize("field", ["rtt_ms", "loss_pct", "jitter_ms", "bitrate_in_kbps"])
def test_stats_values_must_be_finite_and_not_negative(field: str) -> None:
    for value in (-0.1, math.nan, math.inf):
        (error,) = refusal({"type": "stats", field: value})
        assert error["loc"] == ("stats", field)
    (error,) = refusal(json.loads(f'{{"type": "stats", "{field}": NaN}}'))
    assert error["type"] == "finite_number"


@pytest.mark.parametrize(
    ("field", "highest"),
    [
        ("rtt_ms", 60_000),
        ("loss_pct", 100),
        ("jitter_ms", 60_000),
        ("bitrate_in_kbps", 1_000_000),
        ("bitrate_out_kbps", 1_000_000),
    ],
)
def test_stats_ranges(field: str, highest: float) -> None:
    message = CLIENT_MESSAGE.validate_python({"type": "stats", field: highest})
    assert getattr(message, field) == highest
    assert getattr(CLIENT_MESSAGE.validate_python({"type": "stats", field: 0}), field) == 0
    (error,) = refusal({"type": "stats", field: highest + 0.5})
    assert error["type"] == "less_than_equal"
    assert getattr(CLIENT_MESSAGE.validate_python({"type": "stats", field: None}), field) is None


def test_pong_and_request_ids() -> None:
    for nonce, error_type in ((-1, "greater_than_equal"), (2**62 + 1, "less_than_equal")):
        (error,) = refusal({"type": "pong", "nonce": nonce})
        assert error["type"] == error_type
    (error,) = refusal({"type": "pong"})
    assert error["type"] == "missing"
    for kind in ("ping", "resync", "wall.get"):
        (error,) = refusal({"type": kind})
        assert (error["type"], error["loc"]) == ("missing", (kind, "id"))
        (error,) = refusal({"type": kind, "id": "x" * 65})
        assert error["type"] == "string_too_long"
    (error,) = refusal({"type": "bye", "id": ""})
    assert error["type"] == "string_too_short"


def test_messages_are_frozen() -> None:
    message = CLIENT_MESSAGE.validate_python({"type": "pong", "nonce": 1})
    assert isinstance(message, protocol.Pong)
    with pytest.raises(ValidationError):
        message.nonce = 2  # type: ignore[misc]
    assert message.nonce == 1


def test_server_messages_round_trip_and_forbid_extra_fields() -> None:
    for example in SERVER_EXAMPLES:
        message = SERVER_MESSAGE.validate_python(example.message)
        assert SERVER_MESSAGE.validate_json(message.model_dump_json()) == message
    with pytest.raises(ValidationError) as caught:
        SERVER_MESSAGE.validate_python({"type": "ack", "id": "a", "result": {}, "extra": 1})
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError) as caught:
        SERVER_MESSAGE.validate_python({"type": "hello", "id": "a"})
    assert caught.value.errors()[0]["type"] == "union_tag_invalid"


def test_server_defaults_are_sent() -> None:
    error = json.loads(protocol.Error(code="x", message="y").model_dump_json())
    assert error == {"type": "error", "id": None, "code": "x", "message": "y", "details": {}}
    ack = json.loads(protocol.Ack(id="a").model_dump_json())
    assert ack == {"type": "ack", "id": "a", "result": {}}


# ---- the reference clients against a real server -------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    base: str
    settings: Settings
    state: ServiceState
    http: httpx.AsyncClient
    session_id: int
    links: dict[str, str]


@pytest.fixture
async def live(tmp_path: Path, sqlite_url: str) -> AsyncIterator[LiveServer]:
    port = free_port()
    settings = make_settings(
        tmp_path,
        sqlite_url,
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        heartbeat_interval_s=0.3,
        heartbeat_timeout_s=30,
        metrics_enabled=False,
    )
    await create_staff(settings, "admin", Role.ADMIN)
    config = server_config(settings)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(20):
            while not server.started:
                assert not task.done(), "the server did not start"
                await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            http.headers.update(await login(http, "admin"))
            for code, name, district in (
                ("00001", "Phường Phúc Xá", ("001", "Quận Ba Đình")),
                ("00070", "Phường Hàng Trống", ("002", "Quận Hoàn Kiếm")),
            ):
                response = await http.post(
                    "/api/v1/points",
                    json={
                        "code": code,
                        "name": name,
                        "district_code": district[0],
                        "district_name": district[1],
                        "province_code": "01",
                        "province_name": "Thành phố Hà Nội",
                    },
                )
                assert response.status_code in (200, 201), response.text
            response = await http.post("/api/v1/sessions", json={"title": "Đối thoại thử"})
            assert response.status_code in (200, 201), response.text
            session_id = response.json()["id"]
            path = f"/api/v1/sessions/{session_id}"
            response = await http.post(f"{path}/invitations", json={"all": True})
            assert response.status_code == 200, response.text
            response = await http.post(f"{path}/join-links", json={})
            assert response.status_code == 200, response.text
            links = {item["point_code"]: item["link"] for item in response.json()["links"]}
            response = await http.post(f"{path}/actions/open")
            assert response.status_code == 200, response.text
            app = config.app
            assert hasattr(app, "state")
            yield LiveServer(base, settings, app.state.diemcau, http, session_id, links)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)


class Output:
    """The lines a client process prints, read as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def until(self, matches: Callable[[str], bool], within: float = 20) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    stderr = b""
                    if self.process.stderr is not None:
                        stderr = await self.process.stderr.read()
                    raise AssertionError(
                        f"the client exited: {self.lines} {stderr.decode(errors='replace')}"
                    )
                line = raw.decode().rstrip("\n")
                self.lines.append(line)
                if matches(line):
                    return line


async def wait_for(condition: Callable[[], bool], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def client_process(*command: str) -> AsyncIterator[Output]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield Output(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_python_reference_client_joins_resumes_and_stops(
    live: LiveServer, tmp_path: Path
) -> None:
    source = code_block("python reference-client")
    assert "STATS_INTERVAL_S = 5\n" in source
    script = tmp_path / "point_client.py"
    # Report stats quickly so that the test sees one; nothing else is changed.
    script.write_text(source.replace("STATS_INTERVAL_S = 5\n", "STATS_INTERVAL_S = 0.2\n"))
    path = f"/api/v1/sessions/{live.session_id}"

    async with client_process(sys.executable, str(script), live.links["00001"]) as out:
        line = await out.until(lambda s: s.startswith("welcome "))
        assert line == "welcome Đối thoại thử (open) resumed=False"

        response = await live.http.patch(path, json={"description": "lần một"})
        assert response.status_code == 200, response.text
        line = await out.until(lambda s: s.startswith("event "))
        assert "session.updated {'changes': {'description': 'lần một'}}" in line

        room = live.state.signaling.rooms[live.session_id]
        point = room.by_code["00001"]
        # It answers pings (the server measured a round trip) and reports its link.
        await wait_for(
            lambda: (
                point.connection is not None
                and point.connection.rtt_ms is not None
                and point.connection.loss_pct == 0.5
            )
        )
        assert point.presence.state.value == "online"
        assert point.client == "reference-client 1"

        # Drop it (as the server does to a client that reads too slowly) and write an event while
        # it is away: it must come back resumed and get the event.
        dropped = point.connection
        assert dropped is not None
        dropped.close(CloseCode.OVERFLOW, urgent=True)
        response = await live.http.patch(path, json={"description": "lần hai"})
        assert response.status_code == 200, response.text
        line = await out.until(lambda s: s.startswith("closed "))
        assert line.startswith("closed 4408 ")
        line = await out.until(lambda s: s.startswith("welcome "))
        assert line.endswith("resumed=True")
        line = await out.until(lambda s: s.startswith("event "))
        assert "'description': 'lần hai'" in line
        assert point.connection is not None
        assert point.connection is not dropped

        # A staff-only event is not delivered to points; the session's end is, then 4404.
        response = await live.http.post(f"{path}/invitations/00070/revoke")
        assert response.status_code == 200, response.text
        response = await live.http.post(f"{path}/actions/end")
        assert response.status_code == 200, response.text
        line = await out.until(lambda s: s.startswith("event "))
        assert "session.status_changed {'from': 'open', 'to': 'ended', 'command': 'end'}" in line
        line = await out.until(lambda s: s.startswith("stopped: "))
        assert line == "stopped: 4404 session ended"
        assert await asyncio.wait_for(out.process.wait(), 20) == 0
        printed_events = [s for s in out.lines if s.startswith("event ")]
        assert len(printed_events) == 3, out.lines
        assert not any("invitation.revoked" in s for s in out.lines)


def node_with_websocket() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    probe = subprocess.run(
        [
            node,
            "--experimental-websocket",
            "-e",
            "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        unavailable("this node has no WebSocket")
    return node


BROWSER_SHIM = """
globalThis.location = new URL(process.argv[2]);
globalThis.navigator = {userAgent: "node " + process.version};
globalThis.addEventListener = () => {};
globalThis.showSession = (s) => console.log(`session ${s.title} (${s.status})`);
globalThis.applyEvent = (m) => console.log(`event ${m.seq} ${m.event} ${JSON.stringify(m.payload)}`);
globalThis.showStopped = (code, reason) => { console.log(`stopped ${code} ${reason}`); process.exit(0); };
"""


async def test_browser_snippet_joins_and_stops(live: LiveServer, tmp_path: Path) -> None:
    node = node_with_websocket()
    script = tmp_path / "point.mjs"
    script.write_text(BROWSER_SHIM + code_block("js browser-client"), encoding="utf-8")
    path = f"/api/v1/sessions/{live.session_id}"
    link = live.links["00070"]
    async with client_process(node, "--experimental-websocket", str(script), link) as out:
        line = await out.until(lambda s: s.startswith("session "))
        assert line == "session Đối thoại thử (open)"
        point = live.state.signaling.rooms[live.session_id].by_code["00070"]
        await wait_for(
            lambda: (
                point.connection is not None
                and point.connection.rtt_ms is not None
                and point.presence.state.value == "online"
            )
        )
        response = await live.http.patch(path, json={"hall_name": "Hội trường A"})
        assert response.status_code == 200, response.text
        line = await out.until(lambda s: s.startswith("event "))
        assert line.endswith('session.updated {"changes":{"hall_name":"Hội trường A"}}')
        response = await live.http.post(f"{path}/invitations/00070/revoke")
        assert response.status_code == 200, response.text
        line = await out.until(lambda s: s.startswith("stopped "))
        assert line == "stopped 4410 credential revoked or rotated"
        assert await asyncio.wait_for(out.process.wait(), 20) == 0
