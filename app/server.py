"""The uvicorn configuration the service runs with, shared by `diemcau serve`, tests and benchmarks."""

from __future__ import annotations

import uvicorn

from app.main import create_app
from app.settings import Settings


def server_config(settings: Settings, **overrides: object) -> uvicorn.Config:
    """One heartbeat (ours, in the protocol) instead of two; no per-message compression, which
    costs memory and CPU per connection for small JSON; uvicorn refuses oversized messages (1009).
    The sans-I/O WebSocket protocol is named, not left to "auto": broadcasts write their one frame
    straight to its transports (signaling.wsframe)."""
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_ping_interval": None,
        "ws_ping_timeout": None,
        "ws_per_message_deflate": False,
        "ws": "websockets-sansio",
        "timeout_graceful_shutdown": 10,
        **overrides,
    }
    return uvicorn.Config(create_app(settings), **options)  # type: ignore[arg-type]
