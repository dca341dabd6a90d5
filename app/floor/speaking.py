"""The speaking-time record of a session, computed from its log.

Every turn that ended is a `released` or `revoked` effect with its start and end in a `floor.*`
event, so the record is exact after a restart and needs no table of its own; a turn still running
counts up to `now`. The floor endpoint and the attendance report read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import SessionEvent


@dataclass
class SpeakingRecord:
    spans: list[float] = field(default_factory=list)
    speaking_now: bool = False

    @property
    def total_s(self) -> float:
        return sum(self.spans)


async def speaking_turns(
    db: AsyncSession, session_id: int, *, now: float
) -> dict[str, SpeakingRecord]:
    """Per point code, the length of every turn, in order."""
    rows = await db.scalars(
        select(SessionEvent)
        .where(SessionEvent.session_id == session_id)
        .where(SessionEvent.type.like("floor.%"))
        .order_by(SessionEvent.seq)
    )
    records: dict[str, SpeakingRecord] = {}
    running: dict[str, float] = {}
    for row in rows:
        effects: list[dict[str, Any]] = row.payload.get("effects", [])
        for effect in effects:
            code = effect.get("point_code")
            if not isinstance(code, str):
                continue
            if effect.get("kind") == "granted":
                running[code] = float(effect["at"])
            elif effect.get("kind") in ("released", "revoked"):
                records.setdefault(code, SpeakingRecord()).spans.append(
                    float(effect["at"]) - float(effect["granted_at"])
                )
                running.pop(code, None)
    for code, started in running.items():
        record = records.setdefault(code, SpeakingRecord())
        record.spans.append(max(0.0, now - started))
        record.speaking_now = True
    return records
