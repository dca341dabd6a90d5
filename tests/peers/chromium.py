"""Headless system Chromium as a real WebRTC client, driven by Playwright's async API.

Never `playwright install`: the Debian `chromium` package is launched by path. Pages must come from a
real 127.0.0.1 HTTP server (`serve_directory`): a page injected by request interception counts as a
public origin, and Chromium's Local Network Access checks then block its requests to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from tests.conftest import unavailable

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext

CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT_DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
    "msForceBrowserSignIn",
    "msEdgeUpdateLaunchServicesPreferredVersion",
)
"""Playwright 1.65's own `--disable-features` list. Chromium keeps only the LAST `--disable-features`
(values are not merged), so ours must repeat these or Playwright's stabilisation is silently lost;
`test_chromium_flags` fails when the installed Playwright's list differs."""
DISABLED_FEATURES = (*PLAYWRIGHT_DISABLED_FEATURES, "WebRtcHideLocalIpsWithMdns")
"""WebRtcHideLocalIpsWithMdns: host candidates as addresses, not mDNS names aiortc cannot resolve."""
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
"""Fake camera and microphone granted without a prompt; loopback candidates offered (without the
flag Chromium never offers 127.0.0.1); no background traffic to Google."""


class ChromiumFactory(Protocol):
    def __call__(
        self, *args: str, disable_features: Sequence[str] = (), **options: Any
    ) -> Awaitable[BrowserContext]: ...


def chromium_args(args: Sequence[str], disable_features: Sequence[str]) -> list[str]:
    """Every disabled feature goes into one flag, placed last (see PLAYWRIGHT_DISABLED_FEATURES)."""
    if any(arg.startswith("--disable-features") for arg in args):
        raise ValueError("pass disabled features as disable_features=[...], not as a flag")
    features = ",".join(dict.fromkeys((*DISABLED_FEATURES, *disable_features)))
    return [*FLAGS, *args, f"--disable-features={features}"]


def require_chromium() -> None:
    if not CHROMIUM.is_file():
        unavailable("chromium not installed: apt-get install chromium")


@pytest.fixture
async def chromium_context(tmp_path: Path) -> AsyncIterator[ChromiumFactory]:
    """A factory of fresh persistent Chromium contexts (own profile each), closed after the test.

    Function-scoped like the event loop (`asyncio_default_fixture_loop_scope = "function"`): a
    Playwright connection belongs to the loop that started it.
    """
    require_chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("playwright not installed: pip install -e '.[dev]'")
    contexts: list[BrowserContext] = []
    async with async_playwright() as playwright:

        async def launch(
            *args: str, disable_features: Sequence[str] = (), **options: Any
        ) -> BrowserContext:
            profile = tmp_path / f"chromium-profile-{len(contexts)}"
            context = await playwright.chromium.launch_persistent_context(
                str(profile),
                executable_path=str(CHROMIUM),
                headless=True,
                args=chromium_args(args, disable_features),
                **options,
            )
            contexts.append(context)
            return context

        try:
            yield launch
        finally:
            for context in contexts:
                await context.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Test output stays readable; failures show in the browser's console instead."""


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` at a real http://127.0.0.1:PORT (a secure context for getUserMedia)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, name="test-page-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
