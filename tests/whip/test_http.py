"""The WHIP exchange over HTTP (the app through httpx's ASGI transport), on SQLite and PostgreSQL.

Offers come from real aiortc publishers, so the server negotiates for real; whether media then
flows is tests/whip/test_live.py's job, on a real server.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.whip.service import MAX_OFFER_BYTES, ice_link_headers
from media.errors import MediaRoomNotFound
from media.ice import IceServer
from media.loadgen import PublisherClient, SubscriberClient
from signaling.media import room_name
from tests.conftest import assert_error
from tests.whip.conftest import API, SDP, Whip

SMALL = {"width": 160, "height": 96}
ORIGIN = "http://diemcau.test"


@pytest.fixture
async def publishers() -> AsyncIterator[list[PublisherClient]]:
    made: list[PublisherClient] = []
    yield made
    for peer in made:
        await peer.close()


async def offer_of(made: list[PublisherClient], **options: Any) -> str:
    peer = PublisherClient(**{**SMALL, **options})
    made.append(peer)
    return await peer.offer()


async def hall_published(whip: Whip, session_id: int) -> bool:
    try:
        stats = await whip.state.media.stats(room_name(session_id))
    except MediaRoomNotFound:
        return False
    return "hall" in stats and stats["hall"].publisher_state is not None


def resource_of(response: httpx.Response, session_id: int) -> str:
    location = response.headers["location"]
    match = re.fullmatch(rf"/api/v1/whip/{session_id}/resources/([A-Za-z0-9_\-]+)", location)
    assert match, location
    return location


def challenge(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthenticated"
    return response.headers["www-authenticate"]


async def test_publish_replace_delete(whip: Whip, publishers: list[PublisherClient]) -> None:
    session_id = await whip.session()
    token = await whip.mint(session_id)
    response = await whip.post_offer(session_id, await offer_of(publishers), token["token"])
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == SDP
    assert response.headers["cache-control"] == "no-store"
    assert "link" not in response.headers  # no ICE servers configured
    first = resource_of(response, session_id)
    assert response.headers["etag"] == f'"{first.rsplit("/", 1)[1]}"'
    assert response.text.startswith("v=0")
    assert "a=fingerprint:" in response.text
    await publishers[0].accept(response.text)
    assert await hall_published(whip, session_id)

    listed = (await whip.tokens(session_id))["items"]
    assert listed[0]["in_use"] is True
    assert listed[0]["last_used_at"] is not None

    # One program per session: a second POST replaces the first.
    response = await whip.post_offer(
        session_id, await offer_of(publishers, codec="H264"), token["token"]
    )
    assert response.status_code == 201, response.text
    second = resource_of(response, session_id)
    assert second != first
    auth = {"Authorization": f"Bearer {token['token']}"}
    assert_error(await whip.http.delete(first, headers=auth), 404, "whip_resource_not_found")
    assert await hall_published(whip, session_id)

    started = [e for e in await whip.events(session_id) if e["type"] == "whip.started"]
    assert [e["payload"]["replaced"] for e in started] == [False, True]
    assert started[0]["payload"]["codecs"]["video"].lower() == "video/vp8"
    assert started[1]["payload"]["codecs"]["video"].lower() == "video/h264"
    assert started[0]["payload"]["token_id"] == token["id"]
    assert started[0]["actor"] == f"whip:{token['id']}"

    response = await whip.http.delete(second, headers=auth)
    assert response.status_code == 200, response.text
    assert not await hall_published(whip, session_id)
    assert_error(await whip.http.delete(second, headers=auth), 404, "whip_resource_not_found")
    ended = [e for e in await whip.events(session_id) if e["type"] == "whip.ended"]
    assert [e["payload"]["reason"] for e in ended] == ["deleted"]
    assert (await whip.tokens(session_id))["items"][0]["in_use"] is False


async def test_revocation_ends_the_program_and_refuses_new_offers(
    whip: Whip, publishers: list[PublisherClient]
) -> None:
    session_id = await whip.session()
    token = await whip.mint(session_id)
    spare = await whip.mint(session_id, "backup")
    response = await whip.post_offer(session_id, await offer_of(publishers), token["token"])
    assert response.status_code == 201, response.text
    location = resource_of(response, session_id)
    assert await hall_published(whip, session_id)

    # Revoking an unused token leaves the program alone.
    assert (await whip.revoke(session_id, spare["id"])).status_code == 204
    assert await hall_published(whip, session_id)

    assert (await whip.revoke(session_id, token["id"])).status_code == 204
    assert not await hall_published(whip, session_id)
    response = await whip.post_offer(session_id, await offer_of(publishers), token["token"])
    assert 'error="invalid_token"' in challenge(response)
    response = await whip.http.delete(
        location, headers={"Authorization": f"Bearer {token['token']}"}
    )
    challenge(response)

    events = await whip.events(session_id)
    revoked = [e["payload"] for e in events if e["type"] == "whip_token.revoked"]
    assert [p["ended_ingest"] for p in revoked] == [False, True]
    ended = [e for e in events if e["type"] == "whip.ended"]
    assert [e["payload"]["reason"] for e in ended] == ["token_revoked"]
    assert ended[0]["actor"] == "account:operator"

    # A new token brings the program back.
    fresh = await whip.mint(session_id)
    response = await whip.post_offer(session_id, await offer_of(publishers), fresh["token"])
    assert response.status_code == 201, response.text


async def test_authentication(whip: Whip) -> None:
    session_id = await whip.session()
    other = await whip.session(title="Khác")
    token = (await whip.mint(session_id))["token"]
    other_token = (await whip.mint(other))["token"]
    revoked = await whip.mint(session_id)
    assert (await whip.revoke(session_id, revoked["id"])).status_code == 204
    url = f"{API}/whip/{session_id}"
    body = b"v=0\r\n"

    bare = 'Bearer realm="diemcau-whip"'
    assert challenge(await whip.http.post(url, content=body, headers={"Content-Type": SDP})) == bare
    # Authentication comes first: without a token, not even the content type is looked at.
    assert challenge(await whip.http.post(url, content=body)) == bare
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer ", token):
        response = await whip.http.post(
            url, content=body, headers={"Content-Type": SDP, "Authorization": header}
        )
        assert challenge(response) == bare, header

    invalid = f'{bare}, error="invalid_token"'
    refusals = []
    for bad in (
        "nonsense",
        whip.op["Authorization"].split(" ", 1)[1],  # a staff token
        other_token,  # another session's
        revoked["token"],
        "dc1_whip_" + "A" * 43,  # well shaped, unknown
        token + "x",
    ):
        response = await whip.post_offer(session_id, body, bad)
        assert challenge(response) == invalid, bad
        refusals.append(response.json())
    # A session that does not exist looks the same as a wrong token.
    response = await whip.post_offer(10**9, body, token)
    assert challenge(response) == invalid
    refusals.append(response.json())
    assert all(r == refusals[0] for r in refusals), refusals

    resource = f"{url}/resources/abc"
    assert challenge(await whip.http.delete(resource)) == bare
    response = await whip.http.delete(resource, headers={"Authorization": f"Bearer {other_token}"})
    assert challenge(response) == invalid
    response = await whip.http.delete(resource, headers={"Authorization": f"Bearer {token}"})
    assert_error(response, 404, "whip_resource_not_found")


async def test_bad_offers(whip: Whip, publishers: list[PublisherClient]) -> None:
    session_id = await whip.session()
    token = (await whip.mint(session_id))["token"]

    for content_type in ("application/json", "text/plain", "application/sdpx", ""):
        response = await whip.post_offer(session_id, "v=0\r\n", token, content_type=content_type)
        body = assert_error(response, 415, "unsupported_media_type")
        assert body["details"]["expected"] == SDP

    too_big = b"a" * (MAX_OFFER_BYTES + 1)
    response = await whip.post_offer(session_id, too_big, token)
    assert assert_error(response, 413, "payload_too_large")["details"] == {"limit": MAX_OFFER_BYTES}

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(MAX_OFFER_BYTES // 1024 + 2):
            yield b"a" * 1024

    response = await whip.http.post(
        f"{API}/whip/{session_id}",
        content=chunked(),
        headers={"Content-Type": SDP, "Authorization": f"Bearer {token}"},
    )
    assert_error(response, 413, "payload_too_large")

    for bad in (b"", b"  \r\n", b"hello", b"v=0\r\n", b"\xff\xfe\x00v=0", b"v=0\r\nm=audio x"):
        response = await whip.post_offer(
            session_id, bad, token, content_type=f"{SDP}; charset=utf-8"
        )
        assert_error(response, 400, "media_offer_invalid")

    receiver = SubscriberClient(("program",))
    try:
        response = await whip.post_offer(session_id, await receiver.offer(), token)
    finally:
        await receiver.close()
    assert_error(response, 400, "media_offer_invalid")
    assert not await hall_published(whip, session_id)

    # A good program, then an encoder misconfigured for AV1: refused, and the program stays up.
    response = await whip.post_offer(session_id, await offer_of(publishers), token)
    assert response.status_code == 201, response.text
    av1 = (await offer_of(publishers)).replace("VP8/90000", "AV1/90000")
    response = await whip.post_offer(session_id, av1, token)
    body = assert_error(response, 422, "media_codec_unsupported")
    assert body["details"]["kind"] == "video"
    assert "video/AV1" in body["details"]["offered"]
    assert await hall_published(whip, session_id)
    started = [e for e in await whip.events(session_id) if e["type"] == "whip.started"]
    assert len(started) == 1

    for bad_id in ("0", "abc", str(2**63)):
        response = await whip.post_offer(bad_id, "v=0\r\n", token)  # type: ignore[arg-type]
        assert_error(response, 422, "validation_error")


async def test_session_must_be_open_or_live(whip: Whip, publishers: list[PublisherClient]) -> None:
    session_id = await whip.session(open_=False)
    token = (await whip.mint(session_id))["token"]
    offer = await offer_of(publishers)
    body = assert_error(
        await whip.post_offer(session_id, offer, token), 409, "whip_session_not_open"
    )
    assert body["details"]["session_status"] == "draft"
    await whip.action(session_id, "open")
    await whip.action(session_id, "go-live")
    response = await whip.post_offer(session_id, offer, token)
    assert response.status_code == 201, response.text
    await whip.action(session_id, "end")
    response = await whip.post_offer(session_id, await offer_of(publishers), token)
    body = assert_error(response, 409, "whip_session_not_open")
    assert body["details"]["session_status"] == "ended"
    assert body["details"]["allowed"] == ["open", "live"]


async def test_patch_options_and_cors(whip: Whip) -> None:
    session_id = await whip.session()
    resource = f"{API}/whip/{session_id}/resources/abc"
    response = await whip.http.patch(
        resource,
        content=b"a=candidate",
        headers={"Content-Type": "application/trickle-ice-sdpfrag"},
    )
    body = assert_error(response, 405, "whip_patch_unsupported")
    assert body["details"] == {"trickle_ice": False, "ice_restart": False}
    assert response.headers["allow"] == "DELETE, OPTIONS"

    response = await whip.http.options(f"{API}/whip/{session_id}")
    assert response.status_code == 204
    assert response.headers["accept-post"] == SDP
    assert response.headers["allow"] == "OPTIONS, POST"
    assert (await whip.http.options(resource)).headers["allow"] == "DELETE, OPTIONS"

    # A browser WHIP client: its preflight passes, and it may read Location and ETag.
    for method in ("POST", "DELETE", "PATCH"):
        response = await whip.http.options(
            f"{API}/whip/{session_id}",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert response.status_code == 200, response.text
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert method in response.headers["access-control-allow-methods"]
        allowed = response.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed
        assert "content-type" in allowed
    response = await whip.post_offer(session_id, "v=0\r\n", None, Origin=ORIGIN)
    assert response.status_code == 401
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"location", "etag", "link"} <= exposed
    response = await whip.http.options(
        f"{API}/whip/{session_id}",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400


def test_ice_link_headers() -> None:
    servers = [
        IceServer(urls=["stun:stun.example.net"]),
        IceServer(
            urls=["turn:turn.example.net?transport=udp", "turns:turn.example.net:5349"],
            username="1796010780:hall",
            credential="c2VjcmV0",
        ),
    ]
    assert ice_link_headers(servers) == [
        '<stun:stun.example.net>; rel="ice-server"',
        '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="1796010780:hall"; '
        'credential="c2VjcmV0"; credential-type="password"',
        '<turns:turn.example.net:5349>; rel="ice-server"; username="1796010780:hall"; '
        'credential="c2VjcmV0"; credential-type="password"',
    ]


async def test_revocation_during_negotiation_wins(
    whip: Whip, publishers: list[PublisherClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token revoked while its offer is being negotiated publishes nothing."""
    session_id = await whip.session()
    token = await whip.mint(session_id)
    media = whip.state.media
    original = media.add_publisher

    async def revoked_meanwhile(*args: Any, **kwargs: Any) -> Any:
        answer = await original(*args, **kwargs)
        assert (await whip.revoke(session_id, token["id"])).status_code == 204
        return answer

    monkeypatch.setattr(media, "add_publisher", revoked_meanwhile)
    response = await whip.post_offer(session_id, await offer_of(publishers), token["token"])
    assert 'error="invalid_token"' in challenge(response)
    assert not await hall_published(whip, session_id)
    assert (await whip.tokens(session_id))["items"][0]["in_use"] is False
    assert "whip.started" not in [e["type"] for e in await whip.events(session_id)]


async def test_concurrent_offers_leave_one_program(
    whip: Whip, publishers: list[PublisherClient]
) -> None:
    session_id = await whip.session()
    token = (await whip.mint(session_id))["token"]
    offers = [await offer_of(publishers) for _ in range(3)]
    responses = await asyncio.gather(*(whip.post_offer(session_id, o, token) for o in offers))
    assert [r.status_code for r in responses] == [201, 201, 201]
    auth = {"Authorization": f"Bearer {token}"}
    statuses = [
        (await whip.http.delete(r.headers["location"], headers=auth)).status_code for r in responses
    ]
    assert sorted(statuses) == [200, 404, 404]
    assert not await hall_published(whip, session_id)
    started = [
        e["payload"]["replaced"]
        for e in await whip.events(session_id)
        if e["type"] == "whip.started"
    ]
    assert started == [False, True, True]
