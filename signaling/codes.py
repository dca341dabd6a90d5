"""Stable codes of the live protocol: error codes in `error` messages and WebSocket close codes.

Clients branch on these, so they never change meaning; docs/protocol.md lists each with an example.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    MALFORMED_MESSAGE = "malformed_message"
    UNKNOWN_TYPE = "unknown_type"
    VALIDATION_ERROR = "validation_error"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    HELLO_REQUIRED = "hello_required"
    ALREADY_JOINED = "already_joined"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    NOT_ADMITTED = "not_admitted"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    MEDIA_OFFER_INVALID = "media_offer_invalid"
    MEDIA_CODEC_UNSUPPORTED = "media_codec_unsupported"
    MEDIA_UNAVAILABLE = "media_unavailable"
    INVALID_TRANSITION = "invalid_transition"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    UNAVAILABLE = "unavailable"


class CloseCode(enum.IntEnum):
    """1000–1011 are the WebSocket standard's; 4000–4999 are ours."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    HEARTBEAT_TIMEOUT = 4000
    HELLO_TIMEOUT = 4001
    ORIGIN_REJECTED = 4003
    UNAUTHENTICATED = 4401
    NOT_ADMITTED = 4403
    ROLE_NOT_ALLOWED = 4406
    SESSION_GONE = 4404
    OVERFLOW = 4408
    REPLACED = 4409
    REVOKED = 4410
    TOO_MANY_CONNECTIONS = 4429
    RATE_LIMITED = 4430


CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "bye",
    CloseCode.GOING_AWAY: "server shutting down",
    CloseCode.POLICY: "policy violation",
    CloseCode.TOO_BIG: "message too big",
    CloseCode.INTERNAL: "internal error",
    CloseCode.HEARTBEAT_TIMEOUT: "heartbeat timeout",
    CloseCode.HELLO_TIMEOUT: "no valid hello in time",
    CloseCode.ORIGIN_REJECTED: "origin not allowed",
    CloseCode.UNAUTHENTICATED: "unauthenticated",
    CloseCode.NOT_ADMITTED: "session not admitting points",
    CloseCode.ROLE_NOT_ALLOWED: "role not allowed for this account",
    CloseCode.SESSION_GONE: "session ended",
    CloseCode.OVERFLOW: "too slow: outgoing queue overflowed; resume",
    CloseCode.REPLACED: "replaced by a newer connection",
    CloseCode.REVOKED: "credential revoked or rotated",
    CloseCode.TOO_MANY_CONNECTIONS: "too many connections",
    CloseCode.RATE_LIMITED: "too many messages",
}
