"""Where a keyframe starts in VP8 (RFC 7741) and H264 (RFC 6184) RTP payloads.

A video subscriber is held until a keyframe: forwarding the middle of a GOP to a new decoder only
produces garbage or a frozen picture. Only the payload descriptor is read, never the picture.
"""

from __future__ import annotations


def vp8_keyframe_start(payload: bytes) -> bool:
    """First packet of a VP8 key frame: S=1, PartID=0 and the inverse key frame bit P=0."""
    if not payload:
        return False
    b0 = payload[0]
    if not (b0 & 0x10) or (b0 & 0x0F) != 0:
        return False
    i = 1
    if b0 & 0x80:
        if len(payload) < 2:
            return False
        b1 = payload[1]
        i = 2
        if b1 & 0x80:
            if len(payload) <= i:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if b1 & 0x40:
            i += 1
        if b1 & 0x30:
            i += 1
    return len(payload) > i and (payload[i] & 0x01) == 0


_H264_KEY_NALS = (5, 7)  # IDR slice, sequence parameter set


def h264_keyframe_start(payload: bytes) -> bool:
    """An IDR or SPS NAL unit starts here (single NAL, STAP-A aggregate, or FU-A start)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_NALS:
        return True
    if nal_type == 24:
        i = 1
        while i + 2 < len(payload):
            size = (payload[i] << 8) | payload[i + 1]
            if payload[i + 2] & 0x1F in _H264_KEY_NALS:
                return True
            i += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in _H264_KEY_NALS
    return False


def keyframe_start(codec_name: str, payload: bytes) -> bool:
    name = codec_name.upper()
    if name == "VP8":
        return vp8_keyframe_start(payload)
    if name == "H264":
        return h264_keyframe_start(payload)
    return False
