"""The rehearsal's own server: the real one, in a process, on the embedded defaults or a database.

Its log goes to a file, not to the terminal the report is printed on; the rehearsal counts the
errors in it, since an error the server logged is an error the rehearsal saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import secrets
import sys
import time
from multiprocessing.context import SpawnProcess
from pathlib import Path

import httpx

from app.benchmarks.signaling import cpu_seconds, free_port
from app.benchmarks.signaling_procs import serve_diemcau

ERROR_MARKERS = (
    " ERROR ",
    " CRITICAL ",
    "Traceback (most recent call last)",
    '"level": "ERROR"',
    '"level": "CRITICAL"',
)


class ServerError(RuntimeError):
    """The server did not start or the database could not be prepared."""


def _serve_logged(
    env: dict[str, str], log_path: str, phase_dir: str, media_workers: int | None
) -> None:
    """Spawn target: the server with its stdout and stderr in a file."""
    with open(log_path, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    serve_diemcau(env, phase_dir, media_workers=media_workers)


async def _create_operator(url: str, username: str, password: str) -> None:
    from app.accounts import service
    from app.accounts.schemas import AccountCreate
    from app.auth.passwords import Passwords
    from models import Role
    from models.engine import create_engine, session_factory, unit_of_work

    engine = create_engine(url)
    try:
        async with unit_of_work(session_factory(engine)) as db:
            await service.create_account(
                db,
                AccountCreate(
                    username=username,
                    display_name="Tổng duyệt",
                    role=Role.ADMIN,
                    password=password,
                ),
                passwords=Passwords(time_cost=1, memory_kib=1024),
                min_length=10,
            )
    finally:
        await engine.dispose()


class RehearsalServer:
    """Start with `start()`; `stop()` always (a context manager does both)."""

    def __init__(
        self,
        tmp: Path,
        database_url: str | None = None,
        points: int = 0,
        media_workers: int | None = None,
    ) -> None:
        self.tmp = tmp
        self.media_workers = media_workers
        self.database_url = database_url or f"sqlite+aiosqlite:///{tmp / 'rehearsal.sqlite3'}"
        self.points = points
        self.username = f"rehearsal-{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(18)
        self.log_path = tmp / "server.log"
        self.port = 0
        self.process: SpawnProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def embedded(self) -> bool:
        return self.database_url.startswith("sqlite")

    def __enter__(self) -> RehearsalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from migrations import runner

        try:
            runner.upgrade(self.database_url)
            asyncio.run(_create_operator(self.database_url, self.username, self.password))
        except Exception as exc:
            raise ServerError(f"cannot prepare the database: {exc}") from None
        self.port = free_port()
        env = {
            "DIEMCAU_VAR_DIR": str(self.tmp / "var"),
            "DIEMCAU_DATABASE_URL": self.database_url,
            "DIEMCAU_HOST": "127.0.0.1",
            "DIEMCAU_PORT": str(self.port),
            "DIEMCAU_PUBLIC_URL": self.base_url,
            "DIEMCAU_SECRET_KEY": secrets.token_urlsafe(48),
            "DIEMCAU_LOG_LEVEL": "WARNING",
            "DIEMCAU_ARGON2_TIME_COST": "1",
            "DIEMCAU_ARGON2_MEMORY_KIB": "1024",
            "DIEMCAU_WS_MAX_PER_ADDRESS": str(max(4000, self.points + 200)),
            "DIEMCAU_METRICS_ENABLED": "true",
            "DIEMCAU_MEDIA_HOST_ADDRESSES": "127.0.0.1",
        }
        (self.tmp / "phases").mkdir(exist_ok=True)
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=_serve_logged,
            args=(env, str(self.log_path), str(self.tmp / "phases"), self.media_workers),
            name="diemcau-rehearsal-server",
            # Not a daemon: as `diemcau serve`, it starts media worker processes of its own. It
            # dies with the rehearsal all the same (PR_SET_PDEATHSIG in serve_diemcau).
            daemon=False,
        )
        self.process.start()
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=self.base_url, timeout=5, trust_env=False) as http:
            while True:
                if not self.process.is_alive():
                    raise ServerError(
                        f"the server exited with code {self.process.exitcode}: {self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/healthz").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ServerError("the server did not answer /healthz within 60 s")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.terminate()
            self.process.join(20)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)

    def usage(self) -> tuple[float, float]:
        """CPU seconds so far and peak resident memory (MiB) of the server's processes: the API
        and its media workers (their peaks added up)."""
        pid = self.process.pid if self.process is not None else None
        if pid is None:
            return 0.0, 0.0
        cpu = 0.0
        peak_kib = 0
        for member in [pid, *_descendants(pid)]:
            try:
                cpu += cpu_seconds(member)
                peak_kib += next(
                    int(line.split()[1])
                    for line in Path(f"/proc/{member}/status").read_text().splitlines()
                    if line.startswith("VmHWM:")
                )
            except (OSError, StopIteration, ValueError):
                continue
        return cpu, peak_kib / 1024

    def logged_errors(self) -> list[str]:
        """Lines of the server's log that report an error."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return [line[:300] for line in lines if any(m in line for m in ERROR_MARKERS)]

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _descendants(pid: int) -> list[int]:
    """Live child processes, their children, and so on (from /proc's `children` lists)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found.extend(children)
            queue.extend(children)
    return found
