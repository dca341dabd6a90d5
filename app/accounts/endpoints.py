"""Staff accounts, for admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

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


@router.patch("/{account_id}", response_model=AccountRead)
async def update_account(account_id: int, body: AccountUpdate, db: Db, _: Admin) -> AccountRead:
    return AccountRead.model_validate(await service.update_account(db, account_id, body))


@router.post("/{account_id}/password", response_model=AccountCreated)
async def change_password(
    account_id: int, body: PasswordChange, db: Db, state: State, _: Admin
) -> AccountCreated:
    account, generated = await service.set_password(
        db,
        account_id,
        body.password,
        passwords=state.passwords,
        min_length=state.settings.password_min_length,
    )
    return AccountCreated(account=AccountRead.model_validate(account), generated_password=generated)
