"""Bad input over a real socket: every malformed message gets one typed error, none kills the link.

The property test drives one joined connection with thousands of generated messages. Hypothesis
runs in a worker thread and hands each batch to the event loop that owns the server and the socket.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from signaling.codes import CloseCode, ErrorCode
from signaling.protocol import CLIENT_MESSAGE, CLIENT_TYPES
from tests.integration.conftest import PHUC_XA, Client, Live, point_hello, wall_point

CODES = {code.value for code in ErrorCode}
FAST = {"ws_rate_per_s": 1e6, "ws_rate_burst": 1_000_000}
# No heartbeat during the run: a pong can then never match a ping and change the wall.
QUIET = {"heartbeat_interval_s": 300, "heartbeat_timeout_s": 900}

Reply = tuple[str, str | None, str | None]


def expected(frame: str | bytes) -> list[Reply]:
    """What the protocol promises for one frame sent by a joined point: (type, code, id) each."""
    if isinstance(frame, bytes):
        return [("error", ErrorCode.MALFORMED_MESSAGE, None)]
    try:
        value = json.loads(frame)
        json.dumps(value, ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        return [("error", ErrorCode.MALFORMED_MESSAGE, None)]
    if not isinstance(value, dict):
        return [("error", ErrorCode.MALFORMED_MESSAGE, None)]
    request_id = value.get("id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 64:
        request_id = None
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        return [("error", ErrorCode.UNKNOWN_TYPE, request_id)]
    try:
        CLIENT_MESSAGE.validate_python(value)
    except ValidationError:
        return [("error", ErrorCode.VALIDATION_ERROR, request_id)]
    if kind == "pong":
        return []
    if kind == "ping":
        return [("ack", None, request_id)]
    if kind == "resync":
        return [("snapshot", None, None), ("ack", None, request_id)]
    if kind == "wall.get":
        return [("error", ErrorCode.FORBIDDEN, request_id)]
    if kind == "hello":
        return [("error", ErrorCode.ALREADY_JOINED, request_id)]
    raise AssertionError(f"not expected to be sent: {frame!r}")


def sendable(frame: str | bytes) -> bool:
    """Valid stats (a link report) and bye (leaving) legitimately change state; all else goes."""
    if isinstance(frame, bytes):
        return True
    try:
        value = json.loads(frame)
        CLIENT_MESSAGE.validate_python(value)
    except (ValueError, RecursionError, ValidationError, TypeError):
        return True
    return value.get("type") not in ("stats", "bye")


def reply_of(message: dict[str, Any]) -> Reply:
    return (message["type"], message.get("code"), message.get("id"))


async def exchange(client: Client, frames: list[str | bytes], tag: str) -> list[dict[str, Any]]:
    """Send the frames then a sentinel ping; every reply before the sentinel's ack, in order."""
    for frame in frames:
        await client.send(frame)
    await client.send({"type": "ping", "id": tag})
    replies: list[dict[str, Any]] = []
    while True:
        message = await client.next()
        if message["type"] == "ack" and message.get("id") == tag:
            return replies
        replies.append(message)


def check_errors(replies: list[dict[str, Any]]) -> None:
    for reply in replies:
        if reply["type"] == "error":
            assert reply["code"] in CODES
            assert isinstance(reply["message"], str)
            assert reply["message"]
            assert isinstance(reply["details"], dict)


# ---- explicit cases ----------------------------------------------------------------------------

TRICKY: list[str | bytes] = [
    b"\x00\x01binary",
    b"",
    "",
    " ",
    "{",
    "[" * 30_000,
    "{" + '"a":{' * 10_000,
    '{"type": []}',
    '{"type": {"a": 1}, "id": "t1"}',
    '{"type": null, "id": "t2"}',
    '{"type": 7}',
    '{"type": "\\ud800"}',
    '{"type": "ping", "id": "\\udc00"}',
    '{"type": "ping", "id": "ok", "\\ud800": 1}',
    '{"type": "hello", "id": "\\ud83d\\ude00", "protocol": 1}',
    '{"type": "ping", "id": "' + "x" * 65 + '"}',
    '{"type": "ping"}',
    '{"type": "ping", "id": "p1", "extra": 1}',
    '{"type": "ping", "id": 5}',
    '{"type": "pong", "nonce": ' + "9" * 30 + "}",
    '{"type": "pong", "nonce": ' + "9" * 5000 + "}",
    '{"type": "pong", "nonce": -1}',
    '{"type": "stats", "rtt_ms": NaN}',
    '{"type": "stats", "loss_pct": 101}',
    '{"type": "stats", "rtt_ms": "fast"}',
    "NaN",
    "1e999",
    "null",
    '"hello"',
    '[{"type": "ping", "id": "in-a-list"}]',
    '{"type": "hello", "id": "h2", "protocol": 1, "auth": {"kind": "point", "credential": "x"}}',
    '{"type": "hello", "id": "h3", "protocol": 1, "auth": {"kind": "robot"}}',
    '{"type": "wall.get", "id": "w1"}',
    '{"type": "resync", "id": "r1"}',
    '{"type": "pong", "nonce": 123}',
    '{"type": "ping", "id": "ok-after-all"}',
]


