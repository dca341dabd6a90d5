"""Property tests of the HTTP edge: whatever arrives, the answer is typed and below 500.

Hypothesis throws arbitrary JSON, bytes, path segments, CSV files and query strings at every route
of one running app (SQLite), and checks after each example that a refused request changed no row.
The client re-raises server exceptions, so a 500 fails loudly with its traceback.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy.engine import make_url

from app.main import create_app
from app.sessions.lifecycle import LifecycleCommand
from models import Base, Role
from tests.conftest import TEST_PASSWORD, create_staff, make_settings

with warnings.catch_warnings():
    # Starlette asks for httpx2 for its TestClient and warns when it runs on httpx (this venv).
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

API = "/api/v1"
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
Snapshot = dict[str, list[tuple[Any, ...]]]


@dataclass
class Running:
    client: TestClient
    admin: dict[str, str]
    database: Path
    session_id: int
    target_account_id: int
    body_models: dict[tuple[str, str], type[BaseModel]]
    writes: list[tuple[str, str]]  # (method, path template) of every POST and PATCH route

    def snapshot(self) -> Snapshot:
        """Every row of every table, straight from the file."""
        with closing(sqlite3.connect(self.database)) as conn:
            return {
                table.name: conn.execute(
                    f'SELECT * FROM "{table.name}" ORDER BY '
                    + ", ".join(c.name for c in table.primary_key.columns)
                ).fetchall()
                for table in Base.metadata.sorted_tables
            }

    def path(self, template: str, command: str = "open") -> str:
        return template.format(
            session_id=self.session_id,
            account_id=self.target_account_id,
            code="P001",
            command=command,
            token_id=1,
            resource_id="r1",
            number=1,
            point_code="P001",
        )


@contextmanager
def running(tmp_path: Path, sqlite_url: str) -> Iterator[Running]:
    """One app for the whole test function: points P001–P003, a draft session inviting P001."""
    app_settings = make_settings(tmp_path, sqlite_url)
    asyncio.run(create_staff(app_settings, "admin", Role.ADMIN))
    app = create_app(app_settings)
    body_models: dict[tuple[str, str], type[BaseModel]] = {}
    writes: list[tuple[str, str]] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        for method in route.methods & {"POST", "PATCH"}:
            writes.append((method, context.path))
            if route.body_field is not None:
                body_models[(method, context.path)] = route.body_field.field_info.annotation
    with TestClient(app, base_url="http://diemcau.test", raise_server_exceptions=True) as client:
        response = client.post(
            f"{API}/auth/login", json={"username": "admin", "password": TEST_PASSWORD}
        )
        admin = {"Authorization": f"Bearer {response.json()['access_token']}"}
        for code in ("P001", "P002", "P003"):
            body = {"code": code, "name": f"Phường {code}", "district_code": "D1"}
            assert client.post(f"{API}/points", json=body, headers=admin).status_code == 201
        response = client.post(
            f"{API}/accounts",
            json={"username": "target", "display_name": "Target", "role": "observer"},
            headers=admin,
        )
        target = response.json()["account"]["id"]
        response = client.post(f"{API}/sessions", json={"title": "Phiên"}, headers=admin)
        session_id = response.json()["id"]
        response = client.post(
            f"{API}/sessions/{session_id}/invitations",
            json={"point_codes": ["P001"]},
            headers=admin,
        )
        assert response.status_code == 200
        database = make_url(app_settings.effective_database_url).database
        assert database is not None
        yield Running(
            client=client,
            admin=admin,
            database=Path(database),
            session_id=session_id,
            target_account_id=target,
            body_models=body_models,
            writes=sorted(writes),
        )


def check_answer(world: Running, response: httpx.Response, before: Snapshot) -> None:
    assert response.status_code < 500, response.text
    if response.is_success:
        return
    body = response.json()
    assert isinstance(body["code"], str), body
    assert isinstance(body["message"], str), body
    assert isinstance(body["details"], dict), body
    assert world.snapshot() == before, (response.status_code, body)


# --- strategies -----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    # Values that pass some validators, so examples reach the services.
    | st.sampled_from(
        [
            "P001",
            "P002",
            "D1",
            "admin",
            "observer",
            "open",
            "x" * 300,
            "2030-01-01T08:00:00+07:00",
            "0001-01-01T00:30:00+01:00",
            10,
            180,
            0,
            -1,
            2**63,
            "dc1_" + "A" * 43,
        ]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def model_shaped(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's own field names (nested settings too) and arbitrary values."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        nested = [a for a in getattr(annotation, "__args__", (annotation,)) if _is_model(a)]
        fields[name] = json_values | model_shaped(nested[0]) if nested else json_values
    return st.fixed_dictionaries({}, optional=fields)


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def text_segments() -> st.SearchStrategy[str]:
    """Path segments: any text, url-quoted (slashes too), and some real or near-real ids."""
    return (
        st.text(max_size=40).map(lambda s: quote(s, safe=""))
        | st.integers().map(str)
        | st.sampled_from(["1", "2", "P001", "P002", "%00", "..", ".", "%2F", "%252F", " "])
    )


# --- tests ----------------------------------------------------------------------------------------


def test_arbitrary_json_bodies(tmp_path: Path, sqlite_url: str) -> None:
    with running(tmp_path, sqlite_url) as world:
        bodies: list[tuple[str, str, st.SearchStrategy[Any]]] = []
        for method, template in world.writes:
            model = world.body_models.get((method, template))
            shaped = model_shaped(model) if model is not None else st.nothing()
            bodies.append((method, template, json_values | shaped))
        route = st.sampled_from(range(len(bodies)))
        sent: dict[int, int] = {}

        @settings(max_examples=250, deadline=None, suppress_health_check=HEALTH)
        @given(index=route, data=st.data(), command=st.sampled_from(list(LifecycleCommand)))
        def check(index: int, data: st.DataObject, command: LifecycleCommand) -> None:
            method, template, body = bodies[index]
            value = data.draw(body)
            before = world.snapshot()
            response = world.client.request(
                method,
                world.path(template, command.value),
                content=json.dumps(value).encode(),
                headers={**world.admin, "Content-Type": "application/json"},
            )
            check_answer(world, response, before)
            sent[response.status_code] = sent.get(response.status_code, 0) + 1

        check()
        print("statuses", dict(sorted(sent.items())))
        assert any(200 <= status < 300 for status in sent), sent


def test_arbitrary_bytes_bodies(tmp_path: Path, sqlite_url: str) -> None:
    with running(tmp_path, sqlite_url) as world:
        content_types = st.sampled_from(
            ["application/json", "text/plain", "text/csv", "multipart/form-data; boundary=x", ""]
        )

        @settings(max_examples=150, deadline=None, suppress_health_check=HEALTH)
        @given(
            route=st.sampled_from(world.writes),
            body=st.binary(max_size=600),
            content_type=content_types,
        )
        def check(route: tuple[str, str], body: bytes, content_type: str) -> None:
            method, template = route
            before = world.snapshot()
            headers = {**world.admin}
            if content_type:
                headers["Content-Type"] = content_type
            response = world.client.request(
                method, world.path(template), content=body, headers=headers
            )
            check_answer(world, response, before)

        check()


PARAM_ROUTES = [
    ("GET", "/points/{a}"),
    ("PATCH", "/points/{a}"),
    ("DELETE", "/points/{a}"),
    ("GET", "/sessions/{a}"),
    ("PATCH", "/sessions/{a}"),
    ("DELETE", "/sessions/{a}"),
    ("POST", "/sessions/{a}/actions/{b}"),
    ("GET", "/sessions/{a}/events"),
    ("GET", "/sessions/{a}/invitations"),
    ("POST", "/sessions/{a}/invitations"),
    ("GET", "/sessions/{a}/invitations/{b}"),
    ("POST", "/sessions/{a}/invitations/{b}/revoke"),
    ("POST", "/sessions/{a}/invitations/{b}/credential"),
    ("POST", "/sessions/{a}/join-links"),
    ("GET", "/accounts/{a}"),
    ("PATCH", "/accounts/{a}"),
    ("POST", "/accounts/{a}/password"),
    ("GET", "/sessions/{a}/whip-tokens"),
    ("POST", "/sessions/{a}/whip-tokens"),
    ("DELETE", "/sessions/{a}/whip-tokens/{b}"),
    ("POST", "/whip/{a}"),
    ("DELETE", "/whip/{a}/resources/{b}"),
    ("PATCH", "/whip/{a}/resources/{b}"),
]
# Bodies that are valid where one is needed, so the path parameters reach the services. The
# password is too short: a valid one would end the admin's own token when the id hits it.
PARAM_BODIES = {
    "/sessions/{a}/invitations": {"point_codes": ["P002"]},
    "/sessions/{a}/join-links": {},
    "/accounts/{a}/password": {"password": "short"},
    "/sessions/{a}/whip-tokens": {},
}


def test_arbitrary_path_parameters(tmp_path: Path, sqlite_url: str) -> None:
    with running(tmp_path, sqlite_url) as world:

        @settings(max_examples=250, deadline=None, suppress_health_check=HEALTH)
        @given(route=st.sampled_from(PARAM_ROUTES), a=text_segments(), b=text_segments())
        def check(route: tuple[str, str], a: str, b: str) -> None:
            method, template = route
            before = world.snapshot()
            body = PARAM_BODIES.get(template, {}) if method in ("POST", "PATCH") else None
            response = world.client.request(
                method, API + template.format(a=a, b=b), json=body, headers=world.admin
            )
            check_answer(world, response, before)

        check()
        # The admin token survived every example.
        assert world.client.get(f"{API}/auth/me", headers=world.admin).status_code == 200


HEADERS = [
    "code,name",
    "code,name,district_code,district_name,province_code,province_name",
    "code,name,kind,district_code,district_name,district_kind,province_code,province_name,lat,lon",
    "ma,ten,so dien thoai,suc chua,hoat dong,vi do,kinh do",
    "code;name;capacity;active",
    "code\tname\tcontact_phone",
]
cells = st.text(max_size=12) | st.sampled_from(
    [
        "P001",
        "P9",
        "",
        "  ",
        "1",
        "0",
        "có",
        "không",
        "21.5",
        "200",
        "-5",
        "1e400",
        "NaN",
        "x" * 201,
    ]
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(HEADERS) | st.text(max_size=40))
    delimiter = ";" if ";" in header else "\t" if "\t" in header else ","
    width = header.count(delimiter) + 1
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=width + 1), max_size=8))
    buffer = io.StringIO(newline="")
    writer = csv.writer(
        buffer, delimiter=delimiter, lineterminator=draw(st.sampled_from(["\n", "\r\n"]))
    )
    buffer.write(header + "\n")
    writer.writerows(rows)
    text = buffer.getvalue()
    encoded: bytes = draw(
        st.sampled_from([text.encode(), ("\ufeff" + text).encode(), text.encode("utf-16")])
    )
    return encoded


def test_arbitrary_csv_uploads(tmp_path: Path, sqlite_url: str) -> None:
    with running(tmp_path, sqlite_url) as world:
        outcomes: dict[int, int] = {}

        @settings(max_examples=200, deadline=None, suppress_health_check=HEALTH)
        @given(
            body=st.binary(max_size=800) | csv_files(),
            skip_invalid=st.booleans(),
            dry_run=st.booleans(),
            multipart=st.booleans(),
        )
        def check(body: bytes, skip_invalid: bool, dry_run: bool, multipart: bool) -> None:
            before = world.snapshot()
            params = {"skip_invalid": str(skip_invalid).lower(), "dry_run": str(dry_run).lower()}
            url = f"{API}/points/import?{urlencode(params)}"
            if multipart:
                response = world.client.post(
                    url, files={"file": ("points.csv", body, "text/csv")}, headers=world.admin
                )
            else:
                response = world.client.post(
                    url, content=body, headers={**world.admin, "Content-Type": "text/csv"}
                )
            outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
            assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
            check_answer(world, response, before)
            if response.status_code == 200:
                report = response.json()
                if dry_run or report["created"] + report["updated"] == 0:
                    assert world.snapshot() == before, report
                else:
                    points = len(world.snapshot()["points"])
                    assert points == len(before["points"]) + report["created"], report

        check()
        print("outcomes", dict(sorted(outcomes.items())))
        assert 200 in outcomes, outcomes


LIST_ROUTES = [
    "/points",
    "/points/areas",
    "/sessions",
    "/sessions/{session_id}/invitations",
    "/sessions/{session_id}/events",
    "/accounts",
    "/auth/me",
]
QUERY_KEYS = st.sampled_from(
    ["q", "limit", "offset", "district_code", "province_code", "active", "status", "after_seq"]
) | st.text(max_size=8)
QUERY_VALUES = (
    st.text(max_size=30)
    | st.integers().map(str)
    | st.sampled_from(["", "true", "false", "draft", "live", "%", "_", "\\", "P0", "0", "1e3"])
)


def test_arbitrary_query_strings(tmp_path: Path, sqlite_url: str) -> None:
    with running(tmp_path, sqlite_url) as world:
        before = world.snapshot()

        @settings(max_examples=150, deadline=None, suppress_health_check=HEALTH)
        @given(
            template=st.sampled_from(LIST_ROUTES),
            pairs=st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES), max_size=5),
            raw=st.booleans(),
        )
        def check(template: str, pairs: list[tuple[str, str]], raw: bool) -> None:
            if raw:  # as typed, stray percent signs and all
                query = quote("&".join(f"{k}={v}" for k, v in pairs), safe="=&%+")
            else:
                query = urlencode(pairs)
            response = world.client.get(f"{API}{world.path(template)}?{query}", headers=world.admin)
            check_answer(world, response, before)
            assert world.snapshot() == before

        check()
