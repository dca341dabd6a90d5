"""WHIP bearer tokens: 256 random bits, shown once, stored as SHA-256 — like join credentials.

A slow password hash is not needed: the secret is random and long, so a fast hash cannot be brute
forced, and a fast hash lets a WHIP request find its token by an indexed lookup.

The prefix `dc1_whip_` is recognisable to secret scanners, and it starts with the join credentials'
`dc1_`, so the log scrubber (app/logging_setup.py) already redacts it with no change there. It can
never be taken for a join credential: that shape is `dc1_` plus exactly 43 characters.
"""

from __future__ import annotations

import re
import secrets

from bridges.invitations.credentials import hash_credential

PREFIX = "dc1_whip_"
_SHAPE = re.compile(r"^dc1_whip_[A-Za-z0-9_\-]{43}$")


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def looks_like_token(value: str) -> bool:
    """A cheap check before the database: garbage never costs a query."""
    return bool(_SHAPE.fullmatch(value))


def hash_token(token: str) -> str:
    return hash_credential(token)
