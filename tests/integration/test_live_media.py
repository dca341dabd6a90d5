"""The media plane through the real signaling: aiortc peers as the hall and as points, on loopback.

Every peer here is a real aiortc client that encodes (publishers) or decodes (subscribers); the
server forwards on the test's loop. Pictures are small (320x180 hall, 160x96 points) so that the
two cores of the test machine hold the encoders and decoders of the clients too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from media.embedded.backend import EmbeddedMedia
from media.ice import IceServer, aiortc_configuration
from media.interface import ANY, SinkKey
from media.loadgen import PublisherClient, SubscriberClient
from signaling.media import room_name
from tests.integration.conftest import PHUC_XA, Client, Live
from tests.peers.coturn import Coturn
from tests.peers.loopback import nominated_pair

HALL_SIZE = (320, 180)
POINT_SIZE = (160, 96)
HALL_LEVEL = 8000
POINT_LEVEL = 2000
OTHER_LEVEL = 5000


async def negotiate(
    client: Client, kind: str, peer: PublisherClient | SubscriberClient
) -> dict[str, Any]:
    reply = await client.request({"type": f"media.{kind}", "id": kind, "sdp": await peer.offer()})
    assert reply["type"] == "ack", reply
    await peer.accept(reply["result"]["sdp"])
    return reply


async def wait_for(predicate: Any, within: float = 8.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def assert_nothing_decoded_or_encoded(live: Live) -> None:
    """The server's own peers: no decoder thread on any receiver, no encoder on any sender."""
    backend = live.state.media
    stats = await backend.backend_stats()
    assert stats.peers > 0
    assert (stats.decoders_created, stats.encoders_created) == (0, 0)
    if isinstance(backend, EmbeddedMedia):
        checked = 0
        for room in backend.rooms.values():
            for member in room.participants.values():
                for pc in (member.publisher, member.subscriber):
                    for transceiver in pc.getTransceivers() if pc is not None else []:
                        assert vars(transceiver.receiver)["_RTCRtpReceiver__decoder_thread"] is None
                        assert vars(transceiver.sender)["_RTCRtpSender__encoder"] is None
                        checked += 1
        assert checked > 0


