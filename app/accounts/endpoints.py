"""Staff accounts, for admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends

from app.accounts import service
from app.accounts.schemas import (
    AccountCreate,
    AccountCreated,
    AccountRead,
    AccountUpdate,
    PasswordChange,
)
from app.auth.principal import ADMINS, StaffPrincipal
from app.deps import Db, State, require
from app.state import ServiceState

router = APIRouter(prefix="/accounts", tags=["accounts"])
Admin = Annotated[StaffPrincipal, Depends(require(ADMINS))]


@router.get("", response_model=list[AccountRead])
async def list_accounts(db: Db, _: Admin) -> list[AccountRead]:
    return [AccountRead.model_validate(a) for a in await service.list_accounts(db)]


@router.post("", response_model=AccountCreated, status_code=201)
async def create_account(body: AccountCreate, db: Db, state: State, _: Admin) -> AccountCreated:
    account, generated = await service.create_account(
        db, body, passwords=state.passwords, min_length=state.settings.password_min_length
    )
    return AccountCreated(account=AccountRead.model_validate(account), generated_password=generated)


@router.get("/{account_id}", response_model=AccountRead)
async def get_account(account_id: int, db: Db, _: Admin) -> AccountRead:
    return AccountRead.model_validate(await service.get_account(db, account_id))


def _end_live_sessions_if_revoked(
    background: BackgroundTasks, state: ServiceState, account_id: int, before: int, after: int
) -> None:
    """A revoked token must not keep a live connection open: closed once the change committed."""
    if after != before:
        background.add_task(state.signaling.close_account, account_id)


@router.patch("/{account_id}", response_model=AccountRead)
async def update_account(
    account_id: int,
    body: AccountUpdate,
    db: Db,
    state: State,
    background: BackgroundTasks,
    _: Admin,
) -> AccountRead:
    before = (await service.get_account(db, account_id)).token_generation
    account = await service.update_account(db, account_id, body)
    _end_live_sessions_if_revoked(background, state, account.id, before, account.token_generation)
    return AccountRead.model_validate(account)


@router.post("/{account_id}/password", response_model=AccountCreated)
async def change_password(
    account_id: int,
    body: PasswordChange,
    db: Db,
    state: State,
    background: BackgroundTasks,
    _: Admin,
) -> AccountCreated:
    before = (await service.get_account(db, account_id)).token_generation
    account, generated = await service.set_password(
        db,
        account_id,
        body.password,
        passwords=state.passwords,
        min_length=state.settings.password_min_length,
    )
    _end_live_sessions_if_revoked(background, state, account.id, before, account.token_generation)
    return AccountCreated(account=AccountRead.model_validate(account), generated_password=generated)
