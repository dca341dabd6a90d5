"""WHIP on a real server: an aiortc encoder publishes the program over HTTP, points decode it.

The points take part exactly as in production: they join over the WebSocket and subscribe with
`media.subscribe`; only the program's publisher comes in through WHIP. Pictures are small so that
the test machine holds the clients' encoders and decoders too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from media.loadgen import PublisherClient, SubscriberClient
from signaling.media import room_name
from tests.integration.conftest import Client, Live

HALL_SIZE = (320, 180)
HALL_LEVEL = 8000
SDP = "application/sdp"


async def wait_for(predicate: Callable[[], bool], what: str, within: float = 8.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def subscribe(client: Client, peer: SubscriberClient) -> None:
    reply = await client.request(
        {"type": "media.subscribe", "id": "sub", "sdp": await peer.offer()}
    )
    assert reply["type"] == "ack", reply
    await peer.accept(reply["result"]["sdp"])


async def mint(live: Live, label: str) -> dict[str, Any]:
    response = await live.http.post(
        f"/api/v1/sessions/{live.session_id}/whip-tokens", json={"label": label}, headers=live.op
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def whip_post(live: Live, url: str, token: str, offer: str) -> httpx.Response:
    return await live.http.post(
        urlsplit(url).path,
        content=offer.encode(),
        headers={"Content-Type": SDP, "Authorization": f"Bearer {token}"},
    )


async def hall_published(live: Live) -> bool:
    stats = await live.state.media.stats(room_name(live.session_id))
    return "hall" in stats and stats["hall"].publisher_state is not None


def frames(peer: SubscriberClient) -> int:
    return peer.logs["program/video"].frames


def more_than(peer: SubscriberClient, track: str, count: int) -> Callable[[], bool]:
    return lambda: peer.logs[track].frames > count


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_whip_program_reaches_points(live_server: Live, codec: str) -> None:
    live = live_server
    token = await mint(live, "OBS")
    assert urlsplit(token["whip_url"]).path == f"/api/v1/whip/{live.session_id}"
    first_code, second_code = sorted(live.credentials)[:2]
    op_ws = await live.hello_staff()
    # One point is already watching when the program starts, one joins while it runs.
    early_ws = await live.hello_point(live.credentials[first_code])
    early = SubscriberClient(("program", "floor"))
    late = SubscriberClient(("program", "floor"))
    encoders: list[PublisherClient] = []
    try:
        await subscribe(early_ws, early)

        encoder = PublisherClient(
            codec=codec, width=HALL_SIZE[0], height=HALL_SIZE[1], amplitude=HALL_LEVEL
        )
        encoders.append(encoder)
        response = await whip_post(live, token["whip_url"], token["token"], await encoder.offer())
        assert response.status_code == 201, response.text
        assert response.headers["content-type"] == SDP
        location = response.headers["location"]
        assert location.startswith(f"/api/v1/whip/{live.session_id}/resources/")
        await encoder.accept(response.text)

        late_ws = await live.hello_point(live.credentials[second_code])
        await subscribe(late_ws, late)
        for peer in (early, late):
            await wait_for(more_than(peer, "program/video", 20), "program frames at a point")
            assert peer.logs["program/video"].sizes[-1][1:] == HALL_SIZE
            await wait_for(more_than(peer, "program/audio", 10), "program audio")
            assert peer.logs["program/audio"].levels[-1][1] > HALL_LEVEL / 3
        stats = await live.state.media.stats(room_name(live.session_id))
        assert str(stats["hall"].published["video"].codec).lower() == f"video/{codec}".lower()
        assert stats["hall"].published["video"].packets_out > 0
        # Staff see the ingest start on the live side.
        started = await op_ws.until("event", where=lambda m: m.get("event") == "whip.started")
        assert started["payload"]["token_id"] == token["id"]

        # The encoder stops: DELETE ends the program.
        response = await live.http.delete(
            location, headers={"Authorization": f"Bearer {token['token']}"}
        )
        assert response.status_code == 200, response.text
        assert not await hall_published(live)
        await asyncio.sleep(0.3)
        stopped_at = frames(early)
        await asyncio.sleep(1.0)
        assert frames(early) - stopped_at <= 2

        # A revoked token publishes nothing more ...
        assert (
            await live.http.delete(
                f"/api/v1/sessions/{live.session_id}/whip-tokens/{token['id']}", headers=live.op
            )
        ).status_code == 204
        retry = PublisherClient(codec=codec, width=HALL_SIZE[0], height=HALL_SIZE[1])
        encoders.append(retry)
        response = await whip_post(live, token["whip_url"], token["token"], await retry.offer())
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert not await hall_published(live)

        # ... and a new one brings the program back to the points still watching.
        fresh = await mint(live, "OBS, new token")
        again = PublisherClient(
            codec=codec, width=HALL_SIZE[0], height=HALL_SIZE[1], amplitude=HALL_LEVEL
        )
        encoders.append(again)
        response = await whip_post(live, fresh["whip_url"], fresh["token"], await again.offer())
        assert response.status_code == 201, response.text
        await again.accept(response.text)
        resumed_from = frames(early)
        await wait_for(lambda: frames(early) > resumed_from + 20, "program frames after re-publish")

        # Revoking the token in use ends that program at once.
        assert (
            await live.http.delete(
                f"/api/v1/sessions/{live.session_id}/whip-tokens/{fresh['id']}", headers=live.op
            )
        ).status_code == 204
        assert not await hall_published(live)
    finally:
        for encoder in encoders:
            await encoder.close()
        await early.close()
        await late.close()


async def test_whip_program_and_the_hall_page_do_not_end_each_other(live_server: Live) -> None:
    """The hall page (floor + preview over the WebSocket) and the WHIP program are separate."""
    live = live_server
    token = await mint(live, "OBS")
    hall_ws = await live.hello_staff(role="hall")
    hall_rx = SubscriberClient(("floor", "preview"))
    await subscribe(hall_ws, hall_rx)
    encoder = PublisherClient(width=HALL_SIZE[0], height=HALL_SIZE[1])
    point_ws = await live.hello_point(live.credentials[sorted(live.credentials)[0]])
    point_rx = SubscriberClient(("program", "floor"))
    await subscribe(point_ws, point_rx)
    try:
        response = await whip_post(live, token["whip_url"], token["token"], await encoder.offer())
        assert response.status_code == 201, response.text
        await encoder.accept(response.text)
        await wait_for(more_than(point_rx, "program/video", 10), "program at the point")

        # The hall page leaves: the program goes on.
        await hall_ws.close()
        await asyncio.sleep(0.5)
        assert await hall_published(live)
        seen = frames(point_rx)
        await wait_for(
            more_than(point_rx, "program/video", seen + 10), "program after the page left"
        )

        # The hall page comes back and subscribes; ending the program keeps its subscription.
        hall_ws = await live.hello_staff(role="hall")
        await hall_rx.close()
        hall_rx = SubscriberClient(("floor", "preview"))
        await subscribe(hall_ws, hall_rx)
        response = await live.http.delete(
            response.headers["location"], headers={"Authorization": f"Bearer {token['token']}"}
        )
        assert response.status_code == 200, response.text
        stats = await live.state.media.stats(room_name(live.session_id))
        assert stats["hall"].publisher_state is None
        assert stats["hall"].subscriber_state in ("connecting", "connected")
    finally:
        for peer in (encoder, hall_rx, point_rx):
            await peer.close()
