"""Which events reach points: session-wide ones do, the control desk's lists do not."""

from __future__ import annotations

import pytest

from signaling.audience import Audience, audience_of


@pytest.mark.parametrize(
    ("event_type", "audience"),
    [
        ("session.created", Audience.EVERYONE),
        ("session.updated", Audience.EVERYONE),
        ("session.status_changed", Audience.EVERYONE),
        ("floor.granted", Audience.EVERYONE),
        ("floor.call_on", Audience.EVERYONE),
        ("floor.cancel", Audience.EVERYONE),
        # A new hand moves nobody else's place in the queue.
        ("floor.request", Audience.STAFF),
        ("rollcall.opened", Audience.EVERYONE),
        ("rollcall.closed", Audience.EVERYONE),
        ("rollcall.confirmed", Audience.STAFF),
        ("rollcall.marked", Audience.STAFF),
        ("rollcall.somethingnew", Audience.STAFF),
        ("invitations.added", Audience.STAFF),
        ("credentials.issued", Audience.STAFF),
        ("credential.rotated", Audience.STAFF),
        ("invitation.revoked", Audience.STAFF),
        ("something.new", Audience.STAFF),
        ("sessionish", Audience.STAFF),
    ],
)
def test_audience(event_type: str, audience: Audience) -> None:
    assert audience_of(event_type) is audience