@pytest.mark.parametrize(
    ("codec", "live_server"),
    [
        ("VP8", {}),
        ("H264", {}),
        pytest.param("VP8", {"media_workers": 2}, id="VP8-2-workers"),
    ],
    indirect=["live_server"],
)
async def test_program_to_points_and_floor_to_everyone(live_server: Live, codec: str) -> None:
    live = live_server
    codes = sorted(live.credentials)[:3]
    speaker_code, listener_code, silent_code = codes
    hall_ws = await live.hello_staff(role="hall")
    assert hall_ws.welcome["media"]["participant"] == "hall"
    assert hall_ws.welcome["media"]["slots"] == ["floor", "preview"]
    speaker_ws = await live.hello_point(live.credentials[speaker_code])
    listener_ws = await live.hello_point(live.credentials[listener_code])
    silent_ws = await live.hello_point(live.credentials[silent_code])
    assert speaker_ws.welcome["media"]["slots"] == ["program", "floor"]
    assert speaker_ws.welcome["media"]["ice_servers"] == []

    program = PublisherClient(
        codec=codec, width=HALL_SIZE[0], height=HALL_SIZE[1], amplitude=HALL_LEVEL
    )
    reply = await negotiate(hall_ws, "publish", program)
    assert reply["result"]["codecs"]["video"].lower() == f"video/{codec}".lower()

    speaker_rx = SubscriberClient(("program", "floor"))
    listener_rx = SubscriberClient(("program", "floor"))
    hall_rx = SubscriberClient(("floor", "preview"))
    await negotiate(speaker_ws, "subscribe", speaker_rx)
    await negotiate(listener_ws, "subscribe", listener_rx)
    await negotiate(hall_ws, "subscribe", hall_rx)

    # The program reaches every point, decoded, with the hall's size and loudness.
    for rx in (speaker_rx, listener_rx):
        await wait_for(lambda rx=rx: rx.logs["program/video"].frames >= 20, what="program frames")
        assert rx.logs["program/video"].sizes[-1][1:] == HALL_SIZE
        await wait_for(
            lambda rx=rx: len(rx.logs["program/audio"].levels) >= 10, what="program audio"
        )
        assert rx.logs["program/audio"].levels[-1][1] > 2500

    speaker_tx = PublisherClient(
        codec=codec, width=POINT_SIZE[0], height=POINT_SIZE[1], amplitude=POINT_LEVEL
    )
    silent_tx = PublisherClient(
        codec=codec, width=POINT_SIZE[0], height=POINT_SIZE[1], amplitude=OTHER_LEVEL, video=False
    )
    await negotiate(speaker_ws, "publish", speaker_tx)
    await negotiate(silent_ws, "publish", silent_tx)
    await asyncio.sleep(1.0)
    # Nobody has the floor: the floor slots carry nothing.
    assert await listener_rx.packets_received("floor", "audio") == 0
    assert await hall_rx.packets_received("floor", "video") == 0

    # The floor goes to the speaker through the routing call floor control will make.
    room = room_name(live.session_id)
    speaker = speaker_ws.welcome["media"]["participant"]
    routed_at = time.monotonic()
    await live.state.media.route(room, {SinkKey(ANY, "floor"): speaker})
    for rx in (hall_rx, listener_rx):
        await wait_for(
            lambda rx=rx: (
                rx.logs["floor/video"].first_size_after(routed_at, POINT_SIZE[0]) is not None
            ),
            what="floor video",
        )
        await wait_for(lambda rx=rx: rx.logs["floor/video"].frames >= 15, what="floor frames")
        await wait_for(lambda rx=rx: len(rx.logs["floor/audio"].levels) >= 10, what="floor audio")
    # Still the program at the points, and the speaker never gets itself back.
    assert listener_rx.logs["program/video"].sizes[-1][1:] == HALL_SIZE
    assert await speaker_rx.packets_received("floor", "video") == 0

    # The point off the floor sends audio that no one receives a single packet of.
    stats = await live.state.media.stats(room)
    silent = silent_ws.welcome["media"]["participant"]
    assert stats[silent].published["audio"].packets_in > 20
    assert stats[silent].published["audio"].packets_out == 0
    for rx in (hall_rx, listener_rx):
        levels = [level for _, level in rx.logs["floor/audio"].levels[5:]]
        assert levels
        assert all(level < 2500 for level in levels), "the silent point was heard"
    assert stats[speaker].published["video"].packets_out > 0
    assert str(stats[speaker].published["video"].codec).lower() == f"video/{codec}".lower()
    await assert_nothing_decoded_or_encoded(live)

    for peer in (program, speaker_rx, listener_rx, hall_rx, speaker_tx, silent_tx):
        await peer.close()


async def test_operator_previews_a_point_without_the_floor(live_server: Live) -> None:
    live = live_server
    point_ws = await live.hello_point(live.credentials[PHUC_XA])
    op_ws = await live.hello_staff()
    assert op_ws.welcome["media"]["slots"] == ["program", "floor", "preview"]
    point_tx = PublisherClient(width=POINT_SIZE[0], height=POINT_SIZE[1], amplitude=POINT_LEVEL)
    await negotiate(point_ws, "publish", point_tx)
    op_rx = SubscriberClient(("program", "floor", "preview"))
    await negotiate(op_ws, "subscribe", op_rx)
    reply = await op_ws.request({"type": "media.preview", "id": "pv", "point_code": PHUC_XA})
    assert reply == {"type": "ack", "id": "pv", "result": {"point_code": PHUC_XA}}
    await wait_for(lambda: op_rx.logs["preview/video"].frames >= 10, what="preview frames")
    assert await op_rx.packets_received("floor", "video") == 0
    reply = await op_ws.request({"type": "media.preview", "id": "pv2", "point_code": None})
    assert reply["type"] == "ack"
    await point_tx.close()
    await op_rx.close()


