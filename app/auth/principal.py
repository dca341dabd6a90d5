"""Who is acting: a staff account (from an access token) or the command line."""

from __future__ import annotations

from dataclasses import dataclass

from models import Role


@dataclass(frozen=True)
class StaffPrincipal:
    account_id: int
    username: str
    role: Role

    @property
    def actor(self) -> str:
        """How this principal is named in the session event log."""
        return f"account:{self.username}"


# Roles allowed to prepare and run sessions (points, invitations, credentials, lifecycle).
OPERATORS = frozenset({Role.ADMIN, Role.OPERATOR})
# Every staff role may read.
STAFF = frozenset(Role)
ADMINS = frozenset({Role.ADMIN})
