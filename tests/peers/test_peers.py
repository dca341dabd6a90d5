"""The real-peer harness works: coturn relays with minted credentials, Chromium does WebRTC."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import av
from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from app.settings import Settings
from media.ice import aiortc_configuration, ice_servers_for
from tests.conftest import unavailable
from tests.peers.chromium import DISABLED_FEATURES, ChromiumFactory, chromium_args, serve_directory
from tests.peers.coturn import Coturn
from tests.peers.loopback import candidate_lines, negotiate, nominated_pair, wait_connected

if TYPE_CHECKING:
    from playwright.async_api import Page


def turn_settings(coturn: Coturn, secret: str | None = None) -> Settings:
    return Settings(ice_servers=[coturn.url], turn_secret=secret or coturn.secret)


def echo_answerer() -> RTCPeerConnection:
    """A host-only aiortc peer that echoes data-channel messages: the server side of a call."""
    answerer = RTCPeerConnection(aiortc_configuration([]))

    def on_channel(channel: RTCDataChannel) -> None:
        channel.on("message", lambda message: channel.send(f"echo {message}"))

    answerer.on("datachannel", on_channel)
    return answerer


async def test_aiortc_client_connects_through_coturn_relay(
    coturn: Coturn, loopback_media: None
) -> None:
    servers = ice_servers_for(turn_settings(coturn), "point-00001", now=time.time(), not_after=None)
    client = RTCPeerConnection(aiortc_configuration(servers, relay_only=True))
    answerer = echo_answerer()
    try:
        channel = client.createDataChannel("probe")
        replies: asyncio.Queue[str] = asyncio.Queue()
        channel.on("message", replies.put_nowait)
        channel.on("open", lambda: channel.send("ping"))
        await negotiate(client, answerer)
        offered = candidate_lines(client.localDescription.sdp)
        # A wrong secret fails silently (no relay candidate, no error): assert the relay is there.
        assert offered, "no relay candidate: coturn refused the minted credential"
        assert all(" typ relay" in line for line in offered), offered
        await wait_connected(client, answerer)
        async with asyncio.timeout(10):
            assert await replies.get() == "echo ping"
        pair = nominated_pair(client)
        assert pair.local_candidate.type == "relay"
        low, high = coturn.relay_ports
        assert low <= pair.local_candidate.port <= high
        assert nominated_pair(answerer).remote_candidate.type == "relay"
    finally:
        await client.close()
        await answerer.close()


async def test_wrong_secret_gathers_no_relay_candidate(
    coturn: Coturn, loopback_media: None
) -> None:
    servers = ice_servers_for(
        turn_settings(coturn, secret="not-the-secret"), "point-1", now=time.time(), not_after=None
    )
    client = RTCPeerConnection(aiortc_configuration(servers, relay_only=True))
    try:
        client.createDataChannel("probe")
        await client.setLocalDescription(await client.createOffer())
        assert candidate_lines(client.localDescription.sdp) == []
    finally:
        await client.close()


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>diemcau real-peer harness</title>
<script>
const gathered = (pc) => new Promise((resolve) => {
  if (pc.iceGatheringState === "complete") return resolve();
  pc.addEventListener("icegatheringstatechange", () => {
    if (pc.iceGatheringState === "complete") resolve();
  });
});
const connected = (pc) => new Promise((resolve, reject) => {
  const check = () => {
    if (pc.connectionState === "connected") resolve();
    if (pc.connectionState === "failed") reject(new Error("connection failed"));
  };
  pc.addEventListener("connectionstatechange", check);
  check();
});

// Two peers in the page, fake camera and microphone, until the receiver decodes video frames.
window.loopbackCall = async () => {
  const media = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const a = new RTCPeerConnection(), b = new RTCPeerConnection();
  media.getTracks().forEach((track) => a.addTrack(track, media));
  await a.setLocalDescription();
  await gathered(a);
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await gathered(b);
  await a.setRemoteDescription(b.localDescription);
  await Promise.all([connected(a), connected(b)]);
  let frames = 0;
  for (let i = 0; i < 100 && frames === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    (await b.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames = s.framesDecoded || 0;
    });
  }
  const kinds = media.getTracks().map((t) => t.kind).sort();
  a.close(); b.close();
  return {kinds, frames, candidates: a.localDescription.sdp.split("\\r\\n").filter((l) => l.startsWith("a=candidate:"))};
};

// The browser side of a call to a server peer: offer (gathered, no trickle), then the answer.
window.offer = async (config) => {
  const media = await navigator.mediaDevices.getUserMedia({video: true});
  window.pc = new RTCPeerConnection(config);
  media.getTracks().forEach((track) => window.pc.addTrack(track, media));
  await window.pc.setLocalDescription();
  await gathered(window.pc);
  return window.pc.localDescription.sdp;
};
window.answer = async (sdp) => {
  await window.pc.setRemoteDescription({type: "answer", sdp});
  await connected(window.pc);
};
</script>
"""


