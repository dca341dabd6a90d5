"""Request-scoped dependencies: the service state, a database session, the acting principal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import StaffPrincipal
from app.auth.tokens import decode_access_token
from app.errors import Forbidden, Unauthenticated
from app.events.service import PENDING_EVENTS
from app.state import ServiceState
from models import Account, Role


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.diemcau
    return state


State = Annotated[ServiceState, Depends(get_state)]


async def get_db(state: State) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent (scope="function").

    A failed commit therefore becomes an error response instead of a success that was not kept.
    """
    async with state.sessions() as db:
        try:
            yield db
            await db.commit()
        except BaseException:
            await db.rollback()
            raise
        committed = db.info.pop(PENDING_EVENTS, None)
        if committed:
            state.signaling.publish_committed(committed)


Db = Annotated[AsyncSession, Depends(get_db, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="Staff access token from /api/v1/auth/login")


async def get_principal(
    state: State,
    db: Db,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> StaffPrincipal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("a staff access token is required")
    claims = decode_access_token(state.settings.secret(), credentials.credentials)
    account = await db.get(Account, claims.account_id)
    if account is None or not account.active or account.token_generation != claims.generation:
        raise Unauthenticated("access token no longer valid", details={"reason": "revoked"})
    return StaffPrincipal(account_id=account.id, username=account.username, role=account.role)


def require(roles: frozenset[Role]) -> Callable[..., Coroutine[Any, Any, StaffPrincipal]]:
    async def _check(
        principal: Annotated[StaffPrincipal, Depends(get_principal)],
    ) -> StaffPrincipal:
        if principal.role not in roles:
            raise Forbidden(
                "your role may not do this",
                details={"role": principal.role.value, "allowed": sorted(r.value for r in roles)},
            )
        return principal

    return _check


def page_params(
    state: State,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> tuple[int, int]:
    return min(limit, state.settings.max_page_size), offset


Page = Annotated[tuple[int, int], Depends(page_params)]
