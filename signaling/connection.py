"""One live WebSocket: its identity, a bounded outgoing queue and the task that drains it.

Senders never await a socket: `send` appends to the queue and returns, so one slow point cannot hold
up a broadcast. A queue that overflows closes the connection with 4408; the client resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from signaling.codes import CLOSE_REASONS, CloseCode
from signaling.wsframe import RawWriter

logger = logging.getLogger("diemcau.ws")


@dataclass
class TokenBucket:
    """Per-connection message rate limit."""

    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


Transport = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
# Where the edge puts the server's own ASGI send in a WebSocket's scope (app.middleware).
TRANSPORT_SEND = "diemcau.transport_send"


class _Yield:
    """Hands the future a started coroutine waits on back to the event loop."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)


async def _carry_on(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    """Finish a send that suspended when it was stepped eagerly (the socket's buffer was full)."""
    while True:
        try:
            result = await _Yield(yielded)
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(result)
            except StopIteration:
                return


class Connection:
    def __init__(
        self,
        websocket: WebSocket,
        *,
        connection_id: str,
        address: str,
        queue_limit: int,
        rate: TokenBucket,
        transport: Transport | None = None,
    ) -> None:
        self.websocket = websocket
        # The server's own ASGI send, under every middleware: a broadcast to thousands of
        # connections pays for each layer on every message otherwise.
        self._transport = transport
        self._raw = RawWriter.of(transport)
        self._inflight: asyncio.Future[None] | None = None
        self.id = connection_id
        self.address = address
        self.rate = rate
        self.queue_limit = queue_limit
        self.role = ""
        self.session_id = 0
        self.point_id: int | None = None
        self.account_id: int | None = None
        self.actor = ""  # how the session log names who acted on this connection
        self.client_label: str | None = None
        now = time.monotonic()
        self.opened_at = now
        self.last_received = now
        self.ping_nonce = 0
        self.ping_sent_at: float | None = None
        # The oldest ping not answered yet: a link whose pongs stop coming is judged on it.
        self.awaiting_since: float | None = None
        self.next_ping_at = now
        self.rtt_ms: float | None = None
        self.reported_rtt_ms: float | None = None
        self.loss_pct: float | None = None
        self.close_code: CloseCode | None = None
        # Events up to this seq reached the client in its welcome or replay; live ones skip them.
        self.min_seq = 0
        self.rejected_in_a_row = 0
        self._items: deque[tuple[str, bool]] = deque()
        # Queued messages exempt from queue_limit: a resume's replay, which resume_max_events
        # bounds and which may be longer than the queue.
        self._exempt = 0
        # Called once when the queue overflows (the service counts it).
        self.on_overflow: Callable[[], None] | None = None
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.sent = 0

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    def start(self) -> None:
        self._writer = asyncio.create_task(self._drain(), name=f"ws-writer-{self.id}")

    def send(self, text: str, *, exempt: bool = False, frame: bytes | None = None) -> bool:
        """Queue a message; False (and a 4408 close) when the queue is full. An `exempt` message
        neither counts against the limit nor overflows it. A broadcast passes the message's
        `frame` (signaling.wsframe), written as it is when nothing waits before it."""
        if self.close_code is not None:
            return False
        if self._transport is not None and not self._items and self._inflight is None:
            if frame is not None and self._raw is not None and self._raw.write(frame):
                self.sent += 1
                return True
            self._send_now(text)
            return True
        if not exempt and len(self._items) - self._exempt >= self.queue_limit:
            self.close(CloseCode.OVERFLOW, urgent=True)
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        self._items.append((text, exempt))
        self._exempt += exempt
        self._wake.set()
        return True

    def _send_now(self, text: str) -> None:
        """Send without a task switch when the socket takes it at once, which is nearly always;
        a send that has to wait for the socket's buffer is finished by a task, and later
        messages queue behind it."""
        assert self._transport is not None
        coro = self._transport({"type": "websocket.send", "text": text})
        try:
            yielded = coro.send(None)
        except StopIteration:
            self.sent += 1
            return
        except Exception as exc:
            logger.debug("eager send on %s failed: %r", self.id, exc)
            self.close(CloseCode.GOING_AWAY, urgent=True)
            return
        self._inflight = asyncio.ensure_future(_carry_on(coro, yielded))
        self._inflight.add_done_callback(self._inflight_done)

    def _inflight_done(self, future: asyncio.Future[None]) -> None:
        self._inflight = None
        if future.cancelled() or future.exception() is not None:
            self.close(CloseCode.GOING_AWAY, urgent=True)
            return
        self.sent += 1
        self._wake.set()

    def close(self, code: CloseCode, *, urgent: bool = False) -> None:
        """Close after what is queued (or at once when urgent); idempotent."""
        if self.close_code is not None:
            return
        self.close_code = code
        if urgent:
            self._items.clear()
            self._exempt = 0
        self._wake.set()

    async def _drain(self) -> None:
        ws = self.websocket
        try:
            while True:
                while self._items or self._inflight is not None:
                    if self._inflight is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.shield(self._inflight)
                        if self.close_code is not None and not self._items:
                            break
                        continue
                    text, exempt = self._items.popleft()
                    self._exempt -= exempt
                    if self._transport is not None:
                        await self._transport({"type": "websocket.send", "text": text})
                    else:
                        await ws.send_text(text)
                    self.sent += 1
                if self.close_code is not None:
                    break
                self._wake.clear()
                if not self._items and self.close_code is None:
                    await self._wake.wait()
            if ws.application_state is not WebSocketState.DISCONNECTED:
                await ws.close(int(self.close_code), CLOSE_REASONS.get(self.close_code, ""))
        except (RuntimeError, OSError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            logger.debug("writer of %s stopped: %s", self.id, exc)
        except Exception as exc:  # a send on a socket the peer closed
            logger.debug("writer of %s stopped: %r", self.id, exc)

    async def stop(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def wait_closed(self, within_s: float) -> None:
        if self._writer is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._writer), within_s)
