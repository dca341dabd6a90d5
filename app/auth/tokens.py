"""Short-lived staff access tokens (JWT, HS256).

A token names the account and its token generation; bumping the generation (password change,
deactivation, role change) ends every token issued before it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from app.errors import Unauthenticated
from models import Role

ALGORITHM = "HS256"
AUDIENCE = "diemcau-staff"


@dataclass(frozen=True)
class AccessClaims:
    account_id: int
    generation: int
    role: Role
    expires_at: int


def issue_access_token(
    secret: str,
    *,
    account_id: int,
    generation: int,
    role: Role,
    ttl_s: int,
    now: float | None = None,
) -> tuple[str, int]:
    issued = int(now if now is not None else time.time())
    expires = issued + ttl_s
    token = jwt.encode(
        {
            "sub": str(account_id),
            "gen": generation,
            "role": role.value,
            "iat": issued,
            "exp": expires,
            "aud": AUDIENCE,
            "typ": "access",
        },
        secret,
        algorithm=ALGORITHM,
    )
    return token, expires


def decode_access_token(secret: str, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "exp", "iat", "aud"]},
        )
        if claims.get("typ") != "access":
            raise Unauthenticated("not an access token")
        return AccessClaims(
            account_id=int(claims["sub"]),
            generation=int(claims["gen"]),
            role=Role(claims["role"]),
            expires_at=int(claims["exp"]),
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("access token expired", details={"reason": "expired"}) from None
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        raise Unauthenticated("invalid access token", details={"reason": "invalid"}) from None
