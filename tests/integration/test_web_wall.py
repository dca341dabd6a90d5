"""The wall with all 3,321 communes in a real browser: built once, then only changed tiles move.

A national session invites every commune; the operator's console draws 3,321 tiles in 30+ provinces
from one `wall.snapshot`; then 40 points join and leave and the console applies their `wall.delta`s
to the same tile elements (the page is never rebuilt: tiles keep their identity). How long drawing
and applying took is printed for the record (not asserted: the machine is shared)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from models import Role
from tests.conftest import COMMUNES_CSV, TEST_PASSWORD, create_staff
from tests.integration.conftest import Live
from tests.peers.chromium import ChromiumFactory

COMMUNES = 3321


async def poll(page: Any, expression: str, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {expression}")
        await asyncio.sleep(0.1)


async def test_the_national_wall_applies_deltas_to_the_same_tiles(
    start_live: Any, chromium_context: ChromiumFactory
) -> None:
    live: Live = await start_live(prepare=False, public_url=None)
    for role in Role:
        await create_staff(live.settings, role.value, role)
    await live.login_all()
    response = await live.http.post(
        "/api/v1/points/import",
        content=COMMUNES_CSV.read_bytes(),
        headers={**live.op, "Content-Type": "text/csv"},
    )
    assert response.json()["created"] == COMMUNES
    session_id, credentials = await live.new_session("Hội nghị toàn quốc", {"all": True})
    live.session_id = session_id

    context = await chromium_context(viewport={"width": 1366, "height": 768})
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(f"{live.base_url}/login?next=/console%3Fsession%3D{session_id}")
    await page.fill("#username", "operator")
    await page.fill("#password", TEST_PASSWORD)
    started = time.monotonic()
    await page.click("#login button[type=submit]")
    await page.wait_for_url("**/console?session=*")
    await page.click("[data-tab=wall]")
    await poll(page, f"window.diemcau && window.diemcau.tiles.size === {COMMUNES}")
    drawn_s = time.monotonic() - started
    assert await page.evaluate("document.querySelectorAll('#wall .tile').length") == COMMUNES
    areas = await page.evaluate("document.querySelectorAll('#wall .area').length")
    assert areas > 30
    codes = sorted(credentials)[:: COMMUNES // 40][:40]
    await page.evaluate(
        "codes => { window.marked = codes.map(c => document.querySelector(`.tile[data-code='${c}']`)); }",
        codes,
    )

    started = time.monotonic()
    points = [await live.hello_point(credentials[code]) for code in codes]
    await poll(page, "window.marked.every(tile => tile.classList.contains('online'))")
    online_s = time.monotonic() - started
    assert await page.evaluate(
        "codes => codes.every((c, i) => document.querySelector(`.tile[data-code='${c}']`) === window.marked[i])",
        codes,
    )
    assert await page.evaluate("window.diemcau.counts.online") == len(codes)
    for point in points[:10]:
        await point.send({"type": "bye", "id": "bye"})
    await poll(page, "window.diemcau.counts.online === 30", within=30)
    assert await page.evaluate("document.querySelectorAll('#wall .tile').length") == COMMUNES
    print(
        f"wall of {COMMUNES} tiles drawn {drawn_s:.2f} s after login; "
        f"40 joins shown within {online_s:.2f} s"
    )
    assert problems == []
