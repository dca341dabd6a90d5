"""Malformed offers straight to the backend (the WebSocket path): typed errors only, nothing lost.

Real aiortc offers, broken in the ways that once escaped as untyped errors (tests/whip/test_offers.py
names them) and mutated at random; each either negotiates or is refused with a media error, and the
working publication of the participant survives every refusal.
"""

from __future__ import annotations

import random

import pytest

from media.embedded.backend import EmbeddedMedia
from media.errors import MediaCodecUnsupported, MediaOfferInvalid
from media.loadgen import PublisherClient
from tests.whip.test_offers import mutate, named_cases

pytestmark = pytest.mark.usefixtures("loopback_media")
MUTATIONS = 80


async def test_malformed_offers_are_typed_and_change_nothing() -> None:
    media = EmbeddedMedia()
    await media.create_room("r")
    working = PublisherClient(width=96, height=64)
    others: list[PublisherClient] = []
    try:
        await working.accept(
            (await media.add_publisher("r", "p", await working.offer(), role="point")).sdp
        )
        publisher = media.rooms["r"].participants["p"].publisher
        template = PublisherClient(width=96, height=64)
        others.append(template)
        sdp = await template.offer()
        for name, bad in named_cases(sdp).items():
            with pytest.raises(MediaOfferInvalid):
                await media.add_publisher("r", "p", bad, role="point")
            assert media.rooms["r"].participants["p"].publisher is publisher, name

        rnd = random.Random(20261130)
        lines = sdp.split("\r\n")
        accepted = refused = 0
        for _ in range(MUTATIONS):
            offer = mutate(lines, rnd)
            try:
                await media.add_publisher("r", "q", offer, role="point")
            except (MediaOfferInvalid, MediaCodecUnsupported):
                refused += 1
            else:
                accepted += 1
            assert media.rooms["r"].participants["p"].publisher is publisher
        assert accepted > 5
        assert refused > 5
    finally:
        for peer in (working, *others):
            await peer.close()
        await media.stop()