async def test_media_requests_are_checked(live_server: Live) -> None:
    live = live_server
    point_ws = await live.hello_point(live.credentials[PHUC_XA])
    observer_ws = await live.hello_staff(live.tokens["observer"])

    async def error_of(client: Client, message: dict[str, Any]) -> dict[str, Any]:
        reply = await client.request(message)
        assert reply["type"] == "error", reply
        return reply

    bad = await error_of(point_ws, {"type": "media.publish", "id": "a", "sdp": "v=0 not an offer"})
    assert bad["code"] == "media_offer_invalid"
    # An offer without enough sections for the point's slots.
    one_slot = SubscriberClient(("program",))
    wrong = await error_of(
        point_ws, {"type": "media.subscribe", "id": "b", "sdp": await one_slot.offer()}
    )
    assert wrong["code"] == "media_offer_invalid"
    assert wrong["details"]["audio"] == 1
    await one_slot.close()
    # Receive-only sections offered as a publication.
    recv = SubscriberClient(("program", "floor"))
    sdp = await recv.offer()
    assert (await error_of(point_ws, {"type": "media.publish", "id": "c", "sdp": sdp}))[
        "code"
    ] == "media_offer_invalid"
    await recv.close()
    forbidden = await error_of(
        observer_ws, {"type": "media.publish", "id": "d", "sdp": "v=0\r\n" * 3}
    )
    assert forbidden["code"] == "forbidden"
    assert (await error_of(point_ws, {"type": "media.preview", "id": "e", "point_code": PHUC_XA}))[
        "code"
    ] == "forbidden"
    op_ws = await live.hello_staff()
    missing = await error_of(op_ws, {"type": "media.preview", "id": "f", "point_code": "nope"})
    assert missing["code"] == "not_found"
    wrong_type = await error_of(point_ws, {"type": "media.publish", "id": "g", "sdp": 42})
    assert wrong_type["code"] == "validation_error"
    # Nothing was created by any of it, and the connection still works.
    backend = live.state.media
    assert isinstance(backend, EmbeddedMedia)
    members = [m for room in backend.rooms.values() for m in room.participants.values()]
    assert all(m.publisher is None for m in members)
    assert (await point_ws.request({"type": "ping", "id": "p"}))["type"] == "ack"


async def test_point_behind_turn_receives_the_program(start_live: Any, coturn: Coturn) -> None:
    """Relay-only ICE with the credential the server minted for this point, through real coturn."""
    live = await start_live(ice_servers=[coturn.url], turn_secret=coturn.secret)
    hall_ws = await live.hello_staff(role="hall")
    program = PublisherClient(width=HALL_SIZE[0], height=HALL_SIZE[1])
    await negotiate(hall_ws, "publish", program)

    point_ws = await live.hello_point(live.credentials[PHUC_XA])
    media = point_ws.welcome["media"]
    (turn,) = media["ice_servers"]
    assert turn["urls"] == [coturn.url]
    expiry, participant = turn["username"].split(":")
    assert participant == media["participant"]
    assert time.time() < int(expiry) <= time.time() + live.settings.turn_credential_ttl_s + 1
    configuration = aiortc_configuration(
        [IceServer(urls=turn["urls"], username=turn["username"], credential=turn["credential"])],
        relay_only=True,
    )
    rx = SubscriberClient(("program", "floor"), configuration=configuration)
    reply = await point_ws.request(
        {"type": "media.subscribe", "id": "s", "sdp": await rx.offer()}, within=15
    )
    assert reply["type"] == "ack", reply
    await rx.accept(reply["result"]["sdp"])
    await wait_for(lambda: rx.logs["program/video"].frames >= 20, within=15, what=coturn.log_tail())
    assert nominated_pair(rx.pc).local_candidate.type == "relay"
    await program.close()
    await rx.close()


