"""Composition root: create_app(settings) wires settings, database, routers and error handling."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, FastAPI, Response, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.accounts.endpoints import router as accounts_router
from app.auth.endpoints import router as auth_router
from app.auth.passwords import Passwords
from app.auth.throttle import LoginThrottle
from app.deps import State
from app.errors import DiemcauError
from app.events.endpoints import router as events_router
from app.floor.endpoints import router as floor_router
from app.http_errors import ErrorBody, install_error_handlers
from app.invitations.endpoints import join_router
from app.invitations.endpoints import router as invitations_router
from app.media_stats.endpoints import router as media_stats_router
from app.middleware import BodySizeLimit, RequestContext
from app.points.endpoints import IMPORT_PATH
from app.points.endpoints import router as points_router
from app.readiness.endpoints import router as readiness_router
from app.rollcall.endpoints import router as rollcall_router
from app.sessions.endpoints import router as sessions_router
from app.settings import Settings
from app.state import ServiceState
from app.web import routes as web
from app.whip.endpoints import router as whip_router
from media.factory import create_backend
from migrations.runner import head_revision
from models.engine import create_engine, reader_factory, session_factory
from signaling import protocol
from signaling.hub import LogTailHub
from signaling.media import MediaGateway
from signaling.service import Signaling

logger = logging.getLogger("diemcau")
API_PREFIX = "/api/v1"
VERSION = "0.1.0"


class SchemaOutOfDate(RuntimeError):
    pass


async def _check_schema(state: ServiceState) -> None:
    async with state.engine.connect() as conn:
        current = await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )
    head = head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at {current or 'nothing'}, the code needs {head}: run `diemcau migrate`"
        )


def create_app(settings: Settings) -> FastAPI:
    settings = settings.with_secret()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.effective_database_url)
        sessions = session_factory(engine)
        hub = LogTailHub(reader_factory(engine), poll_interval_s=settings.event_poll_interval_s)
        media = create_backend(settings)
        state = ServiceState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            passwords=Passwords(
                time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib
            ),
            login_throttle=LoginThrottle(
                max_failures=settings.login_max_failures, window_s=settings.login_failure_window_s
            ),
            signaling=Signaling(
                settings,
                sessions,
                hub,
                readers=reader_factory(engine),
                media=MediaGateway(settings, media),
            ),
            media=media,
        )
        try:
            await _check_schema(state)
            await media.start()
            try:
                await state.signaling.start()
                app.state.diemcau = state
                try:
                    yield
                finally:
                    await state.signaling.stop()
            finally:
                await media.stop()
        finally:
            await engine.dispose()

    error_responses: dict[int | str, dict[str, object]] = {
        status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 429)
    }
    app = FastAPI(
        title="diemcau",
        version=VERSION,
        summary="Coordinator for hybrid dialogue conferences with many connection points",
        lifespan=lifespan,
        responses=error_responses,
    )
    install_error_handlers(app)

    api = APIRouter(prefix=API_PREFIX)
    for router in (
        auth_router,
        accounts_router,
        points_router,
        sessions_router,
        invitations_router,
        events_router,
        join_router,
        whip_router,
        media_stats_router,
        floor_router,
        rollcall_router,
        readiness_router,
    ):
        api.include_router(router)
    app.include_router(api)

    @app.get("/healthz", tags=["health"])
    async def healthz(state: State) -> dict[str, str]:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "ok", "version": VERSION}

    @app.websocket(f"{API_PREFIX}/ws")
    async def live(websocket: WebSocket) -> None:
        state: ServiceState = websocket.app.state.diemcau
        await state.signaling.handle(websocket)

    @app.get(f"{API_PREFIX}/ws/schema.json", tags=["live"])
    async def live_schema() -> dict[str, Any]:
        """The JSON Schema of every message on /api/v1/ws (see docs/protocol.md)."""
        return protocol.json_schema()

    @app.get("/metrics", include_in_schema=False)
    async def metrics(state: State) -> Response:
        with contextlib.suppress(DiemcauError):  # a dead media worker must not hide the rest
            state.signaling.metrics.observe_media(await state.media.backend_stats())
        return Response(
            generate_latest(state.signaling.metrics.registry), media_type=CONTENT_TYPE_LATEST
        )

    web.mount(app)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console")

    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.effective_origins,
        allow_methods=["GET", "POST", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        # WHIP clients in browsers read the resource URL, its ETag and the ICE servers.
        expose_headers=["X-Request-ID", "Location", "ETag", "Link"],
    )

    def body_limit(path: str) -> int:
        return settings.max_import_bytes if path == IMPORT_PATH else settings.max_body_bytes

    app.add_middleware(BodySizeLimit, limit_for=body_limit)
    app.add_middleware(RequestContext)
    return app