@pytest.mark.parametrize("live_server", [{**FAST, **QUIET}], indirect=True)
async def test_tricky_messages_each_get_one_answer(live_server: Live) -> None:
    live = live_server
    point = await live.hello_point(live.credentials[PHUC_XA])
    for n, frame in enumerate(TRICKY):
        replies = await exchange(point, [frame], f"sentinel-{n}")
        assert [reply_of(r) for r in replies] == expected(frame), frame[:80]
        check_errors(replies)
    # The link is as good as new.
    reply = await point.request({"type": "ping", "id": "last"})
    assert reply["type"] == "ack"
    metrics = await live.metrics()
    assert 'diemcau_ws_closes_total{code="1011"}' not in metrics
    assert metrics['diemcau_ws_connections{role="point"}'] == 1


@pytest.mark.parametrize("live_server", [{"ws_max_message_bytes": 4096, **QUIET}], indirect=True)
async def test_message_size_limit(live_server: Live) -> None:
    live = live_server
    point = await live.hello_point(live.credentials[PHUC_XA])
    # Exactly at the limit: read, and refused as not an object.
    at_limit = '"' + "ệ" * 1364 + '"'
    assert len(at_limit.encode()) == 4094
    replies = await exchange(point, [at_limit + "  "], "fits")
    assert [reply_of(r) for r in replies] == [("error", ErrorCode.MALFORMED_MESSAGE, None)]
    # One byte over closes with 1009.
    await point.send('"' + "x" * 4096)
    assert (await point.closed())[0] == CloseCode.TOO_BIG
    other = await live.hello_point(live.credentials["00004"])
    assert (await other.request({"type": "ping", "id": "p"}))["type"] == "ack"


@pytest.mark.parametrize("live_server", [{"ws_hello_timeout_s": 0.5}], indirect=True)
async def test_before_hello(live_server: Live) -> None:
    live = live_server
    client = await live.connect()
    await client.send({"type": "ping", "id": "early"})
    assert reply_of(await client.next()) == ("error", ErrorCode.HELLO_REQUIRED, "early")
    await client.send({"type": "pong", "nonce": 1})
    assert reply_of(await client.next()) == ("error", ErrorCode.HELLO_REQUIRED, None)
    await client.send({"type": "wall.get", "id": "w"})
    assert reply_of(await client.next()) == ("error", ErrorCode.HELLO_REQUIRED, "w")
    await client.send("not json")
    assert reply_of(await client.next()) == ("error", ErrorCode.MALFORMED_MESSAGE, None)
    await client.send({"type": "hello", "id": "h0"})
    assert reply_of(await client.next()) == ("error", ErrorCode.VALIDATION_ERROR, "h0")
    wrong = point_hello(live.credentials[PHUC_XA])
    wrong["protocol"] = 2
    await client.send(wrong)
    error = await client.next()
    assert reply_of(error) == ("error", ErrorCode.UNSUPPORTED_PROTOCOL, "h1")
    assert "1" in error["message"]
    # Still in the handshake, and within the deadline: a right hello is welcomed.
    await client.send(point_hello(live.credentials[PHUC_XA]))
    assert (await client.next())["type"] == "welcome"

    silent = await live.connect()
    assert await silent.closed() == (CloseCode.HELLO_TIMEOUT, "no valid hello in time")
    chatty = await live.connect()
    for n in range(3):
        await chatty.send({"type": "ping", "id": f"c{n}"})
        assert reply_of(await chatty.next()) == ("error", ErrorCode.HELLO_REQUIRED, f"c{n}")
    assert (await chatty.closed())[0] == CloseCode.HELLO_TIMEOUT
    metrics = await live.metrics()
    assert metrics['diemcau_ws_closes_total{code="4001"}'] == 2
    assert metrics['diemcau_ws_errors_total{code="hello_required"}'] == 6


@pytest.mark.parametrize("live_server", [QUIET], indirect=True)
async def test_rate_limit(live_server: Live) -> None:
    live = live_server
    point = await live.hello_point(live.credentials[PHUC_XA])
    burst = live.settings.ws_rate_burst
    for n in range(burst + 20):
        await point.send({"type": "ping", "id": f"r{n}"})
    replies = [await point.next() for _ in range(burst + 20)]
    acks = [r for r in replies if r["type"] == "ack"]
    limited = [r for r in replies if r["type"] == "error"]
    assert len(acks) + len(limited) == burst + 20
    # The hello took one token of the burst.
    assert len(acks) >= burst - 1
    assert limited
    assert {reply_of(r) for r in limited} == {("error", ErrorCode.RATE_LIMITED, None)}
    # Flooding on regardless closes the connection.
    for n in range(1000):
        try:
            await point.send({"type": "ping", "id": f"f{n}"})
        except Exception:
            break
    assert (await point.closed(within=10))[0] == CloseCode.RATE_LIMITED


