"""The outgoing side of one connection, over a fake WebSocket made of lists."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from starlette.websockets import WebSocket, WebSocketState

from signaling.codes import CloseCode
from signaling.connection import Connection, TokenBucket


class FakeSocket:
    """Records what the writer sends; `gate` holds sends back like a slow network."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.application_state = WebSocketState.CONNECTED
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_text(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)

    async def close(self, code: int, reason: str = "") -> None:
        self.closed = (code, reason)
        self.application_state = WebSocketState.DISCONNECTED


def make(queue_limit: int = 4) -> tuple[Connection, FakeSocket]:
    socket = FakeSocket()
    conn = Connection(
        cast(WebSocket, socket),
        connection_id="c1",
        address="127.0.0.1",
        queue_limit=queue_limit,
        rate=TokenBucket(rate=1, burst=2),
    )
    conn.start()
    return conn, socket


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_messages_leave_in_order() -> None:
    conn, socket = make()
    for text in ("a", "b", "c"):
        assert conn.send(text)
    await settle()
    assert socket.sent == ["a", "b", "c"]
    conn.close(CloseCode.NORMAL)
    await conn.wait_closed(1)
    assert socket.closed == (1000, "bye")


async def test_a_slow_reader_overflows_and_is_cut_without_blocking_the_sender() -> None:
    conn, socket = make(queue_limit=3)
    socket.gate.clear()
    assert conn.send("first")
    await settle()  # "first" is in flight, held by the gate
    accepted = [conn.send(str(i)) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert conn.close_code is CloseCode.OVERFLOW
    socket.gate.set()
    await conn.wait_closed(1)
    assert socket.sent == ["first"]  # the queued backlog is dropped, not delivered late
    assert socket.closed is not None
    assert socket.closed[0] == 4408


async def test_close_after_queued_messages_unless_urgent() -> None:
    conn, socket = make()
    socket.gate.clear()
    conn.send("x")
    conn.send("y")
    conn.close(CloseCode.REPLACED)
    assert not conn.send("z")
    socket.gate.set()
    await conn.wait_closed(1)
    assert socket.sent == ["x", "y"]
    assert socket.closed == (4409, "replaced by a newer connection")


async def test_close_is_idempotent_and_keeps_the_first_code() -> None:
    conn, socket = make()
    conn.close(CloseCode.REVOKED)
    conn.close(CloseCode.NORMAL)
    await conn.wait_closed(1)
    assert socket.closed is not None
    assert socket.closed[0] == 4410


async def test_a_send_on_a_dead_socket_ends_the_writer_quietly() -> None:
    class Dead(FakeSocket):
        async def send_text(self, text: str) -> None:
            raise RuntimeError("Cannot call send once a close message has been sent.")

    socket = Dead()
    conn = Connection(
        cast(WebSocket, socket),
        connection_id="c2",
        address="-",
        queue_limit=4,
        rate=TokenBucket(rate=1, burst=1),
    )
    conn.start()
    conn.send("x")
    await conn.wait_closed(1)
    writer = cast(Any, conn)._writer
    assert writer.done()
    assert writer.exception() is None


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2, burst=3, stamp=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.4) is False  # 0.8 token
    assert bucket.take(100.5) is True  # 1.0 token
    assert [bucket.take(200.0) for _ in range(4)] == [True, True, True, False]  # capped at burst
