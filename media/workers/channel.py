"""The control channel between the API process and one media worker: framed messages on a socket.

Each end is an asyncio stream over one half of a `socket.socketpair()`, so neither loop blocks on
the other and a worker sees end-of-file the moment the API process goes away (for any reason,
SIGKILL included) and shuts down instead of lingering as an orphan.

Frames are a 4-byte length and a pickle. Pickle is safe here only because both ends are this code:
the socket pair is created by the API process and handed to its own child, no other process can
reach it. It also carries the interface's dataclasses (answers, stats) without a second schema.

Typed errors cross as (module, class name, message, details) and are rebuilt as the same class, so
signaling handles a `MediaOfferInvalid` from a worker exactly as one from the embedded backend.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from app.errors import DiemcauError
from media.errors import MediaError

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""A stats reply for a room of several thousand points is a few MB; anything far larger is a bug."""

_LENGTH = struct.Struct("!I")


class ChannelClosed(ConnectionError):
    """The other end went away, or sent something that is not a frame."""


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    op: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    ok: bool
    value: Any


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A worker-side exception, in a form that pickles whatever the exception holds."""

    typed: bool
    module: str
    name: str
    message: str
    details: dict[str, Any]


async def read_frame(reader: asyncio.StreamReader) -> Any:
    try:
        header = await reader.readexactly(_LENGTH.size)
        (size,) = _LENGTH.unpack(header)
        if size > MAX_FRAME_BYTES:
            raise ChannelClosed(f"control frame of {size} bytes is larger than {MAX_FRAME_BYTES}")
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise ChannelClosed("the other end closed the control channel") from exc
    return pickle.loads(body)  # noqa: S301 - our own child process over a private socket pair


def encode_frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > MAX_FRAME_BYTES:
        raise ValueError(f"control frame of {len(body)} bytes is larger than {MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(body)) + body


def describe_error(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, DiemcauError):
        details = exc.details
        try:
            pickle.dumps(details)
        except Exception:  # any unpicklable value: send its text instead
            details = {key: repr(value) for key, value in details.items()}
        cls = type(exc)
        return ErrorInfo(True, cls.__module__, cls.__qualname__, exc.message, details)
    return ErrorInfo(False, type(exc).__module__, type(exc).__qualname__, str(exc), {})


def rebuild_error(info: ErrorInfo, worker: int) -> Exception:
    """The same error class with the same message and details; an unexpected failure (a bug in the
    worker, already logged there with its traceback) becomes a plain `MediaError` naming it."""
    if info.typed:
        cls = _error_class(info.module, info.name)
        if cls is not None:
            error = cls.__new__(cls)
            DiemcauError.__init__(error, info.message, details=info.details)
            return error
    return MediaError(
        f"media worker {worker} failed: {info.name}: {info.message}",
        details={"worker": worker, "error": f"{info.module}.{info.name}"},
    )


def _error_class(module: str, name: str) -> type[DiemcauError] | None:
    try:
        found: Any = importlib.import_module(module)
    except ImportError:
        return None
    for part in name.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and issubclass(found, DiemcauError):
        return found
    return None
