"""WHIP tests: the app over httpx's ASGI transport (its state reachable), and the live server.

The live-server fixtures are those of tests/integration, imported so that pytest finds them here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from app.state import ServiceState
from models import Role
from tests.conftest import create_staff, login
from tests.integration.conftest import live_db, live_server, start_live

__all__ = ["Whip", "live_db", "live_server", "start_live"]

API = "/api/v1"
SDP = "application/sdp"


@dataclass
class Whip:
    """The app, a client for it, and one staff header per role."""

    app: FastAPI
    http: httpx.AsyncClient
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def state(self) -> ServiceState:
        state: ServiceState = self.app.state.diemcau
        return state

    @property
    def op(self) -> dict[str, str]:
        return self.headers["operator"]

    async def session(self, *, open_: bool = True, title: str = "Đối thoại") -> int:
        response = await self.http.post(f"{API}/sessions", json={"title": title}, headers=self.op)
        assert response.status_code == 201, response.text
        session_id: int = response.json()["id"]
        if open_:
            await self.action(session_id, "open")
        return session_id

    async def action(self, session_id: int, command: str) -> None:
        response = await self.http.post(
            f"{API}/sessions/{session_id}/actions/{command}", headers=self.op
        )
        assert response.status_code == 200, response.text

    async def mint(self, session_id: int, label: str = "OBS") -> dict[str, Any]:
        response = await self.http.post(
            f"{API}/sessions/{session_id}/whip-tokens", json={"label": label}, headers=self.op
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def tokens(self, session_id: int) -> dict[str, Any]:
        response = await self.http.get(f"{API}/sessions/{session_id}/whip-tokens", headers=self.op)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def revoke(self, session_id: int, token_id: int) -> httpx.Response:
        return await self.http.delete(
            f"{API}/sessions/{session_id}/whip-tokens/{token_id}", headers=self.op
        )

    async def events(self, session_id: int) -> list[dict[str, Any]]:
        response = await self.http.get(f"{API}/sessions/{session_id}/events", headers=self.op)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def post_offer(
        self,
        session_id: int,
        sdp: str | bytes,
        token: str | None,
        content_type: str = SDP,
        **headers: str,
    ) -> httpx.Response:
        sent = {"Content-Type": content_type, **headers}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        body = sdp.encode() if isinstance(sdp, str) else sdp
        return await self.http.post(f"{API}/whip/{session_id}", content=body, headers=sent)


@pytest.fixture
async def whip(settings: Settings) -> AsyncIterator[Whip]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://diemcau.test") as http:
            found = Whip(app, http)
            for role in Role:
                await create_staff(settings, role.value, role)
                found.headers[role.value] = await login(http, role.value)
            yield found
