"""A real diemcau server on loopback and real WebSocket clients (the `websockets` library) for it.

`live_server` runs uvicorn with the service's own configuration (`app.server.server_config`) as a task
in the test's event loop, prepares data through the real HTTP API (staff accounts, the 526 wards of
Hà Nội, one open session with join links) and hands out connected clients. Settings and the data to
prepare are overridden by indirect parametrization:

    @pytest.mark.parametrize("live_server", [{"heartbeat_interval_s": 0.2}], indirect=True)

Keys `invite` (an invitation selector), `open` (open the session) and `prepare` (False: nothing) shape
the data; every other key is a Settings field. The database is SQLite unless `live_db` is
parametrized with "postgresql". `start_live` starts further servers (e.g. on the same database).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.server import server_config
from app.settings import Settings
from app.state import ServiceState
from models import PresenceInterval, Role
from models.engine import create_engine, session_factory
from tests.conftest import HANOI_CSV, create_staff, login, make_settings

WS_PATH = "/api/v1/ws"
WAIT_S = 5.0
WALL_ROLES = ("operator", "moderator", "observer")
HANOI_POINTS = 526
# The first ward of the file: a name with diacritics that must survive the whole trip.
PHUC_XA = "00001"


# ---- clients ---------------------------------------------------------------------------------


class ClosedError(AssertionError):
    """The connection closed while a message was awaited."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


def _close_of(exc: ConnectionClosed) -> tuple[int | None, str]:
    frame = exc.rcvd
    if frame is None:
        return None, ""
    return frame.code, frame.reason


async def recv_until(
    ws: ClientConnection,
    type_: str,
    within: float = WAIT_S,
    *,
    where: Callable[[dict[str, Any]], bool] | None = None,
    seen: list[dict[str, Any]] | None = None,
    answer_pings: bool = True,
) -> dict[str, Any]:
    """The next message of this type (and matching `where`); server pings are answered meanwhile.

    Every other message received on the way is appended to `seen` (when given).
    """
    async with asyncio.timeout(within):
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed as exc:
                raise ClosedError(*_close_of(exc)) from None
            assert isinstance(raw, str), raw
            message: dict[str, Any] = json.loads(raw)
            if message.get("type") == "ping" and "nonce" in message:
                if answer_pings:
                    await ws.send(json.dumps({"type": "pong", "nonce": message["nonce"]}))
                continue
            if message.get("type") == type_ and (where is None or where(message)):
                return message
            if seen is not None:
                seen.append(message)


