"""The rooms' script: repeatable from a seed, shares respected, speakers kept reliable."""

from __future__ import annotations

import pytest

from app.simulate.plan import (
    MEDIA_WIDTH,
    Behaviour,
    PlanError,
    make_plan,
    media_height,
    media_positions,
    shard,
)

ROOMS = [(f"{i:05d}", f"dc1_credential_{i}") for i in range(1, 527)]


def test_the_same_seed_makes_the_same_plan_and_another_seed_another() -> None:
    behaviour = Behaviour(drop_share=0.1, hand_share=0.1, silent_share=0.1, media_points=20)
    assert make_plan(ROOMS, behaviour) == make_plan(ROOMS, behaviour)
    other = make_plan(ROOMS, Behaviour(drop_share=0.1, hand_share=0.1, silent_share=0.1, seed=2))
    assert [p.drop_at_s for p in other] != [p.drop_at_s for p in make_plan(ROOMS, behaviour)]


def test_shares_come_out_near_what_was_asked() -> None:
    plans = make_plan(ROOMS, Behaviour(drop_share=0.1, hand_share=0.2, silent_share=0.05))
    drops = sum(p.drop_at_s is not None for p in plans) / len(plans)
    hands = sum(p.hand_at_s is not None for p in plans) / len(plans)
    silent = sum(p.silent for p in plans) / len(plans)
    assert 0.06 < drops < 0.14
    assert 0.15 < hands < 0.25
    assert 0.02 < silent < 0.08


def test_joins_spread_over_the_window_and_answers_within_their_range() -> None:
    plans = make_plan(ROOMS, Behaviour(join_spread_s=30, answer_delay_s=(2, 4), headcount=(5, 9)))
    assert all(0 <= p.join_at_s <= 30 for p in plans)
    assert max(p.join_at_s for p in plans) > 25
    assert min(p.join_at_s for p in plans) < 5
    assert all(2 <= p.answer_delay_s <= 4 for p in plans)
    assert all(5 <= p.headcount <= 9 for p in plans)
    assert make_plan(ROOMS, Behaviour(join_spread_s=0))[0].join_at_s == 0


def test_media_rooms_are_spread_have_unique_heights_and_never_drop_or_keep_silent() -> None:
    plans = make_plan(ROOMS, Behaviour(drop_share=1, hand_share=1, silent_share=1, media_points=20))
    media = [p for p in plans if p.media]
    assert [p.index for p in media] == media_positions(len(ROOMS), 20)
    assert media[0].index == 0
    assert media[-1].index > 490
    assert len({p.media_height for p in media}) == 20
    assert all(p.drop_at_s is None and p.hand_at_s is None and not p.silent for p in media)
    assert all(p.drop_at_s is not None and p.silent for p in plans if not p.media)
    assert MEDIA_WIDTH % 32 == 0
    assert media_height(0) != media_height(1)


def test_codes_and_credentials_stay_with_their_room_in_order() -> None:
    plans = make_plan(ROOMS, Behaviour())
    assert [(p.code, p.credential) for p in plans] == ROOMS
    assert [p.index for p in plans] == list(range(len(ROOMS)))


def test_shards_deal_every_room_once_with_the_media_rooms_apart() -> None:
    plans = make_plan(ROOMS, Behaviour(media_points=5))
    shards = shard(plans, 2)
    assert sorted(p.index for s in shards for p in s) == list(range(len(ROOMS)))
    assert [sum(p.media for p in s) for s in shards] == [5, 0, 0]
    assert abs(len(shards[1]) - len(shards[2])) <= 1
    assert all(s == sorted(s, key=lambda p: p.index) for s in shards)
    assert len(shard(make_plan(ROOMS[:1], Behaviour()), 4)) == 1
    with pytest.raises(PlanError):
        shard(plans, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("drop_share", 1.5),
        ("silent_share", -0.1),
        ("answer_delay_s", (5.0, 1.0)),
        ("headcount", (-1, 3)),
        ("join_spread_s", -1.0),
        ("media_points", 101),
        ("media_fps", 0),
    ],
)
def test_impossible_behaviour_is_refused_with_the_field_named(field: str, value: object) -> None:
    with pytest.raises(PlanError, match=field):
        make_plan(ROOMS, Behaviour(**{field: value}))  # type: ignore[arg-type]


def test_more_media_rooms_than_rooms_is_refused() -> None:
    with pytest.raises(PlanError, match="media_points"):
        make_plan(ROOMS[:3], Behaviour(media_points=4))
