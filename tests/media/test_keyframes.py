"""Keyframe starts, from payload descriptors only (RFC 7741, RFC 6184)."""

from __future__ import annotations

from media.keyframes import h264_keyframe_start, keyframe_start, vp8_keyframe_start


def test_vp8() -> None:
    assert vp8_keyframe_start(bytes([0x10, 0x00]))  # S=1, PID=0, P=0: key frame
    assert not vp8_keyframe_start(bytes([0x10, 0x01]))  # P=1: inter frame
    assert not vp8_keyframe_start(bytes([0x00, 0x00]))  # not the start of a partition
    # X with a 15-bit picture id, then the VP8 header
    assert vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x00]))
    assert not vp8_keyframe_start(bytes([0x90, 0x80, 0x81]))  # truncated
    assert not vp8_keyframe_start(b"")


def test_h264() -> None:
    assert h264_keyframe_start(bytes([0x65, 0x88]))  # IDR
    assert h264_keyframe_start(bytes([0x67, 0x42]))  # SPS
    assert not h264_keyframe_start(bytes([0x41, 0x9A]))  # non-IDR slice
    stap = bytes([0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE])
    assert h264_keyframe_start(stap)
    assert h264_keyframe_start(bytes([0x7C, 0x85, 0x00]))  # FU-A start of an IDR
    assert not h264_keyframe_start(bytes([0x7C, 0x05, 0x00]))  # FU-A continuation
    assert not h264_keyframe_start(bytes([0x18, 0xFF]))  # truncated STAP-A
    assert not h264_keyframe_start(b"")


def test_other_codecs_never_gate() -> None:
    assert not keyframe_start("opus", b"\x10\x00")
    assert keyframe_start("vp8", bytes([0x10, 0x00]))
    assert keyframe_start("H264", bytes([0x65]))
