"""Every access to aiortc's private internals, in one file to re-verify on an aiortc upgrade.

aiortc decodes everything it receives and encodes everything it sends; a forwarder must do neither.
The hooks below replace instance attributes only (no aiortc file or class is modified) at the points
docs/media-plane.md §2 verified in aiortc 1.16.0. The version is pinned and every private name is
checked before it is used, so an upgrade fails at the first peer with a message naming what moved,
instead of silently decoding or dropping media.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiortc
from aioice.ice import StunProtocol
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver, clock
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
)
from pylibsrtp import Error as SrtpError

from media.errors import AiortcInternalsChanged

PINNED_AIORTC = "1.16.0"

RECEIVER_NAMES = (
    "_RTCRtpReceiver__started",
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__transport",
    "_RTCRtpReceiver__rtcp_task",
    "_RTCRtpReceiver__decoder_thread",
    "_RTCRtpReceiver__rtcp_ssrc",
    "_run_rtcp",
    "_handle_rtp_packet",
    "_handle_rtcp_packet",
    "_send_rtcp_pli",
)
SENDER_NAMES = (
    "_RTCRtpSender__rtp_started",
    "_RTCRtpSender__rtp_exited",
    "_RTCRtpSender__rtcp_started",
    "_RTCRtpSender__rtcp_exited",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__cname",
    "_RTCRtpSender__lsr",
    "_RTCRtpSender__lsr_time",
    "_RTCRtpSender__encoder",
    "_run_rtp",
    "_run_rtcp",
    "_send_rtcp",
    "_handle_rtcp_packet",
    "_ssrc",
)
TRANSCEIVER_NAMES = ("_codecs", "_headerExtensions")
DTLS_NAMES = ("_send_rtp", "_tx_srtp", "transport", "state")


def check_version() -> None:
    if aiortc.__version__ != PINNED_AIORTC:
        raise AiortcInternalsChanged(
            f"aiortc {aiortc.__version__} is installed, the forwarder was verified against "
            f"{PINNED_AIORTC}: re-verify docs/media-plane.md §2 before upgrading"
        )


def require(obj: object, names: tuple[str, ...]) -> None:
    missing = [name for name in names if not hasattr(obj, name)]
    if missing:
        raise AiortcInternalsChanged(
            f"aiortc internals changed, missing on {type(obj).__name__}: {missing}; "
            "re-verify docs/media-plane.md §2"
        )


# ---- receiving side (a publisher's track at the server) ------------------------------------


def receive_without_decoder(receiver: RTCRtpReceiver) -> None:
    """Replace `RTCRtpReceiver.receive` by a copy that starts no decoder thread.

    Called right after setRemoteDescription: aiortc calls `receive()` only once ICE and DTLS are
    up. Everything else `receive()` does (codec table, RTX map, router registration, the RTCP
    task for receiver reports) is kept.
    """
    require(receiver, RECEIVER_NAMES)

    async def receive(parameters: Any) -> None:
        r: Any = receiver
        if r._RTCRtpReceiver__started:
            return
        for codec in parameters.codecs:
            r._RTCRtpReceiver__codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                r._RTCRtpReceiver__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        r._RTCRtpReceiver__transport._register_rtp_receiver(r, parameters)
        r._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(r._run_rtcp())
        r._RTCRtpReceiver__started = True

    receiver.receive = receive  # type: ignore[method-assign]


RtpTap = Callable[[RtpPacket], Awaitable[None]]


def tap_rtp(receiver: RTCRtpReceiver, tap: RtpTap, *, keep_aiortc_handling: bool = True) -> None:
    """Forward each incoming packet first, then let aiortc do its upstream work (NACK, REMB, RR).

    The router looks `_handle_rtp_packet` up on the instance, so one receiver is affected.
    """
    original = receiver._handle_rtp_packet

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        await tap(packet)
        if keep_aiortc_handling:
            await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


SrTap = Callable[[RtcpSrPacket], None]


def tap_sender_reports(receiver: RTCRtpReceiver, tap: SrTap) -> None:
    """See the publisher's sender reports, to translate them for every subscriber."""
    original = receiver._handle_rtcp_packet

    async def handle(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            tap(packet)
        await original(packet)

    receiver._handle_rtcp_packet = handle  # type: ignore[method-assign]


def receiver_codecs(receiver: RTCRtpReceiver) -> dict[int, Any]:
    codecs: dict[int, Any] = getattr(receiver, "_RTCRtpReceiver__codecs")  # noqa: B009
    return codecs


def receiver_rtx_ssrcs(receiver: RTCRtpReceiver) -> dict[int, int]:
    rtx: dict[int, int] = getattr(receiver, "_RTCRtpReceiver__rtx_ssrc")  # noqa: B009
    return rtx


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    await receiver._send_rtcp_pli(media_ssrc)


# ---- sending side (one subscriber's m-line) ------------------------------------------------

SenderReport = Callable[[], tuple[int, int, int, int] | None]
"""Returns (ntp, rtp timestamp, packets, octets) to report, or None before the first packet."""

RtcpHandler = Callable[[AnyRtcpPacket], Awaitable[bool]]
"""Returns True when it handled the packet; False hands it to aiortc (RR: RTT and stats)."""


def sender_without_encoder(sender: RTCRtpSender, report: SenderReport, rtcp: RtcpHandler) -> None:
    """Make a sender that never encodes: no RTP loop, our own sender reports, our RTCP handling.

    Must run before `send()` starts the sender's tasks (i.e. before setLocalDescription).
    - `_run_rtp` would poll every 20 ms for a track and create an encoder: replaced by a wait that
      still sets the started/exited events `stop()` waits for.
    - `_run_rtcp` would report zeros (nothing is encoded): replaced by a loop that reports the
      forwarded stream, and only once a packet was forwarded.
    """
    require(sender, SENDER_NAMES)
    s: Any = sender

    async def run_rtp(codec: Any) -> None:
        s._RTCRtpSender__rtp_started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Future()
        s._RTCRtpSender__rtp_exited.set()

    async def run_rtcp() -> None:
        s._RTCRtpSender__rtcp_started.set()
        try:
            while True:
                await asyncio.sleep(0.5 + random.random())  # noqa: S311 - RFC 3550 jitter
                values = report()
                if values is None:
                    continue
                ntp, rtp, packets, octets = values
                s._RTCRtpSender__ntp_timestamp = ntp
                s._RTCRtpSender__rtp_timestamp = rtp
                s._RTCRtpSender__lsr = (ntp >> 16) & 0xFFFFFFFF
                s._RTCRtpSender__lsr_time = time.time()
                packets_out: list[AnyRtcpPacket] = [
                    RtcpSrPacket(
                        ssrc=sender._ssrc,
                        sender_info=RtcpSenderInfo(
                            ntp_timestamp=ntp,
                            rtp_timestamp=rtp,
                            packet_count=packets & 0xFFFFFFFF,
                            octet_count=octets & 0xFFFFFFFF,
                        ),
                    )
                ]
                cname = s._RTCRtpSender__cname
                if cname is not None:
                    packets_out.append(
                        RtcpSdesPacket(
                            chunks=[RtcpSourceInfo(ssrc=sender._ssrc, items=[(1, cname.encode())])]
                        )
                    )
                with contextlib.suppress(ConnectionError):
                    await s._send_rtcp(packets_out)
        except asyncio.CancelledError:
            pass
        with contextlib.suppress(ConnectionError):
            await s._send_rtcp([RtcpByePacket(sources=[sender._ssrc])])
        s._RTCRtpSender__rtcp_exited.set()

    original = sender._handle_rtcp_packet

    async def handle_rtcp(packet: AnyRtcpPacket) -> None:
        if not await rtcp(packet):
            await original(packet)

    s._run_rtp = run_rtp
    s._run_rtcp = run_rtcp
    s._handle_rtcp_packet = handle_rtcp


def has_decoder(receiver: RTCRtpReceiver) -> bool:
    return getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None


def has_encoder(sender: RTCRtpSender) -> bool:
    return getattr(sender, "_RTCRtpSender__encoder", None) is not None


def sender_ssrc(sender: RTCRtpSender) -> int:
    ssrc: int = sender._ssrc
    return ssrc


def negotiated(transceiver: RTCRtpTransceiver) -> tuple[list[Any], list[Any]]:
    """(codecs, header extensions) negotiated for the m-line: valid after setRemoteDescription."""
    require(transceiver, TRANSCEIVER_NAMES)
    return list(transceiver._codecs), list(transceiver._headerExtensions)


class RawSender:
    """Protect and send one serialized RTP packet on a connected DTLS transport.

    Fast path (host and server-reflexive pairs): SRTP-protect and `sendto` directly on the
    nominated pair's socket, skipping two coroutine layers (~40 % of the per-packet cost measured
    in the spike). Relayed pairs go through aioice so TURN framing is applied.
    """

    __slots__ = ("_connection", "_dtls", "_protect", "errors")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        require(dtls, DTLS_NAMES)
        self._dtls = dtls
        self._protect: Callable[[bytes], bytes] | None = None
        self._connection = dtls.transport._connection
        self.errors = 0

    @property
    def connected(self) -> bool:
        return bool(self._dtls.state == "connected")

    async def send(self, data: bytes) -> int:
        """Returns the bytes put on the wire; 0 when the transport is no longer connected."""
        if self._dtls.state != "connected":
            return 0
        pair = self._connection._nominated.get(1)
        if pair is None:
            return 0
        if self._protect is None:
            # The SRTP context appears with the DTLS handshake, which may finish after "connected".
            srtp: Any = getattr(self._dtls, "_tx_srtp", None)
            if srtp is None:
                return 0
            self._protect = srtp.protect
        try:
            protected: bytes = self._protect(data)
            protocol = pair.protocol
            if type(protocol) is StunProtocol and protocol.transport is not None:
                protocol.transport.sendto(protected, pair.remote_addr)
            else:
                await protocol.send_data(protected, pair.remote_addr)
        except (SrtpError, OSError, ConnectionError):
            # One packet lost for this subscriber; the fan-out to the others goes on.
            self.errors += 1
            return 0
        return len(protected)

    async def send_rtcp(self, data: bytes) -> None:
        await self._dtls._send_rtp(data)


def ntp_now() -> int:
    now: int = clock.current_ntp_time()
    return now
