"""Floor control live: the async shell around the pure machine in bridges/floor.py.

It owns what the machine leaves out: who may send which command (a point only for itself), the clock
and the one deadline timer, the session log (every accepted command is one `floor.*` event carrying
the command, the rules in force, what happened and the floor after it, so the floor is rebuilt from the
log after a restart), and the media plane (the holder's audio and video go to everyone's `floor` slot).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.events.service import PENDING_EVENTS, append_event
from bridges import floor as machine
from bridges.floor import (
    Command,
    Effect,
    FloorRules,
    FloorState,
    QueueChanged,
)
from models import SessionEvent
from signaling.protocol import FloorMessage

logger = logging.getLogger("diemcau.signaling.floor")

CHAIR_ROLES = frozenset({"operator", "moderator"})
COMMANDS: dict[str, type[Command]] = {
    cls.name: cls
    for cls in (
        machine.Request,
        machine.Cancel,
        machine.Release,
        machine.Accept,
        machine.Grant,
        machine.CallOn,
        machine.Deny,
        machine.Revoke,
        machine.Extend,
        machine.Reorder,
        machine.ClearQueue,
        machine.Tick,
        machine.PointOffline,
        machine.SessionEnded,
    )
}


class FloorInputError(ValueError):
    """A floor message that lacks what its action needs (the wire layer's `validation_error`)."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class FloorForbidden(FloorInputError):
    """A role or a point acting outside what it may do."""


def rules_of(settings: dict[str, Any]) -> FloorRules:
    defaults = FloorRules()
    return FloorRules(
        max_holders=int(settings.get("max_floor_holders", defaults.max_holders)),
        speaking_limit_s=float(settings.get("speaking_time_limit_s", defaults.speaking_limit_s)),
        warning_before_s=float(settings.get("speaking_time_warning_s", defaults.warning_before_s)),
        grant_releases_current_holder=bool(
            settings.get("grant_releases_current_holder", defaults.grant_releases_current_holder)
        ),
        queue_while_held=bool(settings.get("queue_while_held", defaults.queue_while_held)),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def command_json(command: Command) -> dict[str, Any]:
    fields = {f.name: _plain(getattr(command, f.name)) for f in dataclasses.fields(command)}
    return {"name": command.name, **fields}


def command_from_json(data: dict[str, Any]) -> Command:
    cls = COMMANDS[str(data["name"])]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "order":
            value = tuple(int(v) for v in value)
        elif f.name == "priority":
            value = machine.Priority(value)
        values[f.name] = value
    return cls(**values)


def rules_json(rules: FloorRules) -> dict[str, Any]:
    return dataclasses.asdict(rules)


class FloorDesk:
    """The floor of one session: one lock, one timer, one state."""

    def __init__(
        self,
        session_id: int,
        *,
        sessions: async_sessionmaker[AsyncSession],
        publish: Callable[[Sequence[SessionEvent]], None],
        route_floor: Callable[[int, int | None], Any],
        codes: Callable[[int], str | None],
        names: Callable[[int], str | None] = lambda _: None,
        points_by_code: Callable[[str], int | None],
        online: Callable[[], set[int]],
        settings: Callable[[], dict[str, Any]],
    ) -> None:
        self.session_id = session_id
        self.sessions = sessions
        self.publish = publish
        self.route_floor = route_floor
        self.codes = codes
        self.names = names
        self.points_by_code = points_by_code
        self.online = online
        self.settings = settings
        self.state = FloorState.empty(0.0)
        self.lock = asyncio.Lock()
        self.timer: asyncio.TimerHandle | None = None
        self.routed: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- recovery ------------------------------------------------------------------------

    async def load(self, readers: async_sessionmaker[AsyncSession]) -> None:
        """Rebuild the floor from the session log, then take up its media and timer again."""
        async with readers() as db:
            rows = await db.scalars(
                select(SessionEvent)
                .where(SessionEvent.session_id == self.session_id)
                .where(SessionEvent.type.like("floor.%"))
                .order_by(SessionEvent.seq)
            )
            entries = []
            for row in rows:
                record = row.payload.get("command")
                if not isinstance(record, dict):
                    continue
                entries.append(
                    (
                        command_from_json(record),
                        float(row.payload["at"]),
                        FloorRules(**row.payload["rules"]),
                    )
                )
        if entries:
            self.state = machine.replay(entries, start=entries[0][1])
        await self._follow_media()
        self._arm(machine.next_tick(self.state, rules_of(self.settings())))

    # ---- commands ------------------------------------------------------------------------

    def from_message(self, message: FloorMessage, *, role: str, point_id: int | None) -> Command:
        """The machine command a client message asks for, after the role checks."""
        action = message.action
        if point_id is not None:
            if action == "request":
                return machine.Request(point=point_id, topic=message.topic)
            if action == "cancel":
                request = message.request_id or self._own_request(point_id)
                return machine.Cancel(point=point_id, request=request)
            if action == "release":
                return machine.Release(point=point_id)
            raise FloorForbidden("points may request, cancel and release only", {"action": action})
        if role not in CHAIR_ROLES:
            raise FloorForbidden("floor commands are for moderators and operators", {"role": role})
        if action == "accept":
            return machine.Accept(
                request=self._need_request(message),
                priority=machine.Priority(message.priority or "normal"),
            )
        if action == "grant":
            if message.request_id is not None:
                return machine.Grant(request=message.request_id)
            return machine.CallOn(point=self._need_point(message))
        if action == "deny":
            return machine.Deny(request=self._need_request(message), note=message.note)
        if action == "revoke":
            return machine.Revoke(point=self._need_point(message), note=message.note)
        if action == "extend":
            if message.seconds is None:
                raise FloorInputError("extend needs seconds", {"field": "seconds"})
            return machine.Extend(point=self._need_point(message), seconds=message.seconds)
        if action == "reorder":
            if message.order is None:
                raise FloorInputError("reorder needs order", {"field": "order"})
            return machine.Reorder(order=tuple(message.order))
        if action == "clear":
            return machine.ClearQueue(note=message.note)
        raise FloorForbidden(f"{action} is a point's action", {"action": action})

    def _own_request(self, point_id: int) -> int:
        for waiting in self.state.queue:
            if waiting.point == point_id:
                return waiting.request
        raise FloorInputError("you have no raised hand to cancel", {"field": "request_id"})

    @staticmethod
    def _need_request(message: FloorMessage) -> int:
        if message.request_id is None:
            raise FloorInputError(f"{message.action} needs request_id", {"field": "request_id"})
        return message.request_id

    def _need_point(self, message: FloorMessage) -> int:
        if message.point_code is None:
            raise FloorInputError(f"{message.action} needs point_code", {"field": "point_code"})
        point = self.points_by_code(message.point_code)
        if point is None:
            raise FloorInputError(
                "no such point in this session", {"point_code": message.point_code}
            )
        return point

    async def run(self, command: Command, actor: str) -> list[Effect]:
        """Apply one command: refused ones raise FloorRefused and change nothing (nothing logged)."""
        async with self.lock:
            rules = rules_of(self.settings())
            now = max(time.time(), self.state.clock)
            after, effects = machine.step(
                self.state, command, now=now, rules=rules, online=self.online()
            )
            if not effects and type(command) in machine.SHELL_COMMANDS:
                self.state = after  # a tick or a departure that changed nothing: not logged
                return effects
            await self._log(command, actor, now, rules, after, effects)
            self.state = after
            for effect in effects:
                if isinstance(effect, machine.DeadlineChanged):
                    self._arm(effect.at)
            await self._follow_media()
            return effects

    async def _log(
        self,
        command: Command,
        actor: str,
        now: float,
        rules: FloorRules,
        after: FloorState,
        effects: list[Effect],
    ) -> None:
        payload = {
            "command": command_json(command),
            "at": now,
            "rules": rules_json(rules),
            "effects": [self._effect_json(e) for e in effects if not isinstance(e, QueueChanged)],
            "floor": self.snapshot(after),
        }
        async with self.sessions() as db:
            await append_event(db, self.session_id, f"floor.{command.name}", actor, payload)
            pending = list(db.info.get(PENDING_EVENTS, []))
            await db.commit()
        self.publish(pending)

    def _effect_json(self, effect: Effect) -> dict[str, Any]:
        data = {f.name: _plain(getattr(effect, f.name)) for f in dataclasses.fields(effect)}
        if "point" in data:
            data["point_code"] = self.codes(int(data.pop("point")))
        return {"kind": type(effect).__name__.lower(), **data}

    def snapshot(self, state: FloorState | None = None) -> dict[str, Any]:
        """The floor as every client shows it: who speaks until when, who waits in which order."""
        state = state or self.state
        return {
            "holders": [
                {
                    "point_code": self.codes(h.point),
                    "point_name": self.names(h.point),
                    "request_id": h.request,
                    "topic": h.topic,
                    "granted_at": h.granted_at,
                    "deadline": h.deadline,
                }
                for h in state.holders
            ],
            "queue": [
                {
                    "position": e.position,
                    "request_id": e.request,
                    "point_code": self.codes(e.point),
                    "point_name": self.names(e.point),
                    "status": e.status.value,
                    "priority": e.priority.value,
                    "topic": e.topic,
                    "requested_at": e.requested_at,
                }
                for e in machine.queue_entries(state)
            ],
        }

    def involves(self, point_id: int) -> bool:
        return any(h.point == point_id for h in self.state.holders) or any(
            w.point == point_id for w in self.state.queue
        )

    # ---- media and time ------------------------------------------------------------------

    async def _follow_media(self) -> None:
        """The newest holder is heard everywhere; with nobody on the floor, the slot goes quiet."""
        holders = self.state.holders
        speaker = max(holders, key=lambda h: h.granted_at).point if holders else None
        if speaker != self.routed:
            await self.route_floor(self.session_id, speaker)
            self.routed = speaker

    def _arm(self, at: float | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if at is None:
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(max(0.0, at - time.time()), self._due)

    def _due(self) -> None:
        self.timer = None
        self.spawn(machine.Tick(), "system")

    def spawn(self, command: Command, actor: str) -> None:
        """Run a command the shell itself issues (time, presence, the session ending)."""

        async def go() -> None:
            try:
                await self.run(command, actor)
            except machine.FloorRefused:
                pass
            except Exception:
                logger.exception("floor of session %s: %s failed", self.session_id, command.name)

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
