"""Join credentials: 256 random bits, shown once, stored as SHA-256.

A slow password hash is not needed: the secret is random and long, so a fast hash cannot be brute
forced, and a fast hash lets the server find the invitation by an indexed lookup.
The `dc1_` prefix makes a leaked credential recognisable to scanners and to our log scrubber.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "dc1_"
_SHAPE = re.compile(r"^dc1_[A-Za-z0-9_\-]{43}$")


def new_credential() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def looks_like_credential(value: str) -> bool:
    return bool(_SHAPE.fullmatch(value))


def hash_credential(credential: str) -> str:
    return hashlib.sha256(credential.encode("ascii", "replace")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def join_link(public_url: str, credential: str) -> str:
    """The link ward staff open; the credential sits in the fragment, which browsers never send."""
    return f"{public_url.rstrip('/')}/join#{credential}"
