"""Typed errors shared by every layer.

Services raise these; the edge (HTTP handlers, later the WebSocket) turns them into the one error body
`{code, message, details}`. Nothing here imports FastAPI so services stay usable from the CLI and tests.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DiemcauError(Exception):
    """Base of every error a client may see; `code` is stable and documented."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class BadRequest(DiemcauError):
    code = "bad_request"
    status = 400


class ValidationFailed(DiemcauError):
    code = "validation_error"
    status = 422


class Unauthenticated(DiemcauError):
    code = "unauthenticated"
    status = 401


class Forbidden(DiemcauError):
    code = "forbidden"
    status = 403


class NotFound(DiemcauError):
    code = "not_found"
    status = 404


class Conflict(DiemcauError):
    code = "conflict"
    status = 409


class InvalidTransition(Conflict):
    """A lifecycle command that the current state does not allow."""

    code = "invalid_transition"

    def __init__(self, machine: str, state: str, command: str) -> None:
        super().__init__(
            f"{machine}: cannot {command} in state {state}",
            details={"machine": machine, "state": state, "command": command},
        )
        self.state = state
        self.command = command


class PayloadTooLarge(DiemcauError):
    code = "payload_too_large"
    status = 413


class TooManyRequests(DiemcauError):
    code = "rate_limited"
    status = 429


class ImportRejected(DiemcauError):
    """A CSV with invalid rows, imported with no row written."""

    code = "import_invalid_rows"
    status = 422
