"""One simulated room: a point's WebSocket client that behaves as its plan says.

It does what the point page does, over the same protocol: joins with its credential, answers the
heartbeat, keeps `last_seq` and resumes after its network drops, raises its hand, answers every
roll-call with a headcount (unless it is a silent room), and, for the media rooms, receives the
hall's program with real aiortc (decoding every frame) and sends a synthetic camera once it is
given the floor. What it saw is kept as plain data for the fleet's report: the rehearsal's numbers
come from the rooms' own clocks, not from the server's account of itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from app.simulate.plan import MEDIA_WIDTH, RoomPlan

CONNECT_OPTIONS: dict[str, Any] = {
    "open_timeout": 30,
    "close_timeout": 2,
    "ping_interval": None,
    "compression": None,
    "proxy": None,
    "max_size": 1 << 20,
    "max_queue": None,
}
REQUEST_TIMEOUT_S = 20.0
MEDIA_TIMEOUT_S = 30.0
RETRY_S = (0.5, 1.0, 2.0, 4.0, 8.0)
SESSION_GONE = 4404
"""The server closes every point with this when the session ends: the room's day is over."""
FATAL_CLOSES = frozenset({4401, 4403, 4406, 4410})
"""Unauthenticated, not admitted, role not allowed, revoked: retrying would not help."""
FLOOR_CALL_ON = "floor.call_on"


