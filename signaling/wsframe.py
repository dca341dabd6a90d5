"""One WebSocket frame for a broadcast, written to every socket as it is.

A server's frames are not masked (RFC 6455 §5.1) and diemcau negotiates no extension
(`ws_per_message_deflate` is off), so a text message is the same bytes on every connection. Going
through the ASGI send costs a coroutine, a message dict and websockets' framing per connection:
22–45 µs each, 75–150 ms for one event to 3,321 points (docs/benchmarks.md, floor control). A
broadcast frames the event once and writes those bytes to each transport when uvicorn's sans-I/O
WebSocket protocol says the connection is open and writable; anything else goes the ASGI way.

Everything here that knows uvicorn's internals is in `RawWriter.of` and `RawWriter.write`; the
attributes they read are pinned by tests/signaling/test_wsframe.py against the installed uvicorn.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from websockets.protocol import State

OPCODE_TEXT = 0x1
FIN = 0x80


def text_frame(text: str) -> bytes:
    """An unmasked, unfragmented text frame (RFC 6455 §5.2)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", FIN | OPCODE_TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", FIN | OPCODE_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", FIN | OPCODE_TEXT, 127, size)
    return header + payload


class RawWriter:
    """Writes ready frames straight to one connection's transport while that is safe."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    @classmethod
    def of(cls, send: Callable[..., Any] | None) -> RawWriter | None:
        """The raw writer behind an ASGI send, when it is uvicorn's sans-I/O WebSocket protocol
        with no extension negotiated; None otherwise (other servers, the test client)."""
        if send is None:
            return None
        try:
            from uvicorn.protocols.websockets.websockets_sansio_impl import (
                WebSocketsSansIOProtocol,
            )
        except ImportError:  # pragma: no cover - uvicorn without the sans-I/O protocol
            return None
        protocol = getattr(send, "__self__", None)
        if not isinstance(protocol, WebSocketsSansIOProtocol):
            return None
        if getattr(protocol.conn, "extensions", None):
            return None
        return cls(protocol)

    def write(self, frame: bytes) -> bool:
        """Write the frame now and say True, or say False and write nothing: not open, closing,
        or the transport is over its high-water mark (the ASGI path then waits for it)."""
        protocol = self._protocol
        if (
            protocol.conn.state is not State.OPEN
            or not protocol.handshake_complete
            or protocol.close_sent
            or protocol.disconnected
            or protocol.initial_response is not None
            or not protocol.writable.is_set()
        ):
            return False
        transport = protocol.transport
        if transport.is_closing():
            return False
        transport.write(frame)
        return True
