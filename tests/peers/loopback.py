"""aiortc peers on 127.0.0.1: the network policy that lets aioice gather there, and small helpers.

aioice never offers 127.0.0.1 by itself; `loopback_media` makes it the only host address through
`media.net` (the same path production uses for its configured addresses) and restores the previous
policy afterwards, since the policy is process-wide.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from media.net import apply_network_policy, current_network_policy

CONNECT_TIMEOUT_S = 15.0


@pytest.fixture
def loopback_media() -> Iterator[None]:
    previous = current_network_policy()
    apply_network_policy(["127.0.0.1"], None)
    try:
        yield
    finally:
        apply_network_policy(previous.host_addresses, previous.port_range)


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer/answer without trickle (aiortc gathers everything before `setLocalDescription` returns)."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def wait_connected(*peers: RTCPeerConnection, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    async def one(pc: RTCPeerConnection) -> None:
        while pc.connectionState != "connected":
            if pc.connectionState in ("failed", "closed"):
                raise AssertionError(f"peer connection {pc.connectionState}")
            await asyncio.sleep(0.02)

    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(one(pc) for pc in peers))


def nominated_pair(pc: RTCPeerConnection) -> Any:
    """The ICE pair the connection uses (aioice `CandidatePair`).

    aiortc exposes no selected-pair API; this reads aioice's `_nominated`, test-only.
    """
    if pc.sctp is not None:
        ice = pc.sctp.transport.transport
    else:
        ice = pc.getTransceivers()[0].receiver.transport.transport
    nominated = ice._connection._nominated
    assert nominated, "no nominated ICE pair"
    return nominated[min(nominated)]


def candidate_lines(sdp: str) -> list[str]:
    return [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
