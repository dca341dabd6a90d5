"""One frame for a broadcast: the bytes websockets itself would send; the uvicorn internals it reads.

The live server taking the raw path: tests/integration/test_live_broadcast_frames.py."""

from __future__ import annotations

import inspect

import pytest
from uvicorn.protocols.websockets import websockets_sansio_impl
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from signaling.wsframe import RawWriter, text_frame

TEXTS = [
    "",
    "Phường Phúc Xá",
    "x" * 125,
    "x" * 126,
    "Đ" * 40_000,  # 80,000 bytes: the 64-bit length form
    "y" * 65_535,
    "y" * 65_536,
]


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        assert len(reader.buffer) == 0
        return frame
    raise AssertionError("the frame did not parse from its own bytes")


@pytest.mark.parametrize("text", TEXTS, ids=lambda t: f"{len(t.encode())}B")
def test_text_frame_is_what_websockets_sends(text: str) -> None:
    frame = parse(text_frame(text))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin is True
    assert frame.data.decode() == text
    assert text_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def test_no_raw_writer_without_uvicorn_protocol() -> None:
    async def send(message: object) -> None:
        return None

    assert RawWriter.of(None) is None
    assert RawWriter.of(send) is None


def test_uvicorn_attributes_read_are_still_there() -> None:
    """What RawWriter reads of uvicorn's protocol; a new uvicorn that moves them fails here."""
    source = inspect.getsource(websockets_sansio_impl.WebSocketsSansIOProtocol)
    for attribute in (
        "self.handshake_complete",
        "self.close_sent",
        "self.writable",
        "self.initial_response",
        "self.transport",
        "self.conn",
    ):
        assert attribute in source, attribute
    assert "def send(self, message" in source
    assert "self.disconnected" in inspect.getsource(websockets_sansio_impl)
