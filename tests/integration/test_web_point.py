"""The ward staff's page in a real browser: Debian Chromium (fake camera and microphone) opens a
join link served by the app, passes the device check, joins, plays the hall, raises its hand and is
given the floor (its camera reaches the hall), answers the roll-call, and survives a network drop
as itself. Screenshots of each step go to test-artifacts/ (git-ignored)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from media.loadgen import PublisherClient, SubscriberClient
from tests.integration.conftest import PHUC_XA, Live
from tests.integration.test_live_media import negotiate, wait_for
from tests.peers.chromium import ChromiumFactory

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
NO_PUBLIC_URL = [{"public_url": None}]  # the page's origin is then the server's own


async def poll(page: Any, expression: str, within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            state = await page.evaluate(
                "JSON.stringify({...window.diemcau, stream: null, rx: null, tx: null, live: null})"
            )
            raise AssertionError(f"timed out: {expression}; state {state}")
        await asyncio.sleep(0.2)


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("live_server", NO_PUBLIC_URL, indirect=True)
async def test_a_ward_joins_speaks_answers_and_comes_back(
    live_server: Live, chromium_context: ChromiumFactory
) -> None:
    live = live_server
    hall = await live.hello_staff(role="hall")
    program = PublisherClient(width=320, height=180)
    await negotiate(hall, "publish", program)
    hall_rx = SubscriberClient(("floor", "preview"))
    await negotiate(hall, "subscribe", hall_rx)
    moderator = await live.hello_staff(live.tokens["moderator"])
    operator = await live.hello_staff()

    context = await chromium_context(viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    # The device check: the link is verified, the camera previews, the join button opens.
    await page.goto(f"{live.base_url}/join#{live.credentials[PHUC_XA]}")
    await page.wait_for_selector("#join:not([disabled])", timeout=15_000)
    assert await page.text_content("#who") == f"Phường Phúc Xá ({PHUC_XA})"
    assert await page.evaluate("document.documentElement.lang") == "vi"
    assert "Tốt" in (await page.text_content("#network") or "")
    assert await page.evaluate("document.getElementById('camera').options.length") >= 1
    await poll(page, "document.getElementById('preview').videoWidth > 0")
    await shot(page, "point-1-device-check")

    # Join: the hall's program plays, with sound allowed by the click.
    await page.click("#join")
    await poll(page, "window.diemcau.connection === 'online'")
    await poll(
        page,
        "document.getElementById('program').getVideoPlaybackQuality().totalVideoFrames >= 20",
        within=20,
    )
    assert await page.evaluate("document.getElementById('program').videoWidth") == 320
    assert await page.evaluate("document.getElementById('program').paused") is False
    # Off the floor the microphone is not live.
    assert (
        await page.evaluate("window.diemcau.stream.getAudioTracks().every(t => !t.enabled)") is True
    )
    await shot(page, "point-2-joined")

    # Raise a hand with a topic; the moderator sees it and grants the floor.
    await page.fill("#topic", "Đường ngõ 12 bị ngập khi mưa")
    await page.click("#raise")
    event = await moderator.until("event", where=lambda m: m["event"] == "floor.request")
    queued = event["payload"]["floor"]["queue"][0]
    assert queued["point_code"] == PHUC_XA
    assert queued["topic"] == "Đường ngõ 12 bị ngập khi mưa"
    await poll(page, "window.diemcau.position === 1")
    assert "thứ tự 1" in (await page.text_content("#queue-place") or "")
    await shot(page, "point-3-hand-raised")
    granted = await moderator.request(
        {"type": "floor", "id": "g", "action": "grant", "request_id": queued["request_id"]}
    )
    assert granted["type"] == "ack", granted
    await poll(page, "window.diemcau.mine === true")
    await poll(page, "window.diemcau.secondsLeft > 0")
    assert await page.evaluate("window.diemcau.stream.getAudioTracks().every(t => t.enabled)")
    assert await page.is_visible("#floor-mine")
    # The browser's camera reaches the hall.
    await wait_for(lambda: hall_rx.logs["floor/video"].frames >= 10, within=15, what="camera")
    await shot(page, "point-4-has-the-floor")
    await page.click("#release")
    await poll(page, "window.diemcau.mine === false")
    assert await page.evaluate("window.diemcau.stream.getAudioTracks().every(t => !t.enabled)")

    # The roll-call prompt; the headcount reaches the operator's tally.
    opened = await operator.request(
        {"type": "rollcall", "id": "o", "action": "open", "deadline_s": 120, "message": "Điểm danh"}
    )
    assert opened["type"] == "ack", opened
    await page.wait_for_selector("#rollcall:not([hidden])", timeout=10_000)
    await shot(page, "point-5-rollcall-prompt")
    await page.fill("#headcount", "23")
    await page.click("#confirm")
    await page.wait_for_selector("#rollcall-done:not([hidden])", timeout=10_000)
    assert "23" in (await page.text_content("#rollcall-done") or "")
    tally = await operator.until("rollcall.tally", where=lambda m: m["counts"]["present"] == 1)
    assert tally["counts"]["headcount"] == 23
    await shot(page, "point-6-rollcall-done")

    # The network drops and comes back: the page reconnects and resumes as the same point.
    await context.set_offline(True)
    await page.evaluate("window.diemcau.live.drop()")
    await poll(page, "window.diemcau.connection === 'reconnecting'")
    await shot(page, "point-7-reconnecting")
    await asyncio.sleep(1.0)
    await context.set_offline(False)
    await poll(
        page, "window.diemcau.connection === 'online' && window.diemcau.resumed >= 1", within=20
    )
    assert await page.evaluate("window.diemcau.welcome.identity.point_code") == PHUC_XA
    room = live.state.signaling.rooms[live.session_id]
    assert room.by_code[PHUC_XA].connection is not None
    assert await page.is_visible("#rollcall-done")

    # English, everywhere the page speaks.
    await page.click("#lang")
    assert await page.evaluate("document.documentElement.lang") == "en"
    assert await page.text_content("#raise") == "Raise hand to speak"
    await shot(page, "point-8-english")

    # Chromium itself logs each reconnect attempt refused while the network was off; anything
    # else in the console is a fault of the page.
    assert [p for p in problems if "ERR_INTERNET_DISCONNECTED" not in p] == []
    await program.close()
    await hall_rx.close()
