"""The staff pages in a real browser, the issue's walk from an empty service to a roll-call: the
operator logs in, imports the Hanoi CSV, creates and opens a session, invites, downloads the join
links; the hall page publishes its camera; a point joins from its downloaded link and plays the
hall; it raises its hand, the moderator desk grants, the hall page plays the point's video; the
operator opens a roll-call and the point's headcount reaches the tally; the wall shows the point
online. Screenshots go to test-artifacts/ (git-ignored); the console must stay free of errors."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path
from typing import Any

from models import Role
from tests.conftest import HANOI_CSV, TEST_PASSWORD, create_staff
from tests.integration.conftest import HANOI_POINTS, PHUC_XA
from tests.peers.chromium import ChromiumFactory

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TITLE = "Đối thoại trực tuyến với Thành ủy Hà Nội"


async def poll(page: Any, expression: str, within: float = 15.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            errors = await page.evaluate("window.diemcau ? window.diemcau.errors : null")
            raise AssertionError(f"timed out on {page.url}: {expression}; errors {errors}")
        await asyncio.sleep(0.2)


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def watch_console(page: Any, problems: list[str]) -> None:
    page.on(
        "console", lambda m: problems.append(f"{page.url}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))


async def staff_headers(live: Any) -> dict[str, str]:
    response = await live.http.post(
        "/api/v1/auth/login", json={"username": "operator", "password": TEST_PASSWORD}
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def login(page: Any) -> None:
    await page.wait_for_selector("#login")
    await page.fill("#username", "operator")
    await page.fill("#password", TEST_PASSWORD)
    await page.click("#login button[type=submit]")


async def test_from_import_to_roll_call_in_the_browser(
    start_live: Any, chromium_context: ChromiumFactory
) -> None:
    live = await start_live(prepare=False, public_url=None)
    await create_staff(live.settings, "operator", Role.OPERATOR)
    context = await chromium_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    problems: list[str] = []

    # ---- the operator: login, import, session, open, invite, links ----
    console = await context.new_page()
    watch_console(console, problems)
    console.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await console.goto(f"{live.base_url}/console")
    await login(console)  # the console sent us to the login page and takes us back
    await console.wait_for_url("**/console")
    await poll(console, "window.diemcau && window.diemcau.ready")
    await shot(console, "console-1-sessions-empty")
    await console.click("[data-tab=points]")
    await console.set_input_files("#csv", str(HANOI_CSV))
    await console.wait_for_function(
        "document.getElementById('import-report').textContent.includes('thêm 526')"
    )
    await console.fill("#point-search", "Phúc Xá")
    await console.wait_for_function("document.querySelectorAll('#points tr').length === 1")
    await shot(console, "console-2-points-imported")

    await console.click("[data-tab=sessions]")
    await console.fill("#new-title", TITLE)
    await console.fill("#new-hall", "Hội trường Thành ủy")
    await console.click("#new-session button[type=submit]")
    await poll(console, f"window.diemcau.session && window.diemcau.session.title === '{TITLE}'")
    # Edit it before it opens: a new hall and a shorter speaking time.
    await console.fill("#edit-hall", "Hội trường Thành ủy, tầng 3")
    await console.fill("#edit-speaking", "150")
    await console.click("#edit-session button[type=submit]")
    await console.wait_for_function("document.getElementById('edit-saved').textContent !== ''")
    stored = (await live.http.get("/api/v1/sessions", headers=await staff_headers(live))).json()
    assert stored["items"][0]["hall_name"] == "Hội trường Thành ủy, tầng 3"
    assert stored["items"][0]["settings"]["speaking_time_limit_s"] == 150
    await console.click("[data-tab=invitations]")
    await console.fill("#invite-codes", "00001, 00004")
    await console.click("#invite-codes-go")
    await console.wait_for_function(
        "document.getElementById('invite-report').textContent.includes(' 2 ')"
    )
    await console.click("#invite-all")
    await console.wait_for_function(
        f"document.getElementById('invite-report').textContent.includes('{HANOI_POINTS}')"
    )
    await console.click("[data-tab=sessions]")
    await console.click("#lifecycle [data-action=open]")
    await poll(console, "window.diemcau.session.status === 'open'")
    await poll(
        console, "window.diemcau.connection === 'online' && window.diemcau.tiles.size === 526"
    )
    await console.click("[data-tab=invitations]")
    await console.click("#make-links")
    await console.wait_for_selector("#download-links:not([disabled])")
    async with console.expect_download() as downloading:
        await console.click("#download-links")
    path = await (await downloading.value).path()
    data = await asyncio.to_thread(Path(path).read_bytes)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert len(rows) == HANOI_POINTS
    phuc_xa = next(r for r in rows if r["code"] == PHUC_XA)
    assert phuc_xa["name"] == "Phường Phúc Xá"
    assert phuc_xa["district"] == "Quận Ba Đình"
    await console.click(f"#links tr:has-text('{PHUC_XA}') button")
    await console.wait_for_selector("#qr img")
    await shot(console, "console-3-join-links-qr")
    session_id = await console.evaluate("window.diemcau.session.id")

    # ---- the hall page publishes its camera ----
    hall = await context.new_page()
    watch_console(hall, problems)
    await hall.goto(f"{live.base_url}/hall?session={session_id}")
    await login(hall)
    await hall.wait_for_url(f"**/hall?session={session_id}")
    await poll(hall, "window.diemcau.connection === 'online'")
    await hall.click("#camera")
    await poll(hall, "window.diemcau.publishing")

    # ---- the point joins from its downloaded link and plays the hall ----
    point = await context.new_page()
    watch_console(point, problems)
    await point.goto(phuc_xa["link"].replace("http://diemcau.test", live.base_url))
    await point.wait_for_selector("#join:not([disabled])", timeout=15_000)
    await poll(point, "window.diemcau.readinessReported")
    await point.click("#join")
    await poll(
        point,
        "document.getElementById('program').getVideoPlaybackQuality().totalVideoFrames >= 10",
        within=20,
    )

    # ---- raise hand; the moderator desk grants; the hall plays the point ----
    moderator = await context.new_page()
    watch_console(moderator, problems)
    await moderator.goto(f"{live.base_url}/moderator?session={session_id}")
    await login(moderator)
    await moderator.wait_for_url(f"**/moderator?session={session_id}")
    await poll(moderator, "window.diemcau.connection === 'online'")
    await point.fill("#topic", "Đường ngõ 12 bị ngập khi mưa")
    await point.click("#raise")
    await moderator.wait_for_selector(f"#queue li[data-code='{PHUC_XA}']")
    assert "Đường ngõ 12 bị ngập khi mưa" in (await moderator.text_content("#queue") or "")
    await shot(moderator, "moderator-1-queue")
    await moderator.click(f"#queue li[data-code='{PHUC_XA}'] .grant")
    await poll(point, "window.diemcau.mine === true")
    await poll(moderator, f"window.diemcau.holder === '{PHUC_XA}'")
    await poll(
        hall,
        "document.getElementById('hall-speaker').getVideoPlaybackQuality().totalVideoFrames >= 10",
        within=20,
    )
    assert "Phường Phúc Xá" in (await hall.text_content("#speaker-name") or "")
    await shot(moderator, "moderator-2-speaking")
    await shot(hall, "hall-1-speaker")
    await hall.set_viewport_size({"width": 2560, "height": 1440})  # the hall's big screen
    await shot(hall, "hall-2-large-display")

    # ---- the roll-call reaches the operator's tally ----
    await console.click("[data-tab=rollcall]")
    await console.fill("#rollcall-deadline-s", "120")
    await console.click("#rollcall-open button[type=submit]")
    await point.wait_for_selector("#rollcall:not([hidden])", timeout=10_000)
    await point.fill("#headcount", "31")
    await point.click("#confirm")
    await point.wait_for_selector("#rollcall-done:not([hidden])")
    await console.wait_for_function(
        "document.querySelector('[data-status=headcount]')?.textContent.endsWith(': 31')"
    )
    assert "có mặt: 1" in (await console.text_content("#rollcall-counts") or "")
    areas = await console.eval_on_selector_all("#rollcall-areas tr", "rows => rows.length")
    assert areas == 30  # every district from the round's first tally
    ba_dinh = await console.text_content("#rollcall-areas tr[data-area='001']") or ""
    assert ba_dinh.startswith("Quận Ba Đình13")
    await shot(console, "console-4-rollcall")

    # ---- the wall, the readiness board and the timeline ----
    await console.click("[data-tab=wall]")
    await poll(
        console,
        f"document.querySelector('.tile[data-code=\"{PHUC_XA}\"]').classList.contains('online')",
    )
    assert "1" in (await console.text_content("[data-state=online]") or "")
    await console.click(f".tile[data-code='{PHUC_XA}']")
    await console.wait_for_selector("#tile-detail:not([hidden])")
    await console.wait_for_selector("#detail-stays li")
    assert (await console.text_content("#detail-stays li") or "").endswith("…")  # still connected
    # The live preview: the point's own camera, in the operator's preview slot.
    await console.click("#preview-go")
    await poll(
        console,
        "document.getElementById('preview-video').getVideoPlaybackQuality().totalVideoFrames >= 5",
        within=20,
    )
    await shot(console, "console-5-wall")
    await console.click("[data-tab=readiness]")
    await console.wait_for_function(
        "document.getElementById('readiness-summary').textContent.startsWith('1 / 1')"
    )
    assert (await console.text_content("#readiness-missing") or "").startswith("525 / 526")
    await console.click("[data-tab=timeline]")
    assert "rollcall.confirmed" in (await console.text_content("#timeline") or "")
    await shot(console, "console-6-timeline")

    assert problems == []
