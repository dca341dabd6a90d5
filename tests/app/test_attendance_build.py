"""Connected intervals merged across reconnects, the way the attendance report counts a stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.attendance.build import merge_intervals
from app.attendance.model import Interval

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_separate_stays_stay_separate_and_in_order() -> None:
    spans = [(at(30), at(40)), (at(0), at(10))]
    assert merge_intervals(spans, now=at(60)) == [
        Interval(at(0), at(10)),
        Interval(at(30), at(40)),
    ]


def test_overlapping_and_touching_stays_are_one() -> None:
    # A reconnect that opened before the old socket was noticed closed, then one right at its end.
    spans = [(at(0), at(10)), (at(9), at(20)), (at(20), at(25))]
    assert merge_intervals(spans, now=at(60)) == [Interval(at(0), at(25))]


def test_a_stay_inside_another_changes_nothing() -> None:
    spans = [(at(0), at(30)), (at(5), at(6))]
    assert merge_intervals(spans, now=at(60)) == [Interval(at(0), at(30))]


def test_an_open_stay_stays_open_and_swallows_what_it_covers() -> None:
    spans = [(at(0), at(10)), (at(5), None), (at(20), at(25))]
    assert merge_intervals(spans, now=at(60)) == [Interval(at(0), None)]


def test_a_closed_stay_after_an_open_one_inside_now_keeps_it_open() -> None:
    spans = [(at(50), None), (at(0), at(10))]
    assert merge_intervals(spans, now=at(60)) == [
        Interval(at(0), at(10)),
        Interval(at(50), None),
    ]


def test_nothing_is_nothing() -> None:
    assert merge_intervals([], now=at(0)) == []
