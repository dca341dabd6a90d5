"""The live state of one session in this process: its connections, each point's presence, the wall.

Everything here runs on the event loop and never awaits a socket or the database on the hot path:
broadcasts queue to each connection, interval changes queue to the batch writer, presence steps the
pure machine in bridges.presence.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.settings import Settings
from bridges.presence import (
    GraceCleared,
    GraceStarted,
    IntervalClosed,
    IntervalOpened,
    Presence,
    PresenceInput,
    PresenceState,
    StateChanged,
    step,
)
from models import ConferenceSession, Invitation, Point
from signaling.audience import Audience, audience_of
from signaling.codes import CloseCode
from signaling.connection import Connection
from signaling.hub import EventHub, LoggedEvent, Watch
from signaling.intervals import Closed, IntervalWriter, Opened
from signaling.metrics import SignalingMetrics
from signaling.protocol import (
    AreaCounts,
    Event,
    ServerPing,
    SessionSnapshot,
    WallDelta,
    WallPoint,
    WallSnapshot,
)
from signaling.wsframe import text_frame

logger = logging.getLogger("diemcau.room")
STATES = [s.value for s in PresenceState]
HEARTBEAT_SLICE = 400
WALL_ROLES = frozenset({"operator", "moderator", "observer"})
# Connections served per loop turn in a fan-out (~25 µs each here: ~10 ms a slice).
FANOUT_SLICE = 400


def session_snapshot(session: ConferenceSession) -> SessionSnapshot:
    return SessionSnapshot(
        id=session.id,
        title=session.title,
        hall_name=session.hall_name,
        status=session.status.value,
        scheduled_start=session.scheduled_start.isoformat() if session.scheduled_start else None,
        scheduled_end=session.scheduled_end.isoformat() if session.scheduled_end else None,
        settings=session.settings,
    )


@dataclass
class LivePoint:
    point_id: int
    code: str
    name: str
    area_code: str | None
    area_name: str | None
    presence: Presence
    district_name: str | None = None
    province_name: str | None = None
    credential_hash: str | None = None
    connection: Connection | None = None
    last_seen: float | None = None
    client: str | None = None
    grace: asyncio.TimerHandle | None = None
    link_ok: bool = True

    def wall(self) -> WallPoint:
        conn = self.connection
        rtt = None
        loss = None
        if conn is not None:
            rtt = conn.rtt_ms if conn.rtt_ms is not None else conn.reported_rtt_ms
            loss = conn.loss_pct
        return WallPoint(
            code=self.code,
            name=self.name,
            area_code=self.area_code,
            area_name=self.area_name,
            state=self.presence.state.value,
            since=self.presence.since,
            last_seen=self.last_seen,
            rtt_ms=None if rtt is None else round(rtt, 1),
            loss_pct=None if loss is None else round(loss, 2),
            client=self.client,
        )


@dataclass
class AreaTally:
    code: str
    name: str | None
    counts: Counter[str] = field(default_factory=Counter)

    def view(self) -> AreaCounts:
        return AreaCounts(
            code=self.code, name=self.name, counts={s: self.counts.get(s, 0) for s in STATES}
        )


class SessionRoom:
    def __init__(
        self,
        session_id: int,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        hub: EventHub,
        metrics: SignalingMetrics,
        intervals: IntervalWriter,
        on_ended: Callable[[int], None] | None = None,
        on_point_offline: Callable[[int, int], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.on_ended = on_ended
        self.on_point_offline = on_point_offline
        self.settings = settings
        self.sessions = sessions
        self.hub = hub
        self.metrics = metrics
        self.intervals = intervals
        self.points: dict[int, LivePoint] = {}
        self.by_code: dict[str, LivePoint] = {}
        # Join credentials (their hashes) of this session's points: a point's hello is answered
        # from memory; the events that change a credential keep this current.
        self.by_hash: dict[str, LivePoint] = {}
        self.snapshot: SessionSnapshot | None = None
        self.snapshot_seq = 0
        self.staff: set[Connection] = set()
        self.point_connections: set[Connection] = set()
        self.counts: Counter[str] = Counter()
        self.areas: dict[str, AreaTally] = {}
        self.delivered_seq = 0
        # The seqs of recent events addressed to points, ascending: a point's resume is bounded
        # by what it missed, not by the staff-only events (a roll-call's thousands of answers)
        # written meanwhile. Complete for seqs after `point_seqs_from`.
        self.point_seqs: list[int] = []
        self.point_seqs_from = 0
        self.status = ""
        self._dirty_points: set[int] = set()
        self._dirty_areas: set[str] = set()
        self._watch: Watch | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = False

    # ---- loading ---------------------------------------------------------------------------

    async def load(self) -> None:
        async with self.sessions() as db:
            session = await db.get(ConferenceSession, self.session_id)
            if session is None:
                raise LookupError(self.session_id)
            self.delivered_seq = session.last_seq
            self.point_seqs_from = session.last_seq
            self.status = session.status.value
            self._take_snapshot(session)
            await self._load_points(db, None)
        # Staff get the whole wall in their snapshot; deltas start from here.
        self._dirty_points.clear()
        self._dirty_areas.clear()
        self._watch = self.hub.watch(self.session_id, self.delivered_seq, self.deliver)
        self._tasks = [
            asyncio.create_task(self._heartbeat(), name=f"room-heartbeat-{self.session_id}"),
            asyncio.create_task(self._wall_flusher(), name=f"room-wall-{self.session_id}"),
        ]

    def _take_snapshot(self, session: ConferenceSession) -> None:
        """The session as a joining client sees it, and the seq it is current to (events after
        it are replayed to the joiner, so a snapshot a moment old is still exact)."""
        self.snapshot = session_snapshot(session)
        self.snapshot_seq = session.last_seq

    def _advance_snapshot(self, logged: LoggedEvent) -> None:
        """Apply an event to the snapshot, so that it stays exact without a read (events come
        in seq order, every one of them)."""
        if self.snapshot is None or logged.seq <= self.snapshot_seq:
            return
        self.snapshot_seq = logged.seq
        payload = logged.payload
        update: dict[str, Any] = {}
        if logged.type == "session.status_changed" and "to" in payload:
            update["status"] = str(payload["to"])
        elif logged.type == "session.updated":
            changes = payload.get("changes", {})
            for key in ("title", "hall_name", "scheduled_start", "scheduled_end"):
                if key in changes:
                    update[key] = changes[key]
            if isinstance(changes.get("settings"), dict):
                update["settings"] = {**self.snapshot.settings, **changes["settings"]}
        if update:
            self.snapshot = self.snapshot.model_copy(update=update)

    def _set_hash(self, live: LivePoint, credential_hash: str | None) -> None:
        if live.credential_hash is not None:
            self.by_hash.pop(live.credential_hash, None)
        live.credential_hash = credential_hash
        if credential_hash is not None:
            self.by_hash[credential_hash] = live

    async def _load_points(self, db: AsyncSession, codes: Sequence[str] | None) -> None:
        statement = (
            select(Point, Invitation.credential_hash)
            .join(Invitation, Invitation.point_id == Point.id)
            .where(Invitation.session_id == self.session_id, Invitation.revoked.is_(False))
        )
        if codes is not None:
            statement = statement.where(Point.code.in_(codes))
        now = time.time()
        for point, credential_hash in await db.execute(statement):
            known = self.points.get(point.id)
            if known is not None:
                self._set_hash(known, credential_hash)
                continue
            area_code = point.district_code or point.province_code
            area_name = point.district_name if point.district_code else point.province_name
            live = LivePoint(
                point_id=point.id,
                code=point.code,
                name=point.name,
                area_code=area_code,
                area_name=area_name,
                presence=Presence.invited(now),
                district_name=point.district_name,
                province_name=point.province_name,
            )
            self.points[point.id] = live
            self.by_code[point.code] = live
            self._set_hash(live, credential_hash)
            self._count(live, None, live.presence.state.value)

    async def reload_codes(self, codes: list[str]) -> None:
        async with self.sessions() as db:
            await self._load_points(db, codes)

    # ---- counts and the wall ---------------------------------------------------------------

    def _count(self, live: LivePoint, old: str | None, new: str | None) -> None:
        area_key = live.area_code or "-"
        tally = self.areas.get(area_key)
        if tally is None:
            tally = self.areas[area_key] = AreaTally(area_key, live.area_name)
        for counter, gauge_sign in ((self.counts, 1), (tally.counts, 0)):
            if old is not None:
                counter[old] -= 1
            if new is not None:
                counter[new] += 1
            if gauge_sign:
                if old is not None:
                    self.metrics.presence.labels(old).dec()
                if new is not None:
                    self.metrics.presence.labels(new).inc()
        self._dirty_areas.add(area_key)
        self._dirty_points.add(live.point_id)

    def total_counts(self) -> dict[str, int]:
        counts = {s: self.counts.get(s, 0) for s in STATES}
        counts["total"] = len(self.points)
        return counts

    def wall_snapshot(self) -> WallSnapshot:
        return WallSnapshot(
            at=time.time(),
            counts=self.total_counts(),
            areas=[tally.view() for tally in self.areas.values()],
            points=[live.wall() for live in self.points.values()],
        )

    def _mark(self, live: LivePoint) -> None:
        self._dirty_points.add(live.point_id)

    async def _wall_flusher(self) -> None:
        while True:
            await asyncio.sleep(self.settings.wall_delta_interval_s)
            if not self._dirty_points and not self._dirty_areas:
                continue
            points, areas = self._dirty_points, self._dirty_areas
            self._dirty_points, self._dirty_areas = set(), set()
            if not self.staff:
                continue
            delta = WallDelta(
                at=time.time(),
                counts=self.total_counts(),
                areas=[self.areas[a].view() for a in areas if a in self.areas],
                points=[self.points[p].wall() for p in points if p in self.points],
            )
            self.send_staff(delta.model_dump_json(), "wall.delta")

    # ---- sending ---------------------------------------------------------------------------

    def send_staff(self, text: str, kind: str) -> None:
        """To the staff who watch the wall (the hall page does not)."""
        frame = text_frame(text)
        for conn in list(self.staff):
            if conn.role not in WALL_ROLES:
                continue
            if conn.send(text, frame=frame):
                self.metrics.messages_out.labels(kind).inc()

    def _index_point_event(self, seq: int) -> None:
        self.point_seqs.append(seq)
        excess = len(self.point_seqs) - (self.settings.resume_max_events + 1)
        if excess > 0:
            self.point_seqs_from = self.point_seqs[excess - 1]
            del self.point_seqs[:excess]

    def missed_by_a_point(self, last_seq: int) -> int | None:
        """How many events for points were delivered after `last_seq`; None when the index does
        not reach back that far (more than resume_max_events of them, or before this room)."""
        if last_seq < self.point_seqs_from or last_seq > self.delivered_seq:
            return None
        return len(self.point_seqs) - bisect.bisect_right(self.point_seqs, last_seq)

    async def deliver(self, events: Sequence[LoggedEvent]) -> None:
        """Fan committed events out to every local connection they are for, in seq order.

        Sent in slices with a loop turn between them: one event to 3,321 points is ~80 ms of
        work, and pings, hellos and other sessions must not wait that long for the loop.
        """
        for logged in events:
            if logged.seq <= self.delivered_seq:
                continue
            started = time.perf_counter()
            text = Event(
                seq=logged.seq,
                event=logged.type,
                actor=logged.actor,
                at=logged.at,
                payload=logged.payload,
            ).model_dump_json()
            frame = text_frame(text)
            targets: list[Connection] = list(self.staff)
            if audience_of(logged.type) is Audience.EVERYONE:
                targets.extend(self.point_connections)
                self._index_point_event(logged.seq)
            seq = logged.seq
            # From here a joining connection replays this event from the log (it is not in
            # `targets`), so it is counted as delivered before the slices go out.
            self.delivered_seq = seq
            # An overflow is counted once, by the connection (Connection.on_overflow).
            for start in range(0, len(targets), FANOUT_SLICE):
                if start:
                    await asyncio.sleep(0)
                for conn in targets[start : start + FANOUT_SLICE]:
                    if seq > conn.min_seq:
                        conn.send(text, frame=frame)
            self.metrics.messages_out.labels("event").inc(len(targets))
            self.metrics.fanout_seconds.observe(time.perf_counter() - started)
            self._react(logged)

    def _react(self, logged: LoggedEvent) -> None:
        """What the live side does about an event beyond forwarding it."""
        payload = logged.payload
        self._advance_snapshot(logged)
        if logged.type in ("credentials.issued", "credential.rotated", "invitation.revoked"):
            codes = [str(c) for c in payload.get("point_codes", [payload.get("point_code")])]
            for code in codes:
                live = self.by_code.get(code)
                if live is not None:
                    self._set_hash(live, None)
            if logged.type != "invitation.revoked":
                self._spawn(self.reload_codes(codes))
        if logged.type == "session.status_changed":
            self.status = str(payload.get("to", self.status))
            if self.status in ("ended", "cancelled"):
                for conn in list(self.point_connections):
                    conn.close(CloseCode.SESSION_GONE)
                if self.on_ended is not None:
                    self.on_ended(self.session_id)
        elif logged.type == "invitations.added":
            self._spawn(self.reload_codes([str(c) for c in payload.get("point_codes", [])]))
        elif logged.type in ("invitation.revoked", "credential.rotated"):
            live = self.by_code.get(str(payload.get("point_code")))
            if live is not None and live.connection is not None:
                live.connection.close(CloseCode.REVOKED)
            if live is not None and logged.type == "invitation.revoked":
                self._remove(live)
        elif logged.type == "credentials.issued" and payload.get("rotated"):
            for code in payload.get("point_codes", []):
                live = self.by_code.get(str(code))
                if live is not None and live.connection is not None:
                    live.connection.close(CloseCode.REVOKED)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"room-{self.session_id}")
        self._tasks.append(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("room %s task failed", self.session_id, exc_info=task.exception())

    def _remove(self, live: LivePoint) -> None:
        if live.presence.state not in (PresenceState.OFFLINE, PresenceState.INVITED):
            self._apply(live, PresenceInput.LEAVE)
        self._count(live, live.presence.state.value, None)
        self.points.pop(live.point_id, None)
        self.by_code.pop(live.code, None)
        self._set_hash(live, None)
        if live.grace is not None:
            live.grace.cancel()

    # ---- presence --------------------------------------------------------------------------

    def _apply(self, live: LivePoint, command: PresenceInput) -> None:
        now = max(time.time(), live.presence.since)
        presence, effects = step(
            live.presence, command, now=now, grace_s=self.settings.resume_window_s
        )
        live.presence = presence
        for effect in effects:
            if isinstance(effect, StateChanged):
                self._count(live, effect.old.value, effect.new.value)
                if effect.new is PresenceState.OFFLINE and self.on_point_offline is not None:
                    self.on_point_offline(self.session_id, live.point_id)
            elif isinstance(effect, IntervalOpened):
                self.intervals.add(Opened(self.session_id, live.point_id, effect.at, live.client))
            elif isinstance(effect, IntervalClosed):
                self.intervals.add(Closed(self.session_id, live.point_id, effect.at, effect.reason))
            elif isinstance(effect, GraceStarted):
                if live.grace is not None:
                    live.grace.cancel()
                delay = max(0.0, effect.deadline - time.time())
                live.grace = asyncio.get_running_loop().call_later(
                    delay, self._grace_expired, live.point_id
                )
            elif isinstance(effect, GraceCleared) and live.grace is not None:
                live.grace.cancel()
                live.grace = None
        self._mark(live)

    def online_points(self) -> set[int]:
        """Invited points present now, a point inside its resume window included."""
        return {
            point_id
            for point_id, live in self.points.items()
            if live.presence.state in (PresenceState.ONLINE, PresenceState.DEGRADED)
        }

    def _grace_expired(self, point_id: int) -> None:
        live = self.points.get(point_id)
        if live is None:
            return
        live.grace = None
        p = live.presence
        if p.state is PresenceState.DEGRADED and not p.connected:
            self._apply(live, PresenceInput.GRACE_EXPIRED)

    def in_grace(self, live: LivePoint) -> bool:
        return live.presence.state is PresenceState.DEGRADED and not live.presence.connected

    def connect_point(self, live: LivePoint, conn: Connection) -> None:
        previous = live.connection
        live.connection = conn
        live.client = conn.client_label
        live.last_seen = time.time()
        live.link_ok = True
        self._apply(live, PresenceInput.CONNECT)
        if previous is not None and previous is not conn:
            self.point_connections.discard(previous)
            previous.close(CloseCode.REPLACED)

    def join_point(self, live: LivePoint, conn: Connection) -> None:
        self.point_connections.add(conn)
        self._apply(live, PresenceInput.JOIN)

    def disconnect_point(self, conn: Connection, *, leave: bool) -> None:
        self.point_connections.discard(conn)
        live = self.points.get(conn.point_id or -1)
        if live is None or live.connection is not conn:
            return
        live.connection = None
        live.last_seen = time.time()
        state = live.presence.state
        if state in (PresenceState.OFFLINE, PresenceState.INVITED):
            return
        self._apply(live, PresenceInput.LEAVE if leave else PresenceInput.DISCONNECT)

    def link_report(self, conn: Connection, *, measured: bool = True) -> None:
        """Re-judge a point's link after a pong or a stats report (`measured`: the wall shows the
        new numbers), or after a missed pong (only a state change is news then)."""
        live = self.points.get(conn.point_id or -1)
        if live is None or live.connection is not conn or not live.presence.connected:
            return
        # When the point was last heard from: a missed pong also lands here and must not count.
        live.last_seen = time.time() - (time.monotonic() - conn.last_received)
        settings = self.settings
        overdue = (
            conn.awaiting_since is not None
            and time.monotonic() - conn.awaiting_since > settings.heartbeat_interval_s
        )
        rtts = [r for r in (conn.rtt_ms, conn.reported_rtt_ms) if r is not None]
        bad = (
            overdue
            or any(r > settings.degraded_rtt_ms for r in rtts)
            or (conn.loss_pct is not None and conn.loss_pct > settings.degraded_loss_pct)
        )
        state = live.presence.state
        if state not in (PresenceState.ONLINE, PresenceState.DEGRADED):
            return
        if bad and state is PresenceState.ONLINE:
            self._apply(live, PresenceInput.LINK_BAD)
        elif not bad and state is PresenceState.DEGRADED:
            self._apply(live, PresenceInput.LINK_GOOD)
        elif measured:
            self._mark(live)

    # ---- heartbeat -------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        settings = self.settings
        tick = min(1.0, settings.heartbeat_interval_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for index, conn in enumerate([*self.point_connections, *self.staff]):
                if index and index % HEARTBEAT_SLICE == 0:
                    # Thousands of pings due in one tick (after a join storm) must not hold the
                    # loop: a floor command waiting behind them waited up to half a second.
                    await asyncio.sleep(0)
                    now = time.monotonic()
                if conn.closing:
                    continue
                if now - conn.last_received > settings.heartbeat_timeout_s:
                    # Counted in closes_total by Signaling.handle when the connection ends.
                    conn.close(CloseCode.HEARTBEAT_TIMEOUT)
                    continue
                if (
                    conn.point_id is not None
                    and conn.awaiting_since is not None
                    and now - conn.awaiting_since > settings.heartbeat_interval_s
                ):
                    self.link_report(conn, measured=False)
                if now >= conn.next_ping_at:
                    conn.ping_nonce += 1
                    conn.ping_sent_at = now
                    if conn.awaiting_since is None:
                        conn.awaiting_since = now
                    # ±10 %: points that joined together drift apart instead of pinging in step.
                    conn.next_ping_at = now + settings.heartbeat_interval_s * (
                        0.9 + 0.2 * random.random()  # noqa: S311 - spreading load, not a secret
                    )
                    ping = ServerPing(nonce=conn.ping_nonce, server_time=time.time())
                    if conn.send(ping.model_dump_json()):
                        self.metrics.messages_out.labels("ping").inc()

    def pong(self, conn: Connection, nonce: int) -> None:
        if nonce == conn.ping_nonce and conn.ping_sent_at is not None:
            conn.rtt_ms = (time.monotonic() - conn.ping_sent_at) * 1000
            conn.ping_sent_at = None
            conn.awaiting_since = None
            if conn.point_id is not None:
                self.link_report(conn)

    # ---- shutdown --------------------------------------------------------------------------

    async def close(self, code: CloseCode = CloseCode.GOING_AWAY) -> None:
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in [*self.point_connections, *self.staff]:
            conn.close(code)
        for live in self.points.values():
            if live.grace is not None:
                live.grace.cancel()
