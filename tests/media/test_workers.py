"""The media worker pool with real processes and real aiortc peers on 127.0.0.1.

Two workers (this VM has two cores, shared with the test's own decoding clients): the hall's
program reaches decoding points on both workers, the floor crosses workers through the relay, a
worker's typed error arrives typed, and a dead or stuck worker fails calls instead of hanging them.
Small pictures (320x180 program, 160x96 point) spare the cores for the clients' decoders.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.settings import Settings
from media.embedded.backend import parse_offer
from media.errors import (
    MediaCodecUnsupported,
    MediaError,
    MediaOfferInvalid,
    MediaParticipantNotFound,
    MediaRoomNotFound,
    MediaWorkerUnavailable,
)
from media.interface import ANY, SinkKey
from media.loadgen import PublisherClient, SubscriberClient
from media.workers.channel import describe_error, rebuild_error
from media.workers.pool import WorkerPool

pytestmark = pytest.mark.usefixtures("loopback_media")

ROOT = Path(__file__).resolve().parents[2]
ROOM = "s1"
PROGRAM = (320, 180)
POINT = (160, 96)
FIRST_FRAME_TIMEOUT_S = 10.0


def pool_settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path, media_workers=2, media_host_addresses=["127.0.0.1"])


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[WorkerPool]:
    backend = WorkerPool(pool_settings(tmp_path))
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


async def publish(
    backend: WorkerPool, name: str, size: tuple[int, int], role: str = "point"
) -> tuple[PublisherClient, int]:
    client = PublisherClient(
        width=size[0], height=size[1], amplitude=2000 if role == "point" else 8000
    )
    answer = await backend.add_publisher(ROOM, name, await client.offer(), role=role)  # type: ignore[arg-type]
    await client.accept(answer.sdp)
    return client, answer.worker


async def subscribe(
    backend: WorkerPool, name: str, slots: tuple[str, ...]
) -> tuple[SubscriberClient, int]:
    client = SubscriberClient(slots)
    answer = await backend.add_subscriber(ROOM, name, await client.offer(), slots=slots)
    await client.accept(answer.sdp)
    return client, answer.worker


async def first_frame(client: SubscriberClient, key: str, width: int) -> float:
    log = client.logs[key]
    async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
        while (at := log.first_size_after(0.0, width)) is None:
            await asyncio.sleep(0.05)
    return at


async def test_program_reaches_points_on_both_workers(pool: WorkerPool) -> None:
    await pool.create_room(ROOM)
    hall, hall_worker = await publish(pool, "hall", PROGRAM, role="hall")
    await pool.route(ROOM, {SinkKey(ANY, "program"): "hall"})
    points = [await subscribe(pool, name, ("program",)) for name in ("p1", "p2")]
    try:
        assert sorted(worker for _, worker in points) == [0, 1], "placement by load, ties by index"
        for client, _ in points:
            await first_frame(client, "program/video", PROGRAM[0])
        await asyncio.sleep(0.5)
        start = time.monotonic()
        await asyncio.sleep(3.0)
        end = time.monotonic()
        rates = [client.logs["program/video"].fps(start, end) for client, _ in points]
        frames = [client.logs["program/video"].frames for client, _ in points]
        print(f"\nprogram fps per point {rates}, frames {frames}")
        assert all(rate >= 25.0 for rate in rates), rates
        for client, _ in points:
            sizes = {(w, h) for _, w, h in client.logs["program/video"].sizes}
            assert sizes == {PROGRAM}
            assert client.logs["program/audio"].frames > 100

        stats = await pool.stats(ROOM)
        assert stats["hall"].worker == hall_worker
        assert {stats["p1"].worker, stats["p2"].worker} == {0, 1}
        assert stats["hall"].publisher_state == "connected"
        for name in ("p1", "p2"):
            assert stats[name].subscriber_state == "connected"
            assert stats[name].received["program/video"].packets_out > 0
            assert stats[name].routes == {"program": "hall"}

        backend = await pool.backend_stats()
        assert backend.workers == 2
        assert backend.decoders_created == 0
        assert backend.encoders_created == 0
        assert backend.forwarded_packets > 0

        relay = await pool.relay_stats()
        origin, remote = relay[hall_worker], relay[1 - hall_worker]
        print(
            f"relay: {origin.sent_packets} packets sent, {remote.received_packets} received, "
            f"latency mean {remote.latency_sum_s / max(1, remote.latency_samples) * 1000:.2f} ms "
            f"max {remote.latency_max_s * 1000:.1f} ms"
        )
        assert origin.sent_packets > 0
        # Sampled a moment apart: a packet or two may be in flight between the two replies.
        assert 0 <= origin.sent_packets - remote.received_packets <= 10
        assert remote.lost == remote.queue_drops == origin.send_drops == 0
        assert remote.keyframe_requests_out > 0
        assert remote.sender_reports_in > 0, "the hall's sender reports are relayed for lip sync"
        assert origin.keyframe_requests_in > 0
    finally:
        for client, _ in points:
            await client.close()
        await hall.close()


async def test_floor_crosses_workers_and_only_the_floor_is_relayed(pool: WorkerPool) -> None:
    await pool.create_room(ROOM)
    hall, hall_worker = await publish(pool, "hall", PROGRAM, role="hall")
    await pool.route(ROOM, {SinkKey(ANY, "program"): "hall"})
    speaker, speaker_worker = await subscribe(pool, "p1", ("program", "floor"))
    listener, listener_worker = await subscribe(pool, "p2", ("program", "floor"))
    clients: list[PublisherClient | SubscriberClient] = [hall, speaker, listener]
    try:
        assert speaker_worker != hall_worker
        assert listener_worker == hall_worker
        camera, camera_worker = await publish(pool, "p1", POINT)
        clients.append(camera)
        assert camera_worker == speaker_worker, "a participant's peers stay on one worker"
        await first_frame(listener, "program/video", PROGRAM[0])
        await asyncio.sleep(1.0)
        silent = (await pool.relay_stats())[speaker_worker]
        assert silent.sent_packets == 0, "a point off the floor is relayed nowhere"

        routed = time.monotonic()
        await pool.route(ROOM, {SinkKey(ANY, "floor"): "p1"})
        arrived = await first_frame(listener, "floor/video", POINT[0])
        print(f"\nfloor across workers: first frame {(arrived - routed) * 1000:.0f} ms after route")
        assert arrived - routed < 1.0, "the switch's keyframe is relayed, not the next one"
        await asyncio.sleep(2.0)
        now = time.monotonic()
        assert listener.logs["floor/video"].fps(now - 1.5, now) >= 25.0
        assert listener.logs["floor/audio"].frames > 50
        assert speaker.logs["floor/video"].frames == 0, "a point never receives itself"
        assert await speaker.packets_received("floor", "audio") == 0
        stats = await pool.stats(ROOM)
        assert stats["p1"].worker == speaker_worker
        assert stats["p1"].published["video"].packets_in > 0
        assert stats["p1"].published["video"].packets_out > 0, "counted where it was forwarded"
        assert set(stats) == {"hall", "p1", "p2"}, "relayed copies are not participants"

        await pool.route(ROOM, {SinkKey(ANY, "floor"): None})
        await asyncio.sleep(0.5)
        before = (await pool.relay_stats())[speaker_worker].sent_packets
        await asyncio.sleep(1.0)
        after = (await pool.relay_stats())[speaker_worker].sent_packets
        assert after == before, "relaying stops with the floor"
        backend = await pool.backend_stats()
        assert backend.decoders_created == backend.encoders_created == 0
    finally:
        for client in clients:
            await client.close()


async def test_typed_errors_cross_the_process_boundary(pool: WorkerPool) -> None:
    await pool.create_room(ROOM)
    bad = "v=0\r\nthis is not sdp\r\n"
    with pytest.raises(MediaOfferInvalid) as raised:
        await pool.add_publisher(ROOM, "p1", bad, role="point")
    with pytest.raises(MediaOfferInvalid) as local:
        parse_offer(bad)
    assert raised.value.message == local.value.message
    assert raised.value.code == "media_offer_invalid"

    client = SubscriberClient(("program",))
    try:
        offer = await client.offer()
        with pytest.raises(MediaOfferInvalid) as details:
            await pool.add_subscriber(ROOM, "p2", offer, slots=("program", "floor"))
        assert details.value.details == {"audio": 1, "video": 1}
    finally:
        await client.close()
    with pytest.raises(MediaRoomNotFound):
        await pool.add_publisher("nowhere", "p1", bad, role="point")
    with pytest.raises(MediaParticipantNotFound):
        await pool.request_keyframe(ROOM, "nobody")
    assert (await pool.stats(ROOM)) == {}, "failed negotiations leave no participant behind"


def test_errors_are_rebuilt_as_their_class() -> None:
    error = MediaCodecUnsupported("no codec in common", details={"reason": "x"})
    rebuilt = rebuild_error(describe_error(error), worker=1)
    assert type(rebuilt) is MediaCodecUnsupported
    assert (rebuilt.message, rebuilt.details) == (error.message, error.details)
    untyped = rebuild_error(describe_error(KeyError("boom")), worker=1)
    assert type(untyped) is MediaError
    assert untyped.details == {"worker": 1, "error": "builtins.KeyError"}


async def test_dead_or_stuck_worker_fails_calls_instead_of_hanging(tmp_path: Path) -> None:
    lost: list[tuple[int, list[tuple[str, str]]]] = []
    pool = WorkerPool(
        pool_settings(tmp_path),
        call_timeout_s=3.0,
        on_lost=lambda worker, gone: lost.append((worker, gone)),
    )
    await pool.start()
    clients: list[PublisherClient] = []
    try:
        await pool.create_room(ROOM)
        hall, hall_worker = await publish(pool, "hall", PROGRAM, role="hall")
        point, point_worker = await publish(pool, "p1", POINT)
        clients += [hall, point]
        assert point_worker != hall_worker
        await pool.request_keyframe(ROOM, "p1")

        victim = pool.worker_pids[point_worker]
        os.kill(victim, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(MediaWorkerUnavailable):
                await pool.request_keyframe(ROOM, "p1")
            assert time.monotonic() - started < 5.0
        finally:
            os.kill(victim, signal.SIGKILL)
            os.kill(victim, signal.SIGCONT)

        async with asyncio.timeout(5.0):
            while victim in pool.worker_pids.values():
                await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(MediaWorkerUnavailable):
            await pool.request_keyframe(ROOM, "p1")
        assert time.monotonic() - started < 0.5
        assert lost == [(point_worker, [(ROOM, "p1")])]
        stats = await pool.stats(ROOM)
        assert (stats["p1"].worker, stats["p1"].publisher_state) == (point_worker, "failed")
        assert stats["hall"].publisher_state is not None
        await pool.request_keyframe(ROOM, "hall")

        # A replacement process comes up; the point negotiates again and lands on a live worker.
        async with asyncio.timeout(20.0):
            while point_worker not in pool.worker_pids:
                await asyncio.sleep(0.1)
        again, _ = await publish(pool, "p1", POINT)
        clients.append(again)
        await pool.request_keyframe(ROOM, "p1")
        assert (await pool.stats(ROOM))["p1"].publisher_state in ("new", "connecting", "connected")
    finally:
        for client in clients:
            await client.close()
        await pool.stop()
    assert pool.worker_pids == {}


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from app.settings import Settings
    from media.workers.pool import WorkerPool

    async def main():
        pool = WorkerPool(Settings(var_dir=sys.argv[1], media_workers=2,
                                   media_host_addresses=["127.0.0.1"]))
        await pool.start()
        print(" ".join(str(pid) for pid in pool.worker_pids.values()), flush=True)
        await asyncio.sleep(60)

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_workers_exit_when_the_api_process_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "api.py"
    script.write_text(ORPHAN_SCRIPT)
    api = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        assert api.stdout is not None
        line = await asyncio.wait_for(api.stdout.readline(), 60)
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2
        assert all(_running(pid) for pid in pids)
        api.kill()
        await api.wait()
        async with asyncio.timeout(10.0):
            while any(_running(pid) for pid in pids):
                await asyncio.sleep(0.1)
    finally:
        if api.returncode is None:
            api.kill()
            await api.wait()
