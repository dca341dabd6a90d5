"""Roll-call live: the async shell around the pure machine in bridges/rollcall.py.

What it adds to the machine is durability. Every command is stepped in memory under one lock and
queued to one writer; the writer commits everything queued in one transaction (the records, the
points' idempotency keys and the session-log events), and only then are the commands answered and
the tally sent. So an `ack` means committed (SQLite runs in WAL with `synchronous=FULL`), and a
storm of 3,321 confirmations costs a handful of commits, not 3,321 of them: while one transaction
commits, the next batch gathers.

If a commit fails, every command waiting on it (and every one queued behind it) is answered
`unavailable` and the round is rebuilt from the database, so memory never holds what the database
lost. A point that retries with its key gets the stored answer when its first try did commit, and a
fresh one when it did not: each acknowledged confirmation is stored exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bridges import rollcall as machine
from bridges.rollcall import (
    Counts,
    Phase,
    Record,
    RollcallRefused,
    RollcallState,
    Round,
    Status,
)
from models import (
    ConferenceSession,
    Point,
    RollcallConfirmation,
    RollcallRecord,
    RollcallRound,
    SessionEvent,
)
from signaling.protocol import (
    RollcallAreaCounts,
    RollcallCounts,
    RollcallMessage,
    RollcallRecordView,
    RollcallRoundView,
    RollcallTally,
)

logger = logging.getLogger("diemcau.signaling.rollcall")

DESK_ROLES = frozenset({"operator"})
# The table itself: an executemany UPDATE keyed by (round, point), which the ORM would key by id.
RECORDS = cast(Table, RollcallRecord.__table__)
DEFAULT_DEADLINE_S = 120.0
DEFAULT_MAX_HEADCOUNT = 500


class RollcallInputError(ValueError):
    """A roll-call message that lacks what its action needs (the wire's `validation_error`)."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class RollcallForbidden(RollcallInputError):
    """A role or a point acting outside what it may do."""


class IdempotencyConflict(RollcallInputError):
    """The same key with other values: a client bug, never applied."""


class StorageUnavailable(RollcallInputError):
    """The commit failed: nothing was stored, the client retries with the same key."""


def _dt(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=UTC)


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def counts_view(counts: Counts) -> RollcallCounts:
    return RollcallCounts(**counts.as_dict())


@dataclass
class _Op:
    """One command stepped in memory, waiting for its commit."""

    effect: machine.Effect
    actor: str
    at: float
    result: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    key: tuple[int, str] | None = None
    confirmation: dict[str, Any] | None = None
    limits: Mapping[int, int] | None = None  # an open: every invited point's bound
    message: str = ""


@dataclass
class _Key:
    payload: tuple[int, int, str]  # round, headcount, note
    result: dict[str, Any] | None = None
    pending: asyncio.Future[dict[str, Any]] | None = None


@dataclass
class _Tally:
    total: Counts = field(default_factory=Counts)
    areas: dict[str, Counts] = field(default_factory=dict)
    # Fixed when the round opens, like its invited set: a batch looks points up in O(1).
    area_of: dict[int, str] = field(default_factory=dict)
    names: dict[str, str | None] = field(default_factory=dict)


class RollcallDesk:
    """The roll-call of one session: one lock, one writer, the state and the committed tally."""

    def __init__(
        self,
        session_id: int,
        *,
        sessions: async_sessionmaker[AsyncSession],
        readers: async_sessionmaker[AsyncSession],
        publish: Callable[[Sequence[SessionEvent]], None],
        send_tally: Callable[[str], None],
        invited: Callable[[], Mapping[int, tuple[str, str, str | None]]],
        code_of: Callable[[int], str | None],
        settings: Callable[[], dict[str, Any]],
        observe_commit: Callable[[float], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.sessions = sessions
        self.readers = readers
        self.publish = publish
        self.send_tally = send_tally
        # point id → (code, area code or "", area name)
        self.invited = invited
        self.code_of = code_of
        self.settings = settings
        self.observe_commit = observe_commit
        self.state = RollcallState()
        self.round_ids: dict[int, int] = {}
        self.keys: dict[tuple[int, str], _Key] = {}
        self.tallies: dict[int, _Tally] = {}
        self.lock = asyncio.Lock()
        self._queue: list[_Op] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._stale = False
        self.last_seq = 0
        self.commits = 0

    # ---- loading ---------------------------------------------------------------------------

    async def load(self) -> None:
        """The rounds, records and keys as committed."""
        async with self.readers() as db:
            rounds = list(
                await db.scalars(
                    select(RollcallRound)
                    .where(RollcallRound.session_id == self.session_id)
                    .order_by(RollcallRound.number)
                )
            )
            built: list[Round] = []
            self.round_ids = {}
            for row in rounds:
                limits: dict[int, int] = {}
                records: dict[int, Record] = {}
                for rec in await db.scalars(
                    select(RollcallRecord).where(RollcallRecord.round_id == row.id)
                ):
                    limits[rec.point_id] = rec.headcount_limit
                    if rec.status != "waiting":
                        records[rec.point_id] = Record(
                            status=Status(rec.status),
                            headcount=rec.headcount,
                            note=rec.note,
                            confirmed_at=_ts(rec.confirmed_at),
                            changed_at=_ts(rec.changed_at) or 0.0,
                            reason=rec.reason,
                            changed_by_staff=rec.changed_by_staff,
                        )
                built.append(
                    Round(
                        number=row.number,
                        opened_at=_ts(row.opened_at) or 0.0,
                        deadline=_ts(row.deadline) or 0.0,
                        message=row.message,
                        limits=MappingProxyType(limits),
                        phase=Phase.CLOSED if row.closed_at is not None else Phase.OPEN,
                        closed_at=_ts(row.closed_at),
                        records=MappingProxyType(records),
                    )
                )
                self.round_ids[row.number] = row.id
            keys: dict[tuple[int, str], _Key] = {}
            for conf in await db.scalars(
                select(RollcallConfirmation).where(
                    RollcallConfirmation.session_id == self.session_id
                )
            ):
                keys[(conf.point_id, conf.key)] = _Key(
                    payload=(conf.round_number, conf.headcount, conf.note), result=conf.result
                )
        self.state = RollcallState(tuple(built))
        self.keys = keys
        self.tallies = {round_.number: self._new_tally(round_) for round_ in built}
        self._stale = False

    def _new_tally(self, round_: Round) -> _Tally:
        invited = self.invited()
        area_of = {point: invited[point][1] for point in round_.limits if point in invited}
        names: dict[str, str | None] = {}
        for point in round_.limits:
            if point in invited:
                names.setdefault(invited[point][1], invited[point][2])
        total, per_area = machine.tally(round_, area_of)
        return _Tally(total, per_area, area_of, names)

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(
            self._run(), name=f"rollcall-writer-{self.session_id}"
        )

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        for op in self._queue:
            if not op.future.done():
                op.future.set_exception(StorageUnavailable("the server is stopping"))
        self._queue = []

    # ---- commands --------------------------------------------------------------------------

    async def handle(
        self, message: RollcallMessage, *, role: str, point_id: int | None, actor: str
    ) -> dict[str, Any]:
        """Check, step, queue, wait for the commit; the ack's result."""
        action = message.action
        if action == "get":
            return {
                "rollcall": self.view(point_id=point_id).model_dump() if self.state.rounds else None
            }
        if point_id is not None:
            if action != "confirm":
                raise RollcallForbidden("points may only confirm", {"action": action})
            return await self.confirm(message, point_id, actor)
        if action == "confirm":
            raise RollcallForbidden("confirm is a point's action", {"action": action})
        if role not in DESK_ROLES:
            raise RollcallForbidden("roll-call is run by operators", {"role": role})
        if action == "open":
            return await self._open(message, actor)
        number = self._need(message.round, "round")
        if action == "close":
            return await self._submit(machine.Close(round=number), actor)
        point = self._point_of(self._need(message.point_code, "point_code"))
        if action == "excuse":
            return await self._submit(
                machine.Excuse(round=number, point=point, reason=message.reason), actor
            )
        status = self._need(message.status, "status")
        return await self._submit(
            machine.Correct(
                round=number,
                point=point,
                status=Status(status),
                headcount=message.headcount,
                reason=message.reason,
            ),
            actor,
        )

    async def close_open_round(self, actor: str) -> None:
        """The session ended: an open round closes with it, so no report shows rooms "waiting"
        for a conference that is over."""
        current = self.state.current
        if current is not None:
            with contextlib.suppress(RollcallRefused, StorageUnavailable):
                await self._submit(machine.Close(round=current.number), actor)

    @staticmethod
    def _need(value: Any, name: str) -> Any:
        if value is None:
            raise RollcallInputError(f"this action needs {name}", {"field": name})
        return value

    def _point_of(self, code: str) -> int:
        for point, (point_code, _, _) in self.invited().items():
            if point_code == code:
                return point
        raise RollcallInputError("no such point in this session", {"point_code": code})

    async def _open(self, message: RollcallMessage, actor: str) -> dict[str, Any]:
        settings = self.settings()
        deadline_s = message.deadline_s or float(
            settings.get("rollcall_deadline_s", DEFAULT_DEADLINE_S)
        )
        default_limit = int(settings.get("rollcall_max_headcount", DEFAULT_MAX_HEADCOUNT))
        invited = self.invited()
        async with self.readers() as db:
            rows = await db.execute(
                select(Point.id, Point.capacity).where(Point.id.in_(list(invited)))
            )
            capacities = {row[0]: row[1] for row in rows}
        limits = {point: capacities.get(point) or default_limit for point in invited}
        command = machine.Open(limits=limits, deadline_s=deadline_s, message=message.message)
        return await self._submit(command, actor, limits=limits)

    async def confirm(self, message: RollcallMessage, point_id: int, actor: str) -> dict[str, Any]:
        key = self._need(message.key, "key")
        number = self._need(message.round, "round")
        headcount = self._need(message.headcount, "headcount")
        payload = (int(number), int(headcount), message.note)
        async with self.lock:
            known = self.keys.get((point_id, key))
            if known is not None:
                if known.payload != payload:
                    raise IdempotencyConflict(
                        "this key was used with other values",
                        {"key": key, "round": known.payload[0], "headcount": known.payload[1]},
                    )
                if known.result is not None:
                    return {**known.result, "replayed": True}
                assert known.pending is not None
                pending = known.pending
            else:
                pending = None
        if pending is not None:
            return {**await asyncio.shield(pending), "replayed": True}
        command = machine.Confirm(
            round=number, point=point_id, headcount=headcount, note=message.note
        )
        return await self._submit(command, actor, key=(point_id, key), payload=payload)

    async def _submit(
        self,
        command: machine.Command,
        actor: str,
        *,
        key: tuple[int, str] | None = None,
        payload: tuple[int, int, str] | None = None,
        limits: Mapping[int, int] | None = None,
    ) -> dict[str, Any]:
        async with self.lock:
            if self._stale:
                try:
                    await self.load()
                except Exception as exc:
                    raise StorageUnavailable("the roll-call store is unavailable") from exc
            now = time.time()
            after, effect = machine.step(self.state, command, now=now)
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            op = _Op(
                effect=effect,
                actor=actor,
                at=now,
                result=self._result(after, effect),
                future=future,
                key=key,
                limits=limits,
                message=getattr(command, "message", ""),
            )
            if key is not None and payload is not None:
                op.confirmation = {
                    "round_number": payload[0],
                    "headcount": payload[1],
                    "note": payload[2],
                }
                self.keys[key] = _Key(payload=payload, pending=future)
            self.state = after
            self._queue.append(op)
            self._wake.set()
        return {**await asyncio.shield(future), "replayed": False}

    def _result(self, after: RollcallState, effect: machine.Effect) -> dict[str, Any]:
        if isinstance(effect, machine.Confirmed | machine.Marked):
            record = effect.after
            return {
                "round": effect.round,
                "point_code": self._code(effect.point),
                "status": record.status.value,
                "headcount": record.headcount,
                "note": record.note,
                "confirmed_at": record.confirmed_at,
                "reason": record.reason,
            }
        if isinstance(effect, machine.Opened):
            return {"round": effect.round, "deadline": effect.deadline, "invited": effect.invited}
        round_ = after.round(effect.round)
        assert round_ is not None
        total, _ = machine.tally(round_, {})
        return {"round": effect.round, "closed_at": effect.at, "counts": total.as_dict()}

    def _code(self, point: int) -> str:
        """O(1): called for every confirmation, where building `invited()` would cost O(points)."""
        code = self.code_of(point)
        return code if code is not None else str(point)

    # ---- the writer ------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    events = await self._write(batch)
                except Exception:
                    logger.exception(
                        "roll-call of session %s: committing %d changes failed",
                        self.session_id,
                        len(batch),
                    )
                    await self._failed(batch)
                    continue
                self.commits += 1
                self._committed(batch, events)

    async def _failed(self, batch: list[_Op]) -> None:
        """Rebuild from what is committed, then answer: a client told `unavailable` and retrying
        at once must meet the round as the database has it."""
        async with self.lock:
            queued, self._queue = self._queue, []
            self._stale = True
            try:
                await self.load()
            except Exception:
                logger.exception("roll-call of session %s: reload failed", self.session_id)
                for op in (*batch, *queued):
                    if op.key is not None:
                        self.keys.pop(op.key, None)
            for op in (*batch, *queued):
                if not op.future.done():
                    op.future.set_exception(
                        StorageUnavailable("not stored; send it again with the same key")
                    )

    def _committed(self, batch: list[_Op], events: list[SessionEvent]) -> None:
        touched: dict[int, set[str]] = {}
        committed_at = time.time()
        for op in batch:
            if self.observe_commit is not None:
                self.observe_commit(committed_at - op.at)
            effect = op.effect
            if isinstance(effect, machine.Opened):
                round_ = self.state.round(effect.round)
                if round_ is not None:
                    # Counted from no answers: answers stepped since are in later batches.
                    tally = self._new_tally(
                        Round(
                            number=round_.number,
                            opened_at=round_.opened_at,
                            deadline=round_.deadline,
                            message=round_.message,
                            limits=round_.limits,
                        )
                    )
                    self.tallies[effect.round] = tally
                    touched.setdefault(effect.round, set()).update(tally.areas)
            else:
                tally = self.tallies.setdefault(effect.round, _Tally())
                for point, before, after in machine.changes_of(effect):
                    area = tally.area_of.get(point, "")
                    area_counts = tally.areas.setdefault(area, Counts())
                    for counts in (tally.total, area_counts):
                        counts.add(before, -1)
                        counts.add(after)
                    touched.setdefault(effect.round, set()).add(area)
            if op.key is not None:
                known = self.keys.get(op.key)
                if known is not None:
                    known.result = op.result
                    known.pending = None
            if not op.future.done():
                op.future.set_result(op.result)
        self.publish(events)
        if events:
            self.last_seq = max(e.seq for e in events)
        for number, changed in touched.items():
            tally = self.tallies[number]
            message = RollcallTally(
                round=number,
                seq=self.last_seq,
                counts=counts_view(tally.total),
                areas=[
                    RollcallAreaCounts(
                        code=code, name=tally.names.get(code), counts=counts_view(tally.areas[code])
                    )
                    for code in sorted(changed)
                    if code in tally.areas
                ],
            )
            self.send_tally(message.model_dump_json())

    async def _write(self, batch: list[_Op]) -> list[SessionEvent]:
        """One transaction for the whole batch, in the order the commands were stepped."""
        events: list[tuple[str, str, dict[str, Any]]] = []
        round_ids = dict(self.round_ids)
        async with self.sessions() as db:
            updates: list[dict[str, Any]] = []
            confirmations: list[dict[str, Any]] = []

            async def flush_updates() -> None:
                if updates:
                    await db.execute(
                        update(RECORDS).where(
                            RECORDS.c.round_id == bindparam("b_round"),
                            RECORDS.c.point_id == bindparam("b_point"),
                        ),
                        list(updates),
                    )
                    updates.clear()

            for op in batch:
                effect = op.effect
                if isinstance(effect, machine.Opened):
                    await flush_updates()
                    row = RollcallRound(
                        session_id=self.session_id,
                        number=effect.round,
                        opened_at=_dt(op.at),
                        deadline=_dt(effect.deadline),
                        message=op.message,
                        opened_by=op.actor,
                    )
                    db.add(row)
                    await db.flush()
                    round_ids[effect.round] = row.id
                    assert op.limits is not None
                    await db.execute(
                        insert(RollcallRecord),
                        [
                            {"round_id": row.id, "point_id": point, "headcount_limit": limit}
                            for point, limit in op.limits.items()
                        ],
                    )
                    events.append(
                        (
                            "rollcall.opened",
                            op.actor,
                            {
                                "round": effect.round,
                                "opened_at": op.at,
                                "deadline": effect.deadline,
                                "message": op.message,
                                "invited": effect.invited,
                            },
                        )
                    )
                elif isinstance(effect, machine.Closed):
                    await flush_updates()
                    round_id = round_ids[effect.round]
                    await db.execute(
                        update(RollcallRecord)
                        .where(
                            RollcallRecord.round_id == round_id,
                            RollcallRecord.status == "waiting",
                        )
                        .values(status="absent", changed_at=_dt(effect.at))
                        .execution_options(synchronize_session=False)
                    )
                    await db.execute(
                        update(RollcallRound)
                        .where(RollcallRound.id == round_id)
                        .values(closed_at=_dt(effect.at), closed_by=op.actor)
                        .execution_options(synchronize_session=False)
                    )
                    events.append(("rollcall.closed", op.actor, op.result))
                else:
                    record = effect.after
                    updates.append(
                        {
                            "b_round": round_ids[effect.round],
                            "b_point": effect.point,
                            "status": record.status.value,
                            "headcount": record.headcount,
                            "note": record.note,
                            "confirmed_at": None
                            if record.confirmed_at is None
                            else _dt(record.confirmed_at),
                            "changed_at": _dt(record.changed_at),
                            "reason": record.reason,
                            "changed_by_staff": record.changed_by_staff,
                            "changed_by": op.actor,
                        }
                    )
                    if isinstance(effect, machine.Confirmed):
                        events.append(
                            (
                                "rollcall.confirmed",
                                op.actor,
                                {**op.result, "first": effect.first},
                            )
                        )
                    else:
                        before = effect.before
                        events.append(
                            (
                                "rollcall.marked",
                                op.actor,
                                {
                                    **op.result,
                                    "before": None
                                    if before is None
                                    else {
                                        "status": before.status.value,
                                        "headcount": before.headcount,
                                    },
                                },
                            )
                        )
                if op.key is not None and op.confirmation is not None:
                    confirmations.append(
                        {
                            "session_id": self.session_id,
                            "point_id": op.key[0],
                            "key": op.key[1],
                            "result": op.result,
                            "created_at": _dt(op.at),
                            **op.confirmation,
                        }
                    )
            await flush_updates()
            if confirmations:
                await db.execute(insert(RollcallConfirmation), confirmations)
            rows = await self._append_events(db, events)
            await db.commit()
        self.round_ids = round_ids
        return rows

    async def _append_events(
        self, db: AsyncSession, events: list[tuple[str, str, dict[str, Any]]]
    ) -> list[SessionEvent]:
        """The batch's events under consecutive seqs, taken with one increment."""
        if not events:
            return []
        last = (
            await db.execute(
                update(ConferenceSession)
                .where(ConferenceSession.id == self.session_id)
                .values(last_seq=ConferenceSession.last_seq + len(events))
                .returning(ConferenceSession.last_seq)
                .execution_options(synchronize_session=False)
            )
        ).scalar_one()
        first = int(last) - len(events) + 1
        now = datetime.now(UTC)
        rows = [
            SessionEvent(
                session_id=self.session_id,
                seq=first + i,
                type=type_,
                actor=actor,
                payload=payload,
                created_at=now,
            )
            for i, (type_, actor, payload) in enumerate(events)
        ]
        await db.execute(
            insert(SessionEvent),
            [
                {
                    "session_id": r.session_id,
                    "seq": r.seq,
                    "type": r.type,
                    "actor": r.actor,
                    "payload": r.payload,
                    "created_at": r.created_at,
                }
                for r in rows
            ],
        )
        return rows

    # ---- views -----------------------------------------------------------------------------

    def view(self, number: int | None = None, *, point_id: int | None = None) -> RollcallRoundView:
        """The latest round (or `number`): counts for staff, the point's own record for a point."""
        round_ = self.state.round(number) if number is not None else self.state.rounds[-1]
        if round_ is None:
            raise RollcallInputError("no such round", {"round": number})
        mine = None
        if point_id is not None and point_id in round_.limits:
            mine = self.record_view(round_, point_id)
        counts = None
        if point_id is None:
            tally = self.tallies.get(round_.number)
            counts = counts_view(tally.total) if tally is not None else None
        return RollcallRoundView(
            round=round_.number,
            phase="open" if round_.phase is Phase.OPEN else "closed",
            opened_at=round_.opened_at,
            deadline=round_.deadline,
            closed_at=round_.closed_at,
            message=round_.message,
            counts=counts,
            mine=mine,
        )

    def record_view(self, round_: Round, point: int) -> RollcallRecordView:
        record = round_.records.get(point)
        code = self._code(point)
        if record is None:
            return RollcallRecordView(
                point_code=code,
                status="waiting",
                headcount=None,
                note="",
                confirmed_at=None,
                reason="",
            )
        return RollcallRecordView(
            point_code=code,
            status=record.status.value,
            headcount=record.headcount,
            note=record.note,
            confirmed_at=record.confirmed_at,
            reason=record.reason,
        )

    def area_view(self, number: int) -> list[RollcallAreaCounts]:
        tally = self.tallies.get(number)
        if tally is None:
            return []
        return [
            RollcallAreaCounts(code=code, name=tally.names.get(code), counts=counts_view(counts))
            for code, counts in sorted(tally.areas.items())
        ]