@dataclass
class Client:
    """One WebSocket with what it has received so far (server pings aside)."""

    ws: ClientConnection
    answer_pings: bool = True
    pings: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    welcome: dict[str, Any] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)

    async def send(self, message: object) -> None:
        await self.ws.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def until(
        self,
        type_: str,
        within: float = WAIT_S,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        message = await recv_until(
            self.ws, type_, within, where=where, seen=self.seen, answer_pings=self.answer_pings
        )
        self.seen.append(message)
        return message

    async def next(self, within: float = WAIT_S) -> dict[str, Any]:
        """The next message other than a server ping."""
        async with asyncio.timeout(within):
            while True:
                try:
                    raw = await self.ws.recv()
                except ConnectionClosed as exc:
                    raise ClosedError(*_close_of(exc)) from None
                assert isinstance(raw, str), raw
                message: dict[str, Any] = json.loads(raw)
                if message.get("type") == "ping" and "nonce" in message:
                    self.pings += 1
                    if self.answer_pings:
                        await self.send({"type": "pong", "nonce": message["nonce"]})
                    continue
                self.seen.append(message)
                return message

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Everything (but pings) received during `seconds`; the connection must stay open."""
        got: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    got.append(await self.next(seconds + 1))
        return got

    async def closed(self, within: float = WAIT_S) -> tuple[int | None, str]:
        """Read (answering pings) until the server closes; its close code and reason."""
        try:
            while True:
                await self.next(within)
        except ClosedError as exc:
            return exc.code, exc.reason

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.seen
            if m.get("type") == "event" and (name is None or m.get("event") == name)
        ]

    async def request(self, message: dict[str, Any], within: float = WAIT_S) -> dict[str, Any]:
        """Send a request with an id; its `ack` or `error` (other messages go to `seen`)."""
        await self.send(message)
        request_id = message["id"]
        async with asyncio.timeout(within):
            while True:
                message = await self.next(within)
                if message.get("type") in ("ack", "error") and message.get("id") == request_id:
                    return message

    async def wall(self, within: float = WAIT_S) -> dict[str, Any]:
        """A fresh wall.snapshot via `wall.get`."""
        await self.send({"type": "wall.get", "id": "wall"})
        snapshot = await self.until("wall.snapshot", within)
        await self.until("ack", within, where=lambda m: m.get("id") == "wall")
        return snapshot

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


def point_hello(credential: str, last_seq: int | None = None, **extra: Any) -> dict[str, Any]:
    hello: dict[str, Any] = {
        "type": "hello",
        "id": "h1",
        "protocol": 1,
        "auth": {"kind": "point", "credential": credential},
        "client": {"name": "diemcau-test", "version": "1", "user_agent": "pytest"},
    }
    if last_seq is not None:
        hello["last_seq"] = last_seq
    hello.update(extra)
    return hello


def staff_hello(
    token: str, session_id: int, role: str | None = None, last_seq: int | None = None
) -> dict[str, Any]:
    auth: dict[str, Any] = {"kind": "staff", "token": token, "session_id": session_id}
    if role is not None:
        auth["role"] = role
    hello: dict[str, Any] = {"type": "hello", "id": "h1", "protocol": 1, "auth": auth}
    if last_seq is not None:
        hello["last_seq"] = last_seq
    return hello


def wall_point(wall: dict[str, Any], code: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in wall["points"] if p["code"] == code]
    assert len(found) == 1, (code, found)
    return found[0]


# ---- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Live:
    settings: Settings
    server: uvicorn.Server
    app: FastAPI
    http: httpx.AsyncClient
    base_url: str
    ws_url: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    session_id: int = 0
    credentials: dict[str, str] = field(default_factory=dict)
    clients: list[Client] = field(default_factory=list)

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.app.state.diemcau
        return state

    @property
    def op(self) -> dict[str, str]:
        return self.headers["operator"]

    # ---- HTTP ------------------------------------------------------------------------------

    async def login_all(self) -> None:
        for role in Role:
            self.headers[role.value] = await login(self.http, role.value)
            self.tokens[role.value] = self.headers[role.value]["Authorization"].split(" ", 1)[1]

    async def new_session(
        self, title: str, invite: dict[str, Any] | None, *, open_: bool = True
    ) -> tuple[int, dict[str, str]]:
        """A session with invitations and join links (code → credential), opened if asked."""
        response = await self.http.post(
            "/api/v1/sessions",
            json={"title": title, "hall_name": "Hội trường Thành ủy"},
            headers=self.op,
        )
        assert response.status_code == 201, response.text
        session_id: int = response.json()["id"]
        credentials: dict[str, str] = {}
        if invite is not None:
            response = await self.http.post(
                f"/api/v1/sessions/{session_id}/invitations", json=invite, headers=self.op
            )
            assert response.status_code == 200, response.text
            credentials = await self.join_links(session_id)
        if open_:
            await self.action(session_id, "open")
        return session_id, credentials

    async def join_links(self, session_id: int, **body: Any) -> dict[str, str]:
        response = await self.http.post(
            f"/api/v1/sessions/{session_id}/join-links", json=body, headers=self.op
        )
        assert response.status_code == 200, response.text
        return {link["point_code"]: link["credential"] for link in response.json()["links"]}

    async def action(self, session_id: int, command: str) -> dict[str, Any]:
        response = await self.http.post(
            f"/api/v1/sessions/{session_id}/actions/{command}", headers=self.op
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def patch(self, session_id: int | None = None, **fields: Any) -> dict[str, Any]:
        response = await self.http.patch(
            f"/api/v1/sessions/{session_id or self.session_id}", json=fields, headers=self.op
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def get_session(self, session_id: int | None = None) -> dict[str, Any]:
        response = await self.http.get(
            f"/api/v1/sessions/{session_id or self.session_id}", headers=self.op
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def metrics(self) -> dict[str, float]:
        """Samples of /metrics keyed like `name{label="value"}` (labels sorted)."""
        response = await self.http.get("/metrics")
        assert response.status_code == 200, response.text
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    async def intervals(self, session_id: int | None = None) -> list[PresenceInterval]:
        engine = create_engine(self.settings.effective_database_url)
        try:
            async with session_factory(engine)() as db:
                rows = await db.scalars(
                    select(PresenceInterval)
                    .where(PresenceInterval.session_id == (session_id or self.session_id))
                    .order_by(PresenceInterval.id)
                )
                return list(rows)
        finally:
            await engine.dispose()

    # ---- WebSockets ------------------------------------------------------------------------

    async def connect(self, *, answer_pings: bool = True, **options: Any) -> Client:
        options = {
            "ping_interval": None,
            "open_timeout": WAIT_S,
            "close_timeout": 2,
            "proxy": None,
            "compression": None,
            **options,
        }
        ws = await connect(self.ws_url, **options)
        client = Client(ws, answer_pings=answer_pings)
        self.clients.append(client)
        return client

    async def hello_point(
        self, credential: str, last_seq: int | None = None, *, answer_pings: bool = True
    ) -> Client:
        """A point connected and welcomed (asserted)."""
        client = await self.connect(answer_pings=answer_pings)
        await client.send(point_hello(credential, last_seq))
        client.welcome = await client.next()
        assert client.welcome["type"] == "welcome", client.welcome
        return client

    async def hello_staff(
        self,
        token: str | None = None,
        session_id: int | None = None,
        role: str | None = None,
        *,
        last_seq: int | None = None,
        answer_pings: bool = True,
    ) -> Client:
        """A staff connection welcomed (asserted), its replay read into `seen`, then its
        wall.snapshot if its role has a wall."""
        client = await self.connect(answer_pings=answer_pings)
        await client.send(
            staff_hello(
                token or self.tokens["operator"], session_id or self.session_id, role, last_seq
            )
        )
        client.welcome = await client.next()
        assert client.welcome["type"] == "welcome", client.welcome
        for _ in range(client.welcome["replayed"]):
            assert (await client.next())["type"] == "event"
        if client.welcome["role"] in WALL_ROLES:
            client.snapshot = await client.next()
            assert client.snapshot["type"] == "wall.snapshot", client.snapshot
        return client

    async def stop(self, task: asyncio.Task[None]) -> None:
        for client in self.clients:
            await client.close()
        await self.http.aclose()
        self.server.should_exit = True
        async with asyncio.timeout(20):
            await task


Start = Callable[..., Awaitable[Live]]


@pytest.fixture(params=["sqlite"])
def live_db(request: pytest.FixtureRequest) -> str:
    """The database URL of the live server: SQLite, or parametrized with "postgresql"."""
    name = "postgres_url" if request.param == "postgresql" else "sqlite_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def start_live(tmp_path: Path, live_db: str) -> AsyncIterator[Start]:
    running: list[tuple[Live, asyncio.Task[None]]] = []

    async def start(**options: Any) -> Live:
        prepare = options.pop("prepare", True)
        invite = options.pop("invite", {"all": True})
        open_ = options.pop("open", True)
        port = free_port()
        settings = make_settings(
            tmp_path, live_db, host="127.0.0.1", port=port, log_level="WARNING", **options
        )
        config = server_config(settings)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(), name=f"uvicorn-{port}")
        async with asyncio.timeout(20):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the server stopped before it started")
                await asyncio.sleep(0.01)
        base_url = f"http://127.0.0.1:{port}"
        app = config.app
        assert isinstance(app, FastAPI)
        live = Live(
            settings=settings,
            server=server,
            app=app,
            http=httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30),
            base_url=base_url,
            ws_url=f"ws://127.0.0.1:{port}{WS_PATH}",
        )
        running.append((live, task))
        if prepare:
            for role in Role:
                await create_staff(settings, role.value, role)
            await live.login_all()
            response = await live.http.post(
                "/api/v1/points/import",
                content=HANOI_CSV.read_bytes(),
                headers={**live.op, "Content-Type": "text/csv"},
            )
            assert response.status_code == 200, response.text
            assert response.json()["created"] == HANOI_POINTS
            live.session_id, live.credentials = await live.new_session(
                "Đối thoại trực tuyến với Thành ủy", invite, open_=open_
            )
        return live

    yield start
    for live, task in reversed(running):
        await live.stop(task)


@pytest.fixture
async def live_server(request: pytest.FixtureRequest, start_live: Start) -> Live:
    options: dict[str, Any] = dict(getattr(request, "param", {}))
    return await start_live(**options)
