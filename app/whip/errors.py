"""Typed errors of WHIP ingest; each leaves as the one `{code, message, details}` body.

Two of them need a header that the shared handler (app/http_errors.py) does not add:
`WWW-Authenticate` on 401 (RFC 6750, what WHIP clients look for) and `Allow` on 405 (RFC 9110).
They carry it in `headers`, and the WHIP endpoints turn them into responses themselves.
"""

from __future__ import annotations

from typing import Any, ClassVar

from app.errors import Conflict, DiemcauError, NotFound, Unauthenticated

REALM = "diemcau-whip"


class WhipUnauthorized(Unauthenticated):
    """No token, a malformed one, an unknown or revoked one, or another session's token.

    One message for all of them: a caller without a valid token learns nothing about which
    sessions or tokens exist.
    """

    code = "unauthenticated"

    def __init__(self, message: str, *, invalid_token: bool) -> None:
        super().__init__(message)
        # RFC 6750 §3: a request without credentials gets a bare challenge, a bad token an error.
        challenge = f'Bearer realm="{REALM}"'
        if invalid_token:
            challenge += ', error="invalid_token"'
        self.headers = {"WWW-Authenticate": challenge}


class WhipSessionNotOpen(Conflict):
    """Media only makes sense while points are connected: the session is open or live."""

    code = "whip_session_not_open"

    def __init__(self, session_id: int, status: str) -> None:
        super().__init__(
            f"the session is {status}: the program can be published only while it is open or live",
            details={
                "session_id": session_id,
                "session_status": status,
                "allowed": ["open", "live"],
            },
        )


class WhipUnsupportedMediaType(DiemcauError):
    code = "unsupported_media_type"
    status = 415

    def __init__(self, got: str) -> None:
        super().__init__(
            "a WHIP offer is sent as Content-Type: application/sdp",
            details={"expected": "application/sdp", "content_type": got[:100]},
        )


class WhipPatchUnsupported(DiemcauError):
    """RFC 9725 §4.3.1: a resource without trickle ICE and without ICE restart answers PATCH 405.

    aiortc neither accepts remote candidates after the answer nor restarts ICE, so the offer must
    carry all its candidates, and a broken connection is replaced by a new POST.
    """

    code = "whip_patch_unsupported"
    status = 405
    headers: ClassVar[dict[str, str]] = {"Allow": "DELETE, OPTIONS"}

    def __init__(self) -> None:
        super().__init__(
            "this WHIP server supports neither trickle ICE nor ICE restart: send every candidate "
            "in the offer, and POST a new offer to reconnect",
            details={"trickle_ice": False, "ice_restart": False},
        )


class WhipTokenNotFound(NotFound):
    code = "whip_token_not_found"


class WhipResourceNotFound(NotFound):
    """The resource was deleted, replaced by a newer POST, or ended by a revocation."""

    code = "whip_resource_not_found"


class WhipTokenLimit(Conflict):
    code = "whip_token_limit"


class WhipMediaUnavailable(DiemcauError):
    code = "media_unavailable"
    status = 503


def error_headers(exc: DiemcauError) -> dict[str, str] | None:
    found: Any = getattr(exc, "headers", None)
    return dict(found) if found else None