class RequestFailed(RuntimeError):
    """The server answered a request with `error`: `code` is the protocol's error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class RoomLog:
    """What one room saw; sent to the orchestrator as a dict."""

    code: str
    media: bool
    silent: bool
    first_welcome_wall: float | None = None
    join_ms: float | None = None
    """From the start of its first attempt to its first `welcome`."""
    attempts: int = 0
    connects: int = 0
    resumes: list[tuple[bool, int, float]] = field(default_factory=list)
    """(resumed, replayed, ms from the reconnect attempt to the new welcome) for every drop."""
    errors: list[str] = field(default_factory=list)
    ended: bool = False
    rollcall: dict[int, dict[str, Any]] = field(default_factory=dict)
    hand: str | None = None
    call_on: list[tuple[int, float, bool]] = field(default_factory=list)
    """(seq, wall receipt time, came as replay after a drop) of each `floor.call_on` event."""
    granted: list[float] = field(default_factory=list)
    subscribe_ms: float | None = None
    program_frames: int = 0
    floor_frames: int = 0
    publish_ms: float | None = None
    published_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "media": self.media,
            "silent": self.silent,
            "joined": self.join_ms is not None,
            "join_ms": self.join_ms,
            "first_welcome_wall": self.first_welcome_wall,
            "attempts": self.attempts,
            "connects": self.connects,
            "resumes": self.resumes,
            "errors": self.errors,
            "ended": self.ended,
            "rollcall": {str(k): v for k, v in self.rollcall.items()},
            "hand": self.hand,
            "call_on": self.call_on,
            "granted": self.granted,
            "subscribe_ms": self.subscribe_ms,
            "program_frames": self.program_frames,
            "floor_frames": self.floor_frames,
            "publish_ms": self.publish_ms,
            "published_at": self.published_at,
        }


class Room:
    """A room's whole life, from its planned join to the session's end (or `stop`)."""

    def __init__(self, plan: RoomPlan, url: str, started: float) -> None:
        self.plan = plan
        self.url = url
        self.started = started
        """The simulation's start (`time.monotonic()`); `plan.join_at_s` counts from it."""
        self.log = RoomLog(code=plan.code, media=plan.media, silent=plan.silent)
        self.ws: ClientConnection | None = None
        self.connected = asyncio.Event()
        self.last_seq: int | None = None
        self.replay_left = 0
        self.welcome_seq = 0
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.answered: set[int] = set()
        self.dropping = False
        self.finished = False
        self.subscriber: Any = None
        self.publisher: Any = None
        self.publishing = False
        self.slots: list[str] = []

    # ---- the life ---------------------------------------------------------------------------

    async def run(self) -> None:
        delay = self.started + self.plan.join_at_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        first_try = time.monotonic()
        failures = 0
        dropped_at: float | None = None
        try:
            while not self.finished:
                self.log.attempts += 1
                attempt_started = time.monotonic()
                try:
                    welcome = await self._join()
                except _Fatal as exc:
                    self.log.errors.append(f"join refused: {exc}")
                    return
                except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                    failures += 1
                    if failures > len(RETRY_S):
                        self.log.errors.append(f"join failed {failures}×: {_describe(exc)}")
                        return
                    await asyncio.sleep(RETRY_S[failures - 1])
                    continue
                failures = 0
                self.log.connects += 1
                if self.log.join_ms is None:
                    self.log.join_ms = (time.monotonic() - first_try) * 1000
                    self.log.first_welcome_wall = time.time()
                    self._schedule_script()
                elif dropped_at is not None:
                    resumed = bool(welcome.get("resumed"))
                    self.log.resumes.append(
                        (
                            resumed,
                            int(welcome.get("replayed", 0)),
                            (time.monotonic() - attempt_started) * 1000,
                        )
                    )
                    if not resumed:
                        self.log.errors.append("resume not honoured after a drop")
                    dropped_at = None
                self._on_welcome(welcome)
                close = await self._read()
                self.connected.clear()
                self._fail_pending(ConnectionError("connection lost"))
                if close == SESSION_GONE:
                    self.log.ended = True
                    return
                if self.stopped():
                    return
                if self.dropping:
                    self.dropping = False
                    dropped_at = time.monotonic()
                    await asyncio.sleep(self.plan.drop_gap_s)
                    continue
                if close in FATAL_CLOSES:
                    self.log.errors.append(f"closed by the server: {close}")
                    return
                self.log.errors.append(f"connection lost unexpectedly: {close}")
                dropped_at = time.monotonic()
                await asyncio.sleep(RETRY_S[0])
        finally:
            self.finished = True

    def stopped(self) -> bool:
        return self.finished

    async def stop(self) -> None:
        """Leave (the orchestrator is done): close media and the socket, cancel the script."""
        self.finished = True
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self._close_media()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.ws.close()
            self.ws.transport.abort()

    async def _join(self) -> dict[str, Any]:
        try:
            ws = await connect(self.url, **CONNECT_OPTIONS)
        except InvalidURI as exc:
            raise _Fatal(str(exc)) from None
        hello: dict[str, Any] = {
            "type": "hello",
            "id": "hello",
            "protocol": 1,
            "auth": {"kind": "point", "credential": self.plan.credential},
            "client": {"name": "diemcau-simulate", "version": "1"},
        }
        if self.last_seq is not None:
            hello["last_seq"] = self.last_seq
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await ws.send(json.dumps(hello))
                while True:
                    message: dict[str, Any] = json.loads(await ws.recv())
                    kind = message.get("type")
                    if kind == "welcome":
                        break
                    if kind == "ping":
                        await ws.send(_pong(message))
                    elif kind == "error":
                        raise _Fatal(f"{message.get('code')}: {message.get('message')}")
        except ConnectionClosed as exc:
            ws.transport.abort()
            code = exc.rcvd.code if exc.rcvd else None
            if code in FATAL_CLOSES:
                raise _Fatal(f"closed {code}") from None
            raise
        except BaseException:
            ws.transport.abort()
            raise
        self.ws = ws
        self.connected.set()
        return message

    def _on_welcome(self, welcome: dict[str, Any]) -> None:
        # Replayed events (seq <= welcome.seq) follow; last_seq moves to welcome.seq after them.
        self.welcome_seq = int(welcome["seq"])
        self.replay_left = int(welcome.get("replayed", 0))
        if self.replay_left == 0 or self.last_seq is None:
            self.last_seq = self.welcome_seq
        self.slots = [str(s) for s in welcome.get("media", {}).get("slots", [])]
        self._on_floor(welcome.get("floor") or {}, None)
        view = welcome.get("rollcall")
        if view and view.get("phase") == "open":
            mine = view.get("mine") or {}
            if mine.get("status", "waiting") == "waiting":
                self._answer_later(int(view["round"]), time.time())
        if self.plan.media and self.subscriber is None:
            self._spawn(self._subscribe())

    async def _read(self) -> int | None:
        """Until the connection closes; returns the close code (None without a close frame)."""
        ws = self.ws
        assert ws is not None
        try:
            async for text in ws:
                received = time.time()
                message: dict[str, Any] = json.loads(text)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(_pong(message))
                elif kind == "event":
                    self._on_event(message, received)
                elif kind in ("ack", "error"):
                    future = self.pending.pop(str(message.get("id")), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif kind == "snapshot":
                    self.last_seq = int(message["seq"])
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        return ws.close_code

    def _on_event(self, message: dict[str, Any], received: float) -> None:
        seq = int(message["seq"])
        replaying = self.replay_left > 0
        if replaying:
            self.replay_left -= 1
        duplicate = self.last_seq is not None and seq <= self.last_seq
        if not duplicate:
            self.last_seq = seq
        if replaying and self.replay_left == 0:
            self.last_seq = max(seq, self.welcome_seq)
        if duplicate:
            return
        event = str(message.get("event"))
        payload: dict[str, Any] = message.get("payload") or {}
        if event.startswith("floor."):
            if event == FLOOR_CALL_ON:
                self.log.call_on.append((seq, received, replaying))
            self._on_floor(payload.get("floor") or {}, received)
        elif event == "rollcall.opened":
            self._answer_later(int(payload["round"]), received)

    def _on_floor(self, floor: dict[str, Any], received: float | None) -> None:
        holders = {h.get("point_code") for h in floor.get("holders", [])}
        if self.plan.code in holders and received is not None:
            self.log.granted.append(received)
            if self.plan.media and not self.publishing:
                self.publishing = True
                self._spawn(self._publish())

    # ---- the script -------------------------------------------------------------------------

    def _schedule_script(self) -> None:
        if self.plan.drop_at_s is not None:
            self._spawn(self._drop(self.plan.drop_at_s))
        if self.plan.hand_at_s is not None:
            self._spawn(self._raise_hand(self.plan.hand_at_s))

    async def _drop(self, after_s: float) -> None:
        """The room's network goes away: no close frame, the TCP connection simply dies."""
        await asyncio.sleep(after_s)
        if self.ws is not None and self.connected.is_set() and not self.finished:
            self.dropping = True
            self.ws.transport.abort()

    async def _raise_hand(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        message = {"type": "floor", "action": "request", "topic": self.plan.hand_topic}
        try:
            await self.request(message)
            self.log.hand = "ack"
        except RequestFailed as exc:
            self.log.hand = f"error {exc.code}"
            self.log.errors.append(f"hand refused: {exc.code}")
        except (ConnectionError, TimeoutError) as exc:
            self.log.hand = _describe(exc)
            if not self.finished:
                self.log.errors.append(f"hand: {_describe(exc)}")

    def _answer_later(self, round_: int, opened: float) -> None:
        if self.plan.silent or round_ in self.answered:
            return
        self.answered.add(round_)
        self.log.rollcall[round_] = {"opened_seen": opened, "outcome": "pending"}
        self._spawn(self._answer(round_, opened))

    async def _answer(self, round_: int, opened: float) -> None:
        """Count the room, then confirm; the same key on every retry, so a retry after a drop
        cannot count the room twice."""
        await asyncio.sleep(max(0.0, opened + self.plan.answer_delay_s - time.time()))
        record = self.log.rollcall[round_]
        message = {
            "type": "rollcall",
            "action": "confirm",
            "round": round_,
            "headcount": self.plan.headcount,
            "key": uuid.uuid4().hex,
        }
        sent = time.time()
        record["sent"] = sent
        try:
            ack = await self.request(message, retries=4, trace=record)
        except RequestFailed as exc:
            record["outcome"] = f"error {exc.code}"
            self.log.errors.append(f"roll-call {round_} refused: {exc.code}")
            return
        except (ConnectionError, TimeoutError) as exc:
            record["outcome"] = _describe(exc)
            if not self.finished:
                self.log.errors.append(f"roll-call {round_}: {_describe(exc)}")
            return
        done = time.time()
        record["outcome"] = "ack"
        # From the send that got the answer: a retry after a drop waited for the network, not
        # for the server (the whole wait is in `acked - sent`).
        record["ack_ms"] = (done - float(record["last_sent"])) * 1000
        record["status"] = ack.get("result", {}).get("record", {}).get("status")
        record["acked"] = done

    async def request(
        self, message: dict[str, Any], retries: int = 1, trace: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send with a fresh id and wait for its ack; after a lost connection, wait for the next
        one and send again (up to `retries` times). `trace` gets the last send's time and the
        number of sends."""
        for attempt in range(retries + 1):
            async with asyncio.timeout(REQUEST_TIMEOUT_S * 2):
                await self.connected.wait()
            ws = self.ws
            assert ws is not None
            request_id = f"r{uuid.uuid4().hex[:12]}"
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.pending[request_id] = future
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    if trace is not None:
                        trace["last_sent"] = time.time()
                        trace["sends"] = attempt + 1
                    await ws.send(json.dumps({**message, "id": request_id}))
                    reply = await future
            except (ConnectionError, ConnectionClosed):
                self.pending.pop(request_id, None)
                if attempt == retries or self.finished:
                    raise ConnectionError("connection lost before the answer") from None
                continue
            if reply.get("type") == "error":
                code = str(reply.get("code"))
                if code == "unavailable" and attempt < retries:
                    await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
                    continue
                raise RequestFailed(code)
            return reply
        raise ConnectionError("no answer")

    def _fail_pending(self, exc: Exception) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(exc)
        self.pending.clear()

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ---- media --------------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        """Receive every slot the welcome names (program, floor), decoding, as the point page does."""
        from media.loadgen import SubscriberClient

        if not self.slots:
            self.log.errors.append("media: the welcome offers no slots")
            return
        started = time.monotonic()
        try:
            subscriber = SubscriberClient(tuple(self.slots))
            self.subscriber = subscriber
            offer = await subscriber.offer()
            reply = await self.request({"type": "media.subscribe", "sdp": offer})
            await subscriber.accept(str(reply["result"]["sdp"]))
            async with asyncio.timeout(MEDIA_TIMEOUT_S):
                while subscriber.pc.connectionState != "connected":
                    if subscriber.pc.connectionState in ("failed", "closed"):
                        raise ConnectionError(f"peer {subscriber.pc.connectionState}")
                    await asyncio.sleep(0.05)
            self.log.subscribe_ms = (time.monotonic() - started) * 1000
        except RequestFailed as exc:
            self.log.errors.append(f"media.subscribe refused: {exc.code}")
        except (ConnectionError, TimeoutError, ValueError) as exc:
            if not self.finished:
                self.log.errors.append(f"media.subscribe: {_describe(exc)}")

    async def _publish(self) -> None:
        """The room's camera and microphone go on when it is given the floor, and stay on."""
        from media.loadgen import PublisherClient

        started = time.monotonic()
        assert self.plan.media_height is not None
        try:
            publisher = PublisherClient(
                width=MEDIA_WIDTH, height=self.plan.media_height, fps=10, amplitude=6000
            )
            self.publisher = publisher
            offer = await publisher.offer()
            reply = await self.request({"type": "media.publish", "sdp": offer})
            await publisher.accept(str(reply["result"]["sdp"]))
            async with asyncio.timeout(MEDIA_TIMEOUT_S):
                while publisher.pc.connectionState != "connected":
                    if publisher.pc.connectionState in ("failed", "closed"):
                        raise ConnectionError(f"peer {publisher.pc.connectionState}")
                    await asyncio.sleep(0.02)
            self.log.publish_ms = (time.monotonic() - started) * 1000
            self.log.published_at = time.time()
        except RequestFailed as exc:
            self.log.errors.append(f"media.publish refused: {exc.code}")
        except (ConnectionError, TimeoutError, ValueError) as exc:
            if not self.finished:
                self.log.errors.append(f"media.publish: {_describe(exc)}")

    def count_frames(self) -> None:
        if self.subscriber is not None:
            logs = self.subscriber.logs
            self.log.program_frames = logs["program/video"].frames if "program/video" in logs else 0
            self.log.floor_frames = logs["floor/video"].frames if "floor/video" in logs else 0

    async def _close_media(self) -> None:
        self.count_frames()
        for peer in (self.publisher, self.subscriber):
            if peer is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await peer.close()
        self.publisher = self.subscriber = None


class _Fatal(Exception):
    """The server refused the room for good (bad credential, not admitted, revoked)."""


def _pong(message: dict[str, Any]) -> str:
    return json.dumps({"type": "pong", "nonce": message.get("nonce", 0)})


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        return f"closed {exc.rcvd.code if exc.rcvd else 'without a close frame'}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {exc}"[:200]