def media_members(live: Live) -> set[str]:
    backend = live.state.media
    assert isinstance(backend, EmbeddedMedia)
    room = backend.rooms.get(room_name(live.session_id))
    return (
        set()
        if room is None
        else {name for name, m in room.participants.items() if m.publisher or m.subscriber}
    )


@pytest.mark.parametrize("live_server", [{"resume_window_s": 1.0}], indirect=True)
async def test_media_follows_the_point_connection(live_server: Live) -> None:
    live = live_server
    codes = sorted(live.credentials)[:3]
    peers: list[PublisherClient] = []

    async def publishing(code: str) -> tuple[Client, str]:
        ws = await live.hello_point(live.credentials[code])
        tx = PublisherClient(width=POINT_SIZE[0], height=POINT_SIZE[1], video=False)
        peers.append(tx)
        await negotiate(ws, "publish", tx)
        return ws, ws.welcome["media"]["participant"]

    leaving, leaver = await publishing(codes[0])
    dropping, dropper = await publishing(codes[1])
    resuming, resumer = await publishing(codes[2])
    assert media_members(live) == {leaver, dropper, resumer}

    # Bye: the media goes at once.
    await leaving.request({"type": "bye", "id": "b"})
    await wait_for(lambda: leaver not in media_members(live), within=2, what="bye closes media")
    # A dropped connection keeps its media through the resume window, then loses it.
    dropping.ws.transport.abort()  # the network goes: no close frame
    resuming.ws.transport.abort()
    await asyncio.sleep(0.3)
    assert {dropper, resumer} <= media_members(live)
    # The point that resumes in time keeps its media under its new connection.
    await live.hello_point(live.credentials[codes[2]], last_seq=resuming.welcome["seq"])
    await asyncio.sleep(1.5)
    assert media_members(live) == {resumer}

    # The session ends: its media room closes.
    await live.action(live.session_id, "go-live")
    await live.action(live.session_id, "end")
    await wait_for(lambda: not media_members(live), within=3, what="session end closes media")
    for tx in peers:
        await tx.close()


async def test_operators_see_media_stats_per_point(live_server: Live) -> None:
    live = live_server
    point_ws = await live.hello_point(live.credentials[PHUC_XA])
    tx = PublisherClient(width=POINT_SIZE[0], height=POINT_SIZE[1])
    await negotiate(point_ws, "publish", tx)
    participant = point_ws.welcome["media"]["participant"]
    url = f"/api/v1/sessions/{live.session_id}/media"

    async def published_video() -> int:
        response = await live.http.get(url, headers=live.headers["observer"])
        assert response.status_code == 200, response.text
        rows = {p["participant"]: p for p in response.json()["participants"]}
        row = rows[participant]
        assert row["point_code"] == PHUC_XA
        assert row["point_name"] == "Phường Phúc Xá"
        return int(row["published"]["video"]["packets_in"])

    deadline = time.monotonic() + 8
    while await published_video() < 30:
        assert time.monotonic() < deadline, "no video arrived"
        await asyncio.sleep(0.2)
    body = (await live.http.get(url, headers=live.op)).json()
    assert body["backend"]["decoders_created"] == 0
    assert body["backend"]["encoders_created"] == 0
    metrics = await live.metrics()
    assert metrics["diemcau_media_peers"] >= 1
    assert metrics["diemcau_media_workers"] == 1
    assert metrics['diemcau_media_codec_objects{kind="decoder"}'] == 0
    assert metrics['diemcau_media_codec_objects{kind="encoder"}'] == 0
    assert metrics["diemcau_media_loop_lag_max_seconds"] >= 0
    assert (await live.http.get(url)).status_code == 401
    missing = await live.http.get("/api/v1/sessions/999999/media", headers=live.op)
    assert missing.status_code == 404
    await tx.close()
