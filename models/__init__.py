"""SQLAlchemy tables, one module per aggregate, and the engine helpers."""

from models.account import Account, Role
from models.base import Base
from models.event import SessionEvent
from models.invitation import Invitation
from models.point import Point
from models.presence_interval import PresenceInterval
from models.rollcall import RollcallConfirmation, RollcallRecord, RollcallRound
from models.session import ConferenceSession, SessionStatus
from models.whip import WhipToken

__all__ = [
    "Account",
    "Base",
    "ConferenceSession",
    "Invitation",
    "Point",
    "PresenceInterval",
    "Role",
    "RollcallConfirmation",
    "RollcallRecord",
    "RollcallRound",
    "SessionEvent",
    "SessionStatus",
    "WhipToken",
]
