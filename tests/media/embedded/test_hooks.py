"""The aiortc internals the forwarder relies on: pinned, checked, and failing loudly if they move.

A hash of each replaced or wrapped method's source is pinned: an aiortc upgrade that changes one
fails here, pointing at docs/media-plane.md §2 to re-verify (receive() is copied, so any change
to it must be reviewed).
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport

from media.embedded import hooks
from media.errors import AiortcInternalsChanged

PINNED_SOURCES = {
    (RTCRtpReceiver, "receive"): "d6d8d8d7a0bf4e95",
    (RTCRtpReceiver, "_handle_rtp_packet"): "4e54983d021a6336",
    (RTCRtpReceiver, "_handle_rtcp_packet"): "ec9f46214c3495b2",
    (RTCRtpReceiver, "_send_rtcp_pli"): "ae74c43d50f6eb7b",
    (RTCRtpSender, "_run_rtp"): "ff597a1d554cb373",
    (RTCRtpSender, "_run_rtcp"): "51e0a924eac4e39b",
    (RTCRtpSender, "_handle_rtcp_packet"): "a4ee4c7355f8de7a",
    (RTCDtlsTransport, "_send_rtp"): "763b02bceb0b0ab9",
    (aioice.ice.Connection, "sendto"): "bf162ec03bdce2cc",
}


def test_aiortc_is_the_verified_version() -> None:
    hooks.check_version()


@pytest.mark.parametrize(
    ("owner", "name"), list(PINNED_SOURCES), ids=lambda v: getattr(v, "__name__", v)
)
def test_hooked_methods_are_unchanged(owner: Any, name: str) -> None:
    source = inspect.getsource(getattr(owner, name))
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert digest == PINNED_SOURCES[(owner, name)], (
        f"{owner.__name__}.{name} changed in this aiortc/aioice: re-verify docs/media-plane.md §2"
    )


def test_a_missing_private_name_is_a_typed_error_naming_it() -> None:
    class Renamed:
        _ssrc = 1

    with pytest.raises(AiortcInternalsChanged, match="_run_rtp"):
        hooks.require(Renamed(), hooks.SENDER_NAMES)


async def test_every_private_name_exists_on_real_objects() -> None:
    sender = RTCRtpSender("video", transport=_dtls())
    receiver = RTCRtpReceiver("video", transport=_dtls())
    hooks.require(sender, hooks.SENDER_NAMES)
    hooks.require(receiver, hooks.RECEIVER_NAMES)


def _dtls() -> Any:
    from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport

    return RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer(iceServers=[])), [RTCCertificate.generateCertificate()]
    )