# ---- the property test -------------------------------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    ["id", "nonce", "protocol", "auth", "last_seq", "client", "rtt_ms", "loss_pct", "kind"]
) | st.text(max_size=12)
real_type = st.sampled_from(sorted(CLIENT_TYPES)) | st.sampled_from(["Ping", "hello ", "wall", ""])
typed_object = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    real_type | json_value,
    st.dictionaries(field_names, json_value | st.text(max_size=80), max_size=5),
)
near_valid = st.one_of(
    st.builds(lambda i: {"type": "ping", "id": i}, json_value | st.text(max_size=70)),
    st.builds(lambda n: {"type": "pong", "nonce": n}, json_value),
    st.builds(lambda i: {"type": "resync", "id": i}, st.text(min_size=1, max_size=64)),
    st.builds(lambda i: {"type": "wall.get", "id": i}, st.text(max_size=65)),
    st.builds(
        lambda p, a, s: {"type": "hello", "id": "again", "protocol": p, "auth": a, "last_seq": s},
        st.integers(min_value=-1, max_value=1001),
        json_value | st.just({"kind": "point", "credential": "dc1_nope"}),
        json_value,
    ),
    st.builds(
        lambda rtt, loss: {"type": "stats", "rtt_ms": rtt, "loss_pct": loss},
        st.floats() | st.text(max_size=5),
        st.floats(min_value=100.5) | st.none(),
    ),
)
frame = st.one_of(
    json_value.map(lambda v: json.dumps(v)),
    typed_object.map(lambda v: json.dumps(v)),
    near_valid.map(lambda v: json.dumps(v)),
    st.text(max_size=100),
    st.binary(max_size=64),
).filter(sendable)


@pytest.mark.parametrize("live_server", [{**FAST, **QUIET}], indirect=True)
async def test_generated_messages_never_break_a_connection(live_server: Live) -> None:
    live = live_server
    op = await live.hello_staff()
    point = await live.hello_point(live.credentials[PHUC_XA])
    await op.until("wall.delta", where=lambda m: any(p["code"] == PHUC_XA for p in m["points"]))
    wall_before = await op.wall()
    session_before = await live.get_session()
    metrics_before = await live.metrics()
    loop = asyncio.get_running_loop()
    sent: list[int] = [0]
    codes: Counter[str] = Counter()
    failures: list[str] = []

    async def check(frames: list[str | bytes]) -> None:
        tag = f"sentinel-{sent[0]}"
        replies = await exchange(point, frames, tag)
        wanted = [reply for f in frames for reply in expected(f)]
        if [reply_of(r) for r in replies] != wanted:
            failures.append(f"{frames!r}: got {replies!r}, wanted {wanted!r}")
        check_errors(replies)
        sent[0] += len(frames)
        codes.update(r["code"] for r in replies if r["type"] == "error")

    @settings(
        max_examples=400,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(frame, min_size=2, max_size=12))
    def run(frames: list[str | bytes]) -> None:
        asyncio.run_coroutine_threadsafe(check(frames), loop).result(timeout=30)
        assert not failures, failures[0]

    await asyncio.to_thread(run)
    print(f"{sent[0]} generated messages, errors by code: {dict(codes)}")
    assert sent[0] >= 1500
    assert not failures

    # The connection is alive, the state is as it was, events flow as before.
    reply = await point.request({"type": "ping", "id": "after"})
    assert reply["type"] == "ack"
    wall_after = await op.wall()
    assert wall_after["points"] == wall_before["points"]
    assert wall_after["counts"] == wall_before["counts"]
    assert wall_point(wall_after, PHUC_XA)["state"] == "online"
    assert await live.get_session() == session_before
    second = await live.hello_point(live.credentials["00004"])
    await live.patch(description="sau khi thử nghiệm")
    for client in (second, point, op):
        event = await client.until("event")
        assert (event["event"], event["seq"]) == ("session.updated", session_before["last_seq"] + 1)
    metrics = await live.metrics()
    for code, count in codes.items():
        key = f'diemcau_ws_errors_total{{code="{code}"}}'
        assert metrics[key] - metrics_before.get(key, 0) == count
    assert 'diemcau_ws_closes_total{code="1011"}' not in metrics
    assert not math.isnan(metrics['diemcau_ws_connections{role="point"}'])
