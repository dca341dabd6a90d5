"""Staff accounts: create, list, change role or password, deactivate, authenticate."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.schemas import AccountCreate, AccountUpdate
from app.auth.passwords import Passwords, generate_password
from app.errors import Conflict, NotFound, ValidationFailed
from models import Account, Role
from models.base import utcnow


def check_password_strength(password: str, *, min_length: int, username: str) -> None:
    problems = []
    if len(password) < min_length:
        problems.append(f"at least {min_length} characters")
    if password.casefold() == username.casefold():
        problems.append("different from the username")
    if problems:
        raise ValidationFailed(
            "the password must be " + " and ".join(problems), details={"field": "password"}
        )


async def get_account(db: AsyncSession, account_id: int, *, for_update: bool = False) -> Account:
    account = await db.get(Account, account_id, with_for_update=True if for_update else None)
    if account is None:
        raise NotFound("account not found", details={"account_id": account_id})
    return account


async def find_by_username(db: AsyncSession, username: str) -> Account | None:
    return await db.scalar(select(Account).where(Account.username == username.strip().lower()))


async def list_accounts(db: AsyncSession) -> Sequence[Account]:
    return (await db.scalars(select(Account).order_by(Account.username))).all()


async def count_accounts(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Account)) or 0)


async def create_account(
    db: AsyncSession, data: AccountCreate, *, passwords: Passwords, min_length: int
) -> tuple[Account, str | None]:
    """Create an account; returns the generated password when none was given."""
    username = data.username.lower()
    if await find_by_username(db, username) is not None:
        raise Conflict("username taken", details={"username": username})
    generated = None
    password = data.password
    if password is None:
        password = generated = generate_password()
    check_password_strength(password, min_length=min_length, username=username)
    account = Account(
        username=username,
        display_name=data.display_name,
        role=data.role,
        password_hash=await passwords.hash(password),
        active=True,
        token_generation=0,
    )
    db.add(account)
    await db.flush()
    return account, generated


async def _other_active_admins(db: AsyncSession, account_id: int) -> int:
    # Row locks on PostgreSQL, so two admins demoting each other at once cannot leave none.
    rows = await db.scalars(
        select(Account.id)
        .where(Account.role == Role.ADMIN, Account.active.is_(True), Account.id != account_id)
        .with_for_update()
    )
    return len(rows.all())


async def update_account(db: AsyncSession, account_id: int, data: AccountUpdate) -> Account:
    account = await get_account(db, account_id, for_update=True)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    losing_admin = (
        account.role is Role.ADMIN
        and account.active
        and (changes.get("role", Role.ADMIN) is not Role.ADMIN or changes.get("active") is False)
    )
    if losing_admin and await _other_active_admins(db, account.id) == 0:
        raise Conflict("the last active admin cannot be demoted or deactivated")
    revoke_tokens = ("role" in changes and changes["role"] is not account.role) or (
        changes.get("active") is False
    )
    for key, value in changes.items():
        setattr(account, key, value)
    if revoke_tokens:
        account.token_generation += 1
    await db.flush()
    return account


async def set_password(
    db: AsyncSession,
    account_id: int,
    password: str | None,
    *,
    passwords: Passwords,
    min_length: int,
) -> tuple[Account, str | None]:
    account = await get_account(db, account_id)
    generated = None
    if password is None:
        password = generated = generate_password()
    check_password_strength(password, min_length=min_length, username=account.username)
    account.password_hash = await passwords.hash(password)
    account.token_generation += 1
    await db.flush()
    return account, generated


async def authenticate(
    db: AsyncSession, username: str, password: str, *, passwords: Passwords
) -> Account | None:
    account = await find_by_username(db, username)
    valid = await passwords.verify(account.password_hash if account else None, password)
    if account is None or not valid or not account.active:
        return None
    account.last_login_at = utcnow()
    await db.flush()
    return account
