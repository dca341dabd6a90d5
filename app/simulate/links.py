"""Where the simulated rooms get their join credentials.

Two ways, as an operator has them: the join-links file the console exports (code, …, link; the
credential is the part of the link after '#'), or, with an operator's account, straight from the
server: the points of a points file are invited to the session and given fresh join links. Fresh
means rotated: the credentials are shown only once, so any link sent out earlier for those points
stops working — which is why that path is for rehearsal sessions, and says so.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx

from bridges.directory.csv_format import parse_points_csv

CHUNK = 5_000
"""Codes per request (the API takes up to 10,000 in one list)."""


class LinksError(RuntimeError):
    """The credentials could not be had (a bad file, a refused login, a missing session)."""


def read_points(path: Path) -> list[tuple[str, str]]:
    """(code, name) of every valid row of a points file, in file order; rows with errors refuse
    the whole file, as the import does."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LinksError(f"cannot read {path}: {exc.strerror}") from None
    try:
        parsed = parse_points_csv(data, max_rows=100_000)
    except Exception as exc:
        raise LinksError(f"{path}: {exc}") from None
    if parsed.errors:
        first = parsed.errors[0]
        raise LinksError(
            f"{path}: {len(parsed.errors)} bad row(s), first at line {first.line}: {first.message}"
        )
    return [(row.point.code, row.point.name) for row in parsed.rows]


def read_links(path: Path) -> list[tuple[str, str]]:
    """(code, credential) from a join-links export (UTF-8 with or without a byte-order mark)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LinksError(f"cannot read {path} as UTF-8: {exc}") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or [c.strip().lower() for c in rows[0][:1]] != ["code"] or "link" not in rows[0]:
        raise LinksError(f"{path}: not a join-links file (its header must have code and link)")
    code_at, link_at = 0, rows[0].index("link")
    links: list[tuple[str, str]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) <= link_at or "#" not in row[link_at]:
            raise LinksError(f"{path}: line {line} has no join link")
        links.append((row[code_at].strip(), row[link_at].split("#", 1)[1].strip()))
    if not links:
        raise LinksError(f"{path}: no join links")
    return links


def fetch_credentials(
    http: httpx.Client, session_id: int, username: str, password: str, codes: list[str]
) -> list[tuple[str, str]]:
    """Invite `codes` to the session (idempotent) and mint their join links (rotating old ones);
    (code, credential) in the order of `codes`."""
    response = http.post("/api/v1/auth/login", json={"username": username, "password": password})
    if response.status_code != 200:
        raise LinksError(f"login as {username!r} refused: {_reason(response)}")
    auth = {"Authorization": f"Bearer {response.json()['access_token']}"}
    found: dict[str, str] = {}
    for start in range(0, len(codes), CHUNK):
        chunk = codes[start : start + CHUNK]
        response = http.post(
            f"/api/v1/sessions/{session_id}/invitations",
            json={"point_codes": chunk},
            headers=auth,
        )
        if response.status_code != 200:
            raise LinksError(f"inviting the points refused: {_reason(response)}")
        response = http.post(
            f"/api/v1/sessions/{session_id}/join-links",
            json={"point_codes": chunk, "rotate": True},
            headers=auth,
        )
        if response.status_code != 200:
            raise LinksError(f"minting join links refused: {_reason(response)}")
        for link in response.json()["links"]:
            found[str(link["point_code"])] = str(link["credential"])
    missing = [code for code in codes if code not in found]
    if missing:
        raise LinksError(f"no join link for {len(missing)} point(s), e.g. {missing[:3]}")
    return [(code, found[code]) for code in codes]


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{response.status_code} {body.get('code', '')}: {body.get('message', '')}".strip()
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"
