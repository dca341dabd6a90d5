"""Acknowledged means durable: 526 points confirm while the server is killed with SIGKILL.

The server runs as a real `diemcau serve` process on a real database. Every one of the 526 Hanoi
wards connects over a real WebSocket and confirms once, with its own idempotency key, at a random
moment in a few seconds; meanwhile the server is SIGKILLed and restarted several times. A point
whose connection drops before its `ack` reconnects and sends the same confirmation with the same key
until it is acknowledged. Afterwards, from the database alone: every acknowledged confirmation is
stored exactly once with the acknowledged headcount, no confirmation was stored that was never
acknowledged, each point has exactly one `rollcall.confirmed` event, and the store is intact
(`PRAGMA integrity_check` on SQLite; the unique constraints and the event seqs on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, text
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from models import Role, RollcallConfirmation, RollcallRecord, SessionEvent
from models.engine import create_engine, is_sqlite, session_factory
from tests.conftest import HANOI_CSV, TEST_PASSWORD, TEST_SECRET, create_staff, make_settings
from tests.integration.conftest import HANOI_POINTS, free_port, point_hello

KILLS = 4
ANSWERS = 3  # each point answers three times (a new headcount, a new key), one after another
SPREAD_S = 2.0  # before each answer a point waits a random moment up to this
DIEMCAU = Path(sys.executable).with_name("diemcau")


class Server:
    """`diemcau serve` on a fixed port, killed and started again on the same database."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env = env
        self.port = port
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                str(DIEMCAU), "serve", env=self.env, stdout=out, stderr=out
            )
        self.starts += 1
        async with httpx.AsyncClient(trust_env=False) as http:
            async with asyncio.timeout(60):
                while True:
                    assert self.process.returncode is None, self.log.read_text()[-3000:]
                    with contextlib.suppress(httpx.TransportError):
                        ready = await http.get(f"http://127.0.0.1:{self.port}/healthz")
                        if ready.status_code == 200:
                            return
                    await asyncio.sleep(0.05)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@dataclass
class Outcome:
    # point code → its acknowledged answers in order: (key, headcount, result)
    acked: dict[str, list[tuple[str, int, dict[str, Any]]]] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    dropped_before_ack: int = 0
    replayed: int = 0  # answers committed before a crash, acknowledged from the store after it
    unavailable: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


async def answer_until_acked(
    ws_url: str, code: str, credential: str, outcome: Outcome, rng: random.Random
) -> None:
    for n in range(ANSWERS):
        await asyncio.sleep(rng.uniform(0, SPREAD_S))
        await confirm_until_acked(ws_url, code, credential, n, outcome, rng)


async def confirm_until_acked(
    ws_url: str, code: str, credential: str, n: int, outcome: Outcome, rng: random.Random
) -> None:
    key = uuid.uuid4().hex
    headcount = rng.randint(0, 300)
    request = {
        "type": "rollcall",
        "id": f"c-{code}-{n}",
        "action": "confirm",
        "round": 1,
        "headcount": headcount,
        "note": f"Phòng họp điểm cầu {code}, lần {n + 1}",
        "key": key,
    }
    async with asyncio.timeout(120):
        while True:
            sent = False
            try:
                async with connect(
                    ws_url, open_timeout=10, proxy=None, compression=None, ping_interval=None
                ) as ws:
                    await ws.send(json.dumps(point_hello(credential)))
                    while True:
                        message = json.loads(await ws.recv())
                        if message["type"] == "ping":
                            await ws.send(json.dumps({"type": "pong", "nonce": message["nonce"]}))
                        elif message["type"] == "welcome":
                            break
                        elif message["type"] == "error":
                            raise ConnectionError(message["code"])
                    outcome.attempts[code] += 1
                    await ws.send(json.dumps(request))
                    sent = True
                    while True:
                        message = json.loads(await ws.recv())
                        if message["type"] == "ping":
                            await ws.send(json.dumps({"type": "pong", "nonce": message["nonce"]}))
                        elif message["type"] == "ack" and message["id"] == request["id"]:
                            answers = outcome.acked.setdefault(code, [])
                            answers.append((key, headcount, message["result"]))
                            outcome.replayed += bool(message["result"]["replayed"])
                            return
                        elif message["type"] == "error" and message.get("id") == request["id"]:
                            if message["code"] != "unavailable":
                                outcome.errors.append(message)
                                return
                            outcome.unavailable += 1
                            break
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError, ConnectionError):
                if sent:
                    outcome.dropped_before_ack += 1
            await asyncio.sleep(rng.uniform(0.1, 0.5))


async def killer(server: Server, done: asyncio.Event, rng: random.Random) -> int:
    """The first kill lands inside the first storm of answers; each later one shortly after a
    restart, inside the storm of points reconnecting to send their answer again."""
    kills = 0
    await asyncio.sleep(rng.uniform(0.3, SPREAD_S * 0.8))
    while kills < KILLS and not done.is_set():
        await server.kill()
        kills += 1
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        await server.start()
        await asyncio.sleep(rng.uniform(0.3, 1.2))
    return kills


