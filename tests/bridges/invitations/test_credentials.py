"""Join credentials: shape, entropy, hashing and the join link."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

from bridges.invitations.credentials import (
    PREFIX,
    hash_credential,
    join_link,
    looks_like_credential,
    new_credential,
    same_hash,
)

URL_SAFE = re.compile(r"^[A-Za-z0-9_\-]+$")


def test_new_credential_has_prefix_and_256_url_safe_bits() -> None:
    credential = new_credential()
    assert PREFIX == "dc1_"
    assert credential.startswith("dc1_")
    body = credential.removeprefix("dc1_")
    assert len(body) == 43
    assert URL_SAFE.fullmatch(body)
    raw = base64.urlsafe_b64decode(body + "=")
    assert len(raw) == 32  # 256 bits
    assert looks_like_credential(credential)


def test_new_credentials_are_unique_over_many_draws() -> None:
    draws = [new_credential() for _ in range(5000)]
    assert len(set(draws)) == len(draws)
    # Every draw has the same shape, so the scrubber and the shape check recognise all of them.
    assert all(looks_like_credential(c) for c in draws)


def test_looks_like_credential_rejects_other_shapes() -> None:
    good = new_credential()
    assert not looks_like_credential(good[:-1])
    assert not looks_like_credential(good + "A")
    assert not looks_like_credential("dc2_" + good[4:])
    assert not looks_like_credential(good[:-1] + "!")
    assert not looks_like_credential("")


def test_hash_is_sha256_hex() -> None:
    credential = new_credential()
    digest = hash_credential(credential)
    assert digest == hashlib.sha256(credential.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest != hash_credential(new_credential())
    assert credential not in digest


def test_hash_never_fails_on_non_ascii_input() -> None:
    # Garbage from a client must hash (and then simply not match), never raise.
    digest = hash_credential("dc1_Phường Phúc Xá")
    assert len(digest) == 64


def test_same_hash() -> None:
    digest = hash_credential("dc1_x")
    assert same_hash(digest, hash_credential("dc1_x"))
    assert not same_hash(digest, hash_credential("dc1_y"))


def test_join_link_puts_the_credential_in_the_fragment() -> None:
    credential = new_credential()
    link = join_link("https://diemcau.example.vn/", credential)
    assert link == f"https://diemcau.example.vn/join#{credential}"
    parts = urlsplit(link)
    assert parts.fragment == credential
    assert credential not in parts.path
    assert credential not in parts.query
    assert join_link("https://diemcau.example.vn", credential) == link
