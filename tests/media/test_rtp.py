"""Per-subscriber stream rewriting: continuity across source switches, late packets, history."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from media.rtp import AUDIO_LEVEL, MID, Extensions, StreamRewriter, newer


def rewriter() -> StreamRewriter:
    return StreamRewriter(ssrc=0x11223344, next_seq=65530, last_ts=0xFFFFFF00)


def header(data: bytes) -> tuple[int, int, int, int, int]:
    first, second, seq, ts, ssrc = struct.unpack_from("!BBHLL", data)
    return first, second, seq, ts, ssrc


def write(r: StreamRewriter, seq: int, ts: int, now: float, payload: bytes = b"x") -> bytes:
    return r.rewrite(
        in_seq=seq,
        in_ts=ts,
        marker=1,
        payload_type=97,
        extension_block=b"",
        payload=payload,
        now=now,
        clock_rate=90000,
    )


def test_own_ssrc_pt_and_untouched_payload() -> None:
    r = rewriter()
    data = write(r, 100, 5000, 0.0, b"\x10\x00\x9d\x01\x2a")
    first, second, seq, ts, ssrc = header(data)
    assert (first, second & 0x7F, second >> 7, ssrc) == (0x80, 97, 1, 0x11223344)
    assert (seq, ts) == (65530, 0xFFFFFF00)
    assert data[12:] == b"\x10\x00\x9d\x01\x2a"


def test_sequence_and_timestamp_wrap_and_continue_across_a_source_switch() -> None:
    r = rewriter()
    for i in range(10):
        write(r, 100 + i, 5000 + 3000 * i, i / 30)
    assert r.next_seq == (65530 + 10) & 0xFFFF
    last_ts = r.last_ts
    r.reset()  # the floor passes: the new source has unrelated numbers
    data = write(r, 7, 123, 10 / 30 + 0.5)
    _, _, seq, ts, _ = header(data)
    assert seq == (65530 + 10) & 0xFFFF
    elapsed = (10 / 30 + 0.5) - 9 / 30
    assert ts == (last_ts + int(elapsed * 90000) + 1) & 0xFFFFFFFF


def test_a_late_packet_keeps_its_place_and_does_not_move_the_stream() -> None:
    r = rewriter()
    write(r, 10, 0, 0.0)
    write(r, 12, 6000, 0.066)
    expected_next = r.next_seq
    late = write(r, 11, 3000, 0.07)
    assert header(late)[2] == (65530 + 1) & 0xFFFF
    assert r.next_seq == expected_next
    assert r.stored(header(late)[2]) == late


def test_history_is_bounded_and_never_returns_another_sequence() -> None:
    r = rewriter()
    sent = [write(r, i, i * 3000, i / 30) for i in range(600)]
    assert len(r.history) == 512
    first_seq = header(sent[0])[2]
    assert r.stored(first_seq) is None  # overwritten by seq + 512
    last_seq = header(sent[-1])[2]
    assert r.stored(last_seq) == sent[-1]


@given(st.integers(0, 0xFFFF), st.integers(1, 0x7FFF))
def test_newer_is_serial_arithmetic(a: int, step: int) -> None:
    assert newer((a + step) & 0xFFFF, a)
    assert not newer(a, (a + step) & 0xFFFF)
    assert not newer(a, a)


def test_extension_block_uses_the_subscribers_ids() -> None:
    ext = Extensions.negotiated({MID: 1, AUDIO_LEVEL: 4}, "3")
    block = ext.block(0, (True, 30))
    assert block[:2] == b"\xbe\xde"
    words = struct.unpack_from("!H", block, 2)[0]
    assert len(block) == 4 + 4 * words
    assert block[4:6] == bytes([0x10, ord("3")])
    assert block[6:8] == bytes([0x40, 0x80 | 30])
    assert Extensions().block(0, None) == b""