def write_page(directory: Path) -> None:
    (directory / "index.html").write_text(PAGE, encoding="utf-8")


async def open_page(factory: ChromiumFactory, base: str) -> Page:
    context = await factory()
    page = context.pages[0] if context.pages else await context.new_page()
    await page.goto(f"{base}/index.html")
    return page


async def test_chromium_webrtc_with_fake_devices(
    chromium_context: ChromiumFactory, tmp_path: Path
) -> None:
    write_page(tmp_path)
    with serve_directory(tmp_path) as base:
        page = await open_page(chromium_context, base)
        result = await page.evaluate("loopbackCall()")
    assert result["kinds"] == ["audio", "video"]
    assert result["frames"] > 0
    # --allow-loopback-in-peer-connection took effect, and no candidate hides behind an mDNS name
    # (which aiortc could not resolve here).
    assert any(" 127.0.0.1 " in line for line in result["candidates"]), result["candidates"]
    assert not any(".local " in line for line in result["candidates"]), result["candidates"]


async def test_chromium_reaches_aiortc_through_coturn_relay(
    chromium_context: ChromiumFactory, coturn: Coturn, loopback_media: None, tmp_path: Path
) -> None:
    servers = ice_servers_for(turn_settings(coturn), "point-00002", now=time.time(), not_after=None)
    config = {"iceServers": [s.browser() for s in servers], "iceTransportPolicy": "relay"}
    answerer = RTCPeerConnection(aiortc_configuration([]))
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    answerer.on("track", tracks.put_nowait)
    write_page(tmp_path)
    try:
        with serve_directory(tmp_path) as base:
            page = await open_page(chromium_context, base)
            offer = await page.evaluate("(config) => offer(config)", config)
            offered = candidate_lines(offer)
            assert offered, "Chromium gathered no relay candidate: coturn refused the credential"
            assert all(" typ relay " in line for line in offered), offered
            await answerer.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await answerer.setLocalDescription(await answerer.createAnswer())
            await page.evaluate("(sdp) => answer(sdp)", answerer.localDescription.sdp)
            await wait_connected(answerer)
            async with asyncio.timeout(10):
                track = await tracks.get()
                frame = await track.recv()
        assert track.kind == "video"
        assert isinstance(frame, av.VideoFrame)
        assert frame.width > 0
        assert nominated_pair(answerer).remote_candidate.type == "relay"
    finally:
        await answerer.close()


def test_chromium_flags_keep_playwright_defaults() -> None:
    """Our single --disable-features replaces Playwright's: it must carry Playwright's whole list."""
    try:
        import playwright
    except ImportError:
        unavailable("playwright not installed: pip install -e '.[dev]'")
    bundle = Path(playwright.__file__).parent / "driver/package/lib/coreBundle.js"
    match = re.search(r"disabledFeatures = \[(.*?)\]", bundle.read_text(encoding="utf-8"), re.S)
    assert match, f"Playwright's disabledFeatures list not found in {bundle}: re-check chromium.py"
    theirs = re.findall(r'^\s*"(\w+)"', match.group(1), re.M)
    assert theirs, "Playwright's disabledFeatures list is empty: re-check chromium.py"
    assert set(theirs) <= set(DISABLED_FEATURES), set(theirs) - set(DISABLED_FEATURES)
    flag = [a for a in chromium_args([], ["Extra"]) if a.startswith("--disable-features")]
    assert len(flag) == 1
    assert flag[0].endswith(",WebRtcHideLocalIpsWithMdns,Extra")
