"""What the rooms saw, added up: joins, resumes, roll-call answers, media, errors.

Pure: from the rooms' logs (plain dicts, as the worker processes send them) to numbers, so the
same summary serves `diemcau simulate`, `diemcau rehearse` and tests.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any


def quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile (None for no values): the value a reader can find in the data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return round(ordered[rank - 1], 1)


@dataclass(frozen=True)
class RoundSummary:
    round: int
    expected: int
    """Rooms that joined and are not silent: each of them should have answered."""
    answered: int
    silent_joined: int
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    """From the send that was answered to its ack (a retry after a drop counts from the retry)."""
    resent: int
    """Answers sent more than once (the connection dropped before the ack)."""
    answer_p50_s: float | None
    """From the room seeing the round open to its ack (its planned counting time included)."""
    answer_max_s: float | None


@dataclass(frozen=True)
class RoomsSummary:
    rooms: int
    joined: int
    join_p50_ms: float | None
    join_p95_ms: float | None
    join_p99_ms: float | None
    join_max_ms: float | None
    retried_joins: int
    drops: int
    resumed: int
    resume_p50_ms: float | None
    hands: int
    hands_acked: int
    rounds: list[RoundSummary]
    media_rooms: int
    media_receiving: int
    program_frames_min: int | None
    program_frames_total: int
    media_published: int
    ended: int
    errors: int
    error_kinds: dict[str, int]


def _kind(error: str) -> str:
    """An error without the parts that differ from room to room (numbers), for counting."""
    return "".join("#" if ch.isdigit() else ch for ch in error)[:120]


def summarize(rooms: list[dict[str, Any]]) -> RoomsSummary:
    joined = [room for room in rooms if room["joined"]]
    join_ms = [float(room["join_ms"]) for room in joined]
    resumes = [resume for room in rooms for resume in room["resumes"]]
    numbers = sorted({int(n) for room in rooms for n in room["rollcall"]})
    rounds: list[RoundSummary] = []
    for number in numbers:
        records = [room["rollcall"].get(str(number)) for room in joined if not room["silent"]]
        acked = [r for r in records if r is not None and r.get("outcome") == "ack"]
        ack_ms = [float(r["ack_ms"]) for r in acked]
        answer_s = [float(r["acked"]) - float(r["opened_seen"]) for r in acked]
        rounds.append(
            RoundSummary(
                round=number,
                expected=len(records),
                answered=len(acked),
                silent_joined=sum(1 for room in joined if room["silent"]),
                ack_p50_ms=quantile(ack_ms, 0.5),
                ack_p99_ms=quantile(ack_ms, 0.99),
                resent=sum(1 for r in acked if int(r.get("sends", 1)) > 1),
                answer_p50_s=quantile(answer_s, 0.5),
                answer_max_s=quantile(answer_s, 1.0),
            )
        )
    media = [room for room in rooms if room["media"]]
    receiving = [room for room in media if room["subscribe_ms"] is not None]
    errors = Counter(_kind(error) for room in rooms for error in room["errors"])
    return RoomsSummary(
        rooms=len(rooms),
        joined=len(joined),
        join_p50_ms=quantile(join_ms, 0.5),
        join_p95_ms=quantile(join_ms, 0.95),
        join_p99_ms=quantile(join_ms, 0.99),
        join_max_ms=quantile(join_ms, 1.0),
        retried_joins=sum(1 for room in joined if room["attempts"] > 1 and not room["resumes"]),
        drops=len(resumes),
        resumed=sum(1 for resumed, _, _ in resumes if resumed),
        resume_p50_ms=quantile([float(ms) for _, _, ms in resumes], 0.5),
        hands=sum(1 for room in rooms if room["hand"] is not None),
        hands_acked=sum(1 for room in rooms if room["hand"] == "ack"),
        rounds=rounds,
        media_rooms=len(media),
        media_receiving=len(receiving),
        program_frames_min=min((int(r["program_frames"]) for r in receiving), default=None),
        program_frames_total=sum(int(r["program_frames"]) for r in media),
        media_published=sum(1 for room in media if room["publish_ms"] is not None),
        ended=sum(1 for room in rooms if room["ended"]),
        errors=sum(errors.values()),
        error_kinds=dict(errors.most_common(20)),
    )
