"""The web app, served by the service itself: plain ES modules and CSS, no build step.

Every page is a static file; what differs between users comes over the API and the WebSocket. The
join link's credential travels in the URL fragment (`/join#dc1_…`), which browsers never send to a
server, so it appears in no access log or proxy.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
# Pages change with the service; the browser must ask again rather than run yesterday's script.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/join")
async def point_page() -> FileResponse:
    """The ward staff's page, opened from the join link."""
    return FileResponse(STATIC / "point.html", headers=NO_CACHE)


@router.get("/login")
async def login_page() -> FileResponse:
    return FileResponse(STATIC / "login.html", headers=NO_CACHE)


@router.get("/console")
async def console_page() -> FileResponse:
    """The hall operator's console (the page asks for a login itself)."""
    return FileResponse(STATIC / "console.html", headers=NO_CACHE)


@router.get("/moderator")
async def moderator_page() -> FileResponse:
    return FileResponse(STATIC / "moderator.html", headers=NO_CACHE)


@router.get("/hall")
async def hall_page() -> FileResponse:
    return FileResponse(STATIC / "hall.html", headers=NO_CACHE)


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
