"""Headless Chromium (Debian's, fake camera) as a point, through the real signaling and media.

The page is served by the app itself on 127.0.0.1 (a page injected by request interception counts
as a public origin and may not open a WebSocket to loopback).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.responses import HTMLResponse

from media.interface import ANY, SinkKey
from media.loadgen import PublisherClient, SubscriberClient
from signaling.media import room_name
from tests.integration.conftest import PHUC_XA, Live
from tests.integration.test_live_media import negotiate, wait_for
from tests.peers.chromium import ChromiumFactory

PAGE = Path(__file__).parent / "pages" / "point_media.html"
NO_PUBLIC_URL = [{"public_url": None}]  # the page's origin is then the server's own


def serve_page(live: Live) -> None:
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    live.app.add_api_route("/test/point-media.html", page, include_in_schema=False)


async def poll(page: Any, expression: str, within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        errors = await page.evaluate("window.state ? window.state.errors : []")
        assert not errors, errors
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {expression}")
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("live_server", NO_PUBLIC_URL, indirect=True)
async def test_chromium_point_sees_the_hall_and_reaches_it_on_the_floor(
    live_server: Live, chromium_context: ChromiumFactory
) -> None:
    live = live_server
    serve_page(live)
    hall_ws = await live.hello_staff(role="hall")
    program = PublisherClient(width=320, height=180)
    await negotiate(hall_ws, "publish", program)
    hall_rx = SubscriberClient(("floor", "preview"))
    await negotiate(hall_ws, "subscribe", hall_rx)

    context = await chromium_context()
    page = await context.new_page()
    await page.goto(f"{live.base_url}/test/point-media.html?publish=1#{live.credentials[PHUC_XA]}")
    await poll(page, "window.state.subscribed && window.state.published")
    # The hall's program is decoded by the browser.
    await poll(page, "window.decoded().then(d => d.program.framesDecoded >= 20)")
    decoded = await page.evaluate("window.decoded()")
    assert decoded["program"]["width"] == 320
    assert decoded["program"]["codec"] == "video/VP8"
    assert decoded["floor"]["framesDecoded"] == 0

    # Given the floor, the browser's camera reaches the hall's aiortc client.
    participant = await page.evaluate("window.state.welcome.media.participant")
    await live.state.media.route(room_name(live.session_id), {SinkKey(ANY, "floor"): participant})
    await wait_for(
        lambda: hall_rx.logs["floor/video"].frames >= 20, within=15, what="camera at hall"
    )
    assert hall_rx.logs["floor/video"].sizes[-1][1] > 0
    await wait_for(lambda: len(hall_rx.logs["floor/audio"].levels) >= 10, what="mic at hall")
    # And the browser does not get its own camera back.
    assert (await page.evaluate("window.decoded()"))["floor"]["framesDecoded"] == 0
    await program.close()
    await hall_rx.close()
