"""What the running service holds for its lifetime, made in the lifespan and torn down after it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.passwords import Passwords
from app.auth.throttle import LoginThrottle
from app.settings import Settings
from media.interface import MediaBackend
from signaling.service import Signaling


@dataclass
class ServiceState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    login_throttle: LoginThrottle
    signaling: Signaling
    media: MediaBackend
