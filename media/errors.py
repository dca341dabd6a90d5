"""Typed media errors; the WebSocket and WHIP edges turn them into `{code, message, details}`."""

from __future__ import annotations

from app.errors import Conflict, DiemcauError, NotFound


class MediaError(DiemcauError):
    code = "media_error"
    status = 400


class MediaOfferInvalid(MediaError):
    """The SDP offer could not be parsed or does not offer what the call needs."""

    code = "media_offer_invalid"
    status = 400


class MediaCodecUnsupported(MediaError):
    """No codec in common with the source (the server never transcodes)."""

    code = "media_codec_unsupported"
    status = 422


class MediaRoomNotFound(NotFound):
    code = "media_room_not_found"


class MediaParticipantNotFound(NotFound):
    code = "media_participant_not_found"


class MediaParticipantExists(Conflict):
    code = "media_participant_exists"


class MediaWorkerUnavailable(MediaError):
    """A forwarding process died or did not answer in time."""

    code = "media_worker_unavailable"
    status = 503


class AiortcInternalsChanged(RuntimeError):
    """The pinned aiortc internals the forwarder hooks are not what docs/media-plane.md verified."""
