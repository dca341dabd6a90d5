"""What each simulated room will do, decided up front from a seed.

A rehearsal is only comparable with the next one if the same rooms drop, stay silent and raise
their hands at the same moments: the plan is a pure function of the options and the list of points,
so two runs with the same seed behave alike and a test can read the plan instead of guessing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MEDIA_WIDTH = 128
"""A multiple of 32 (`media.loadgen.PatternVideoTrack` fills planes without row padding)."""
MEDIA_BASE_HEIGHT = 96
MEDIA_HEIGHT_STEP = 2
MAX_MEDIA_POINTS = 100

HAND_TOPICS = (
    "Ý kiến về giải phóng mặt bằng",
    "Kiến nghị về trật tự đô thị",
    "Câu hỏi về thủ tục hành chính",
    "Ý kiến về vệ sinh môi trường",
    "Kiến nghị về an toàn giao thông",
)


class PlanError(ValueError):
    """Options that cannot make a plan (a share outside 0..1, more media rooms than rooms)."""


@dataclass(frozen=True)
class Behaviour:
    """How the rooms behave, as shares of the rooms and ranges of seconds."""

    join_spread_s: float = 10.0
    """Joins are spread uniformly over this many seconds (0: all at once)."""
    drop_share: float = 0.02
    drop_after_s: tuple[float, float] = (5.0, 30.0)
    """When, after its join, a dropping room loses its network."""
    drop_gap_s: tuple[float, float] = (1.0, 5.0)
    """How long it stays away before it reconnects and resumes (well inside the 60 s window)."""
    hand_share: float = 0.02
    hand_after_s: tuple[float, float] = (2.0, 20.0)
    silent_share: float = 0.02
    """Rooms that never answer a roll-call (nobody at the desk)."""
    answer_delay_s: tuple[float, float] = (1.0, 10.0)
    """From a roll-call's opening to the room's answer (people being counted)."""
    headcount: tuple[int, int] = (8, 60)
    media_points: int = 0
    media_fps: int = 10
    seed: int = 1

    def check(self, points: int) -> None:
        for name in ("drop_share", "hand_share", "silent_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise PlanError(f"{name} must be between 0 and 1, got {share}")
        for name in ("drop_after_s", "drop_gap_s", "hand_after_s", "answer_delay_s", "headcount"):
            low, high = getattr(self, name)
            if low < 0 or high < low:
                raise PlanError(f"{name} must be a range low..high with 0 <= low <= high")
        if self.join_spread_s < 0:
            raise PlanError("join_spread_s must be 0 or more")
        if not 0 <= self.media_points <= min(points, MAX_MEDIA_POINTS):
            raise PlanError(f"media_points must be 0..{min(points, MAX_MEDIA_POINTS)}")
        if not 1 <= self.media_fps <= 30:
            raise PlanError("media_fps must be 1..30")


@dataclass(frozen=True)
class RoomPlan:
    """One room's script; times in seconds from the start of the simulation or of its event."""

    index: int
    code: str
    credential: str
    join_at_s: float
    drop_at_s: float | None
    """Seconds after its first welcome; None: never drops."""
    drop_gap_s: float
    hand_at_s: float | None
    """Seconds after its first welcome; None: never raises a hand."""
    hand_topic: str
    silent: bool
    answer_delay_s: float
    headcount: int
    media_height: int | None
    """Media rooms only: the height of its synthetic camera, unique, so the hall can tell whose
    picture it decoded."""

    @property
    def media(self) -> bool:
        return self.media_height is not None


def media_positions(points: int, media_points: int) -> list[int]:
    """Which rooms (by position) take part with media: spread evenly over the list, so that a
    sample of the national file has speakers from the north to the south."""
    return [i * points // media_points for i in range(media_points)] if media_points else []


def media_height(rank: int) -> int:
    return MEDIA_BASE_HEIGHT + MEDIA_HEIGHT_STEP * rank


def make_plan(rooms: list[tuple[str, str]], behaviour: Behaviour) -> list[RoomPlan]:
    """A script per (point code, credential), in the order given.

    Media rooms never drop and always answer: they are the speakers the rehearsal calls on, and a
    floor pass to a room that is away would measure the drop, not the floor. Other rooms are picked
    for drops, hands and silence independently, each with its share.
    """
    behaviour.check(len(rooms))
    rng = random.Random(behaviour.seed)  # noqa: S311 - a repeatable script, not a secret
    media = {
        position: rank
        for rank, position in enumerate(media_positions(len(rooms), behaviour.media_points))
    }
    plans: list[RoomPlan] = []
    for index, (code, credential) in enumerate(rooms):
        is_media = index in media
        drops = not is_media and rng.random() < behaviour.drop_share
        hands = not is_media and rng.random() < behaviour.hand_share
        silent = not is_media and rng.random() < behaviour.silent_share
        plans.append(
            RoomPlan(
                index=index,
                code=code,
                credential=credential,
                join_at_s=round(rng.uniform(0.0, behaviour.join_spread_s), 3),
                drop_at_s=round(rng.uniform(*behaviour.drop_after_s), 3) if drops else None,
                drop_gap_s=round(rng.uniform(*behaviour.drop_gap_s), 3),
                hand_at_s=round(rng.uniform(*behaviour.hand_after_s), 3) if hands else None,
                hand_topic=rng.choice(HAND_TOPICS),
                silent=silent,
                answer_delay_s=round(rng.uniform(*behaviour.answer_delay_s), 3),
                headcount=rng.randint(*behaviour.headcount),
                media_height=media_height(media[index]) if is_media else None,
            )
        )
    return plans


def shard(plans: list[RoomPlan], processes: int) -> list[list[RoomPlan]]:
    """The media rooms in a process of their own (decoding video is their load, and it would
    delay the other rooms' receipt stamps), the others dealt round-robin over `processes`, so
    every process has a like share of the joins over time."""
    if processes < 1:
        raise PlanError("processes must be 1 or more")
    media = [p for p in plans if p.media]
    plain = [p for p in plans if not p.media]
    shards: list[list[RoomPlan]] = [[] for _ in range(processes)]
    for k, plan in enumerate(plain):
        shards[k % processes].append(plan)
    return [s for s in [media, *shards] if s]