async def test_acknowledged_confirmations_survive_sigkill(
    database_url: str, tmp_path: Path
) -> None:
    url = database_url
    settings = make_settings(tmp_path, url)
    await create_staff(settings, "operator", Role.OPERATOR)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DIEMCAU_")},
        "DIEMCAU_VAR_DIR": str(tmp_path / "var"),
        "DIEMCAU_DATABASE_URL": url,
        "DIEMCAU_HOST": "127.0.0.1",
        "DIEMCAU_PORT": str(port),
        "DIEMCAU_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DIEMCAU_SECRET_KEY": TEST_SECRET,
        "DIEMCAU_LOG_LEVEL": "WARNING",
        "DIEMCAU_ARGON2_TIME_COST": "1",
        "DIEMCAU_ARGON2_MEMORY_KIB": "1024",
        "DIEMCAU_WS_MAX_PER_ADDRESS": "2000",
        "DIEMCAU_MEDIA_WORKERS": "0",
        "DIEMCAU_GC_FREEZE": "false",
    }
    server = Server(env, port, tmp_path / "server.log")
    rng = random.Random(int.from_bytes(os.urandom(4)))
    base = f"http://127.0.0.1:{port}"
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=base, trust_env=False, timeout=60) as http:
            token = (
                await http.post(
                    "/api/v1/auth/login",
                    json={"username": "operator", "password": TEST_PASSWORD},
                )
            ).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            imported = await http.post(
                "/api/v1/points/import",
                content=HANOI_CSV.read_bytes(),
                headers={**auth, "Content-Type": "text/csv"},
            )
            assert imported.json()["created"] == HANOI_POINTS
            session = await http.post(
                "/api/v1/sessions",
                json={"title": "Đối thoại: điểm danh khi máy chủ sập", "hall_name": "Hội trường"},
                headers=auth,
            )
            session_id = session.json()["id"]
            await http.post(
                f"/api/v1/sessions/{session_id}/invitations", json={"all": True}, headers=auth
            )
            links = (
                await http.post(f"/api/v1/sessions/{session_id}/join-links", json={}, headers=auth)
            ).json()["links"]
            await http.post(f"/api/v1/sessions/{session_id}/actions/open", headers=auth)
            opened = await http.post(
                f"/api/v1/sessions/{session_id}/rollcalls",
                json={"deadline_s": 600, "message": "Điểm danh"},
                headers=auth,
            )
            assert opened.status_code == 201, opened.text

        outcome = Outcome()
        ws_url = f"ws://127.0.0.1:{port}/api/v1/ws"
        done = asyncio.Event()
        kill_task = asyncio.create_task(killer(server, done, rng))
        await asyncio.gather(
            *(
                answer_until_acked(ws_url, link["point_code"], link["credential"], outcome, rng)
                for link in links
            )
        )
        done.set()
        kills = await kill_task
    finally:
        await server.stop()

    print(
        f"{kills} kills, {outcome.dropped_before_ack} answers cut before their ack, "
        f"{outcome.unavailable} unavailable, {outcome.replayed} acknowledged from the store"
    )
    assert outcome.errors == []
    assert kills >= 2, "the points answered before the server could be killed twice"
    assert len(outcome.acked) == HANOI_POINTS
    assert all(len(answers) == ANSWERS for answers in outcome.acked.values())
    # The crashes did interrupt answers in flight; otherwise this proves nothing.
    assert outcome.dropped_before_ack + outcome.unavailable > 0

    engine = create_engine(url)
    try:
        async with session_factory(engine)() as db:
            codes = dict((await db.execute(text("SELECT id, code FROM points"))).all())
            stored = {
                (codes[row.point_id], row.key): row
                for row in await db.scalars(select(RollcallConfirmation))
            }
            # Exactly the acknowledged ones: none lost, none extra, none twice.
            acked = {
                (code, key): (headcount, result)
                for code, answers in outcome.acked.items()
                for key, headcount, result in answers
            }
            assert set(stored) == set(acked)
            assert len(stored) == HANOI_POINTS * ANSWERS
            for pair, (headcount, result) in acked.items():
                assert stored[pair].headcount == headcount
                assert stored[pair].result["confirmed_at"] == result["confirmed_at"]
            records = {codes[r.point_id]: r for r in await db.scalars(select(RollcallRecord))}
            assert len(records) == HANOI_POINTS
            for code, answers in outcome.acked.items():
                assert records[code].status == "present"
                assert records[code].headcount == answers[-1][1]  # the last answer stands
            confirmed = Counter(
                e.payload["point_code"]
                for e in await db.scalars(
                    select(SessionEvent).where(SessionEvent.type == "rollcall.confirmed")
                )
            )
            assert confirmed == Counter({code: ANSWERS for code in outcome.acked})
            seqs = list(
                await db.scalars(
                    select(SessionEvent.seq)
                    .where(SessionEvent.session_id == session_id)
                    .order_by(SessionEvent.seq)
                )
            )
            assert seqs == list(range(1, len(seqs) + 1))
            assert (await db.scalar(select(func.count()).select_from(SessionEvent))) == len(seqs)
            if is_sqlite(url):
                assert (await db.execute(text("PRAGMA integrity_check"))).scalar_one() == "ok"
    finally:
        await engine.dispose()
