"""Staff login and the current account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.accounts import service as accounts
from app.accounts.schemas import AccountRead, LoginRequest, LoginResponse
from app.auth.principal import STAFF, StaffPrincipal
from app.auth.tokens import issue_access_token
from app.deps import Db, State, require
from app.errors import TooManyRequests, Unauthenticated

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=LoginResponse)
async def login(body: LoginRequest, request: Request, state: State, db: Db) -> LoginResponse:
    # Per username and address: guessing from one address is slowed down, while someone typing
    # wrong passwords elsewhere cannot lock the hall operator out of the control desk.
    address = request.client.host if request.client else "-"
    key = f"{body.username.strip().lower()}|{address}"
    wait = state.login_throttle.retry_after(key)
    if wait is not None:
        raise TooManyRequests(
            "too many failed logins for this account; try again later",
            details={"retry_after_s": round(wait)},
        )
    account = await accounts.authenticate(
        db, body.username, body.password, passwords=state.passwords
    )
    if account is None:
        state.login_throttle.failed(key)
        raise Unauthenticated("wrong username or password")
    state.login_throttle.succeeded(key)
    ttl = state.settings.access_token_ttl_s
    token, expires_at = issue_access_token(
        state.settings.secret(),
        account_id=account.id,
        generation=account.token_generation,
        role=account.role,
        ttl_s=ttl,
    )
    return LoginResponse(
        access_token=token,
        expires_in=ttl,
        expires_at=expires_at,
        account=AccountRead.model_validate(account),
    )


@router.get("/me", response_model=AccountRead)
async def me(db: Db, principal: Annotated[StaffPrincipal, Depends(require(STAFF))]) -> AccountRead:
    return AccountRead.model_validate(await accounts.get_account(db, principal.account_id))
