"""The process-wide network policy: host addresses and the UDP port range, with real aiortc peers."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Iterator

import aioice.ice
import pytest
from aiortc import RTCPeerConnection

import media.net
from media.errors import AiortcInternalsChanged
from media.ice import aiortc_configuration
from media.net import (
    MediaPortsExhausted,
    NetworkPolicy,
    apply_network_policy,
    check_aioice_internals,
    current_network_policy,
)
from tests.peers.loopback import candidate_lines, negotiate, nominated_pair, wait_connected


@pytest.fixture(autouse=True)
def restore_policy() -> Iterator[None]:
    previous = current_network_policy()
    yield
    apply_network_policy(previous.host_addresses, previous.port_range)


@pytest.fixture
def port_range() -> tuple[int, int]:
    """20 ports below the ephemeral range (and below the coturn fixture's relay ports)."""
    low = random.randrange(10000, 19980)
    return (low, low + 19)


def candidate_ports(sdp: str) -> list[int]:
    return [int(line.split()[5]) for line in candidate_lines(sdp)]


def candidate_hosts(sdp: str) -> set[str]:
    return {line.split()[4] for line in candidate_lines(sdp)}


async def test_peers_connect_with_ports_in_the_range(port_range: tuple[int, int]) -> None:
    apply_network_policy(["127.0.0.1"], port_range)
    low, high = port_range
    offerer = RTCPeerConnection(aiortc_configuration([]))
    answerer = RTCPeerConnection(aiortc_configuration([]))
    try:
        channel = offerer.createDataChannel("probe")
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await negotiate(offerer, answerer)
        for pc in (offerer, answerer):
            sdp = pc.localDescription.sdp
            assert candidate_hosts(sdp) == {"127.0.0.1"}, sdp
            ports = candidate_ports(sdp)
            assert ports, sdp
            assert all(low <= port <= high for port in ports), (ports, port_range)
        await wait_connected(offerer, answerer)
        async with asyncio.timeout(10):
            await opened.wait()
        for pc in (offerer, answerer):
            pair = nominated_pair(pc)
            assert low <= pair.local_candidate.port <= high
            assert low <= pair.remote_candidate.port <= high
    finally:
        await offerer.close()
        await answerer.close()


async def test_host_addresses_replace_aioice_choice() -> None:
    apply_network_policy([], None)
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    apply_network_policy(["127.0.0.1", "::1"], None)
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == ["::1"]


async def gather_ports(count: int) -> list[int]:
    """Gather `count` peer connections one after another (each closed before the next)."""
    ports: list[int] = []
    for _ in range(count):
        pc = RTCPeerConnection(aiortc_configuration([]))
        try:
            pc.createDataChannel("probe")
            await pc.setLocalDescription(await pc.createOffer())
            ports += candidate_ports(pc.localDescription.sdp)
        finally:
            await pc.close()
    return ports


async def test_ports_move_on_and_skip_ports_in_use(port_range: tuple[int, int]) -> None:
    low, _ = port_range
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", low + 1))
        apply_network_policy(["127.0.0.1"], port_range)
        assert await gather_ports(3) == [low, low + 2, low + 3]


async def test_exhausted_range_is_a_typed_error(port_range: tuple[int, int]) -> None:
    low, _ = port_range
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for offset, sock in enumerate(sockets):
            sock.bind(("127.0.0.1", low + offset))
        apply_network_policy(["127.0.0.1"], (low, low + 1))
        pc = RTCPeerConnection(aiortc_configuration([]))
        try:
            pc.createDataChannel("probe")
            with pytest.raises(MediaPortsExhausted, match=f"{low}-{low + 1}") as caught:
                await pc.setLocalDescription(await pc.createOffer())
            assert caught.value.status == 503
            assert caught.value.code == "media_ports_exhausted"
        finally:
            await pc.close()
    finally:
        for sock in sockets:
            sock.close()


async def test_other_binds_on_the_loop_are_untouched(port_range: tuple[int, int]) -> None:
    apply_network_policy(["127.0.0.1"], port_range)
    await gather_ports(1)  # the running loop's create_datagram_endpoint is now wrapped
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        low, high = port_range
        assert not low <= transport.get_extra_info("sockname")[1] <= high
    finally:
        transport.close()


async def test_ports_outside_the_range_are_caught(
    port_range: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If aioice stopped binding through the wrapped call, gathering fails loudly, not silently."""
    apply_network_policy(["127.0.0.1"], port_range)
    monkeypatch.setattr(media.net, "_wrap_loop", lambda loop: None)
    with pytest.raises(AiortcInternalsChanged, match="outside the media port range"):
        await gather_ports(1)


def test_uvloop_takes_the_range_too(port_range: tuple[int, int]) -> None:
    """uvicorn runs uvloop, and media may share its loop (`media_workers = 0`)."""
    uvloop = pytest.importorskip("uvloop")
    apply_network_policy(["127.0.0.1"], port_range)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        ports = runner.run(gather_ports(2))
    low, high = port_range
    assert ports
    assert all(low <= port <= high for port in ports)


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["eth0"], "not an IP address"),
        (["0.0.0.0"], "cannot be a host candidate"),
        (["::"], "cannot be a host candidate"),
        (["224.0.0.1"], "cannot be a host candidate"),
        (["203.0.113.7"], "cannot be bound here"),
    ],
)
def test_bad_host_addresses_fail_at_start(addresses: list[str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        apply_network_policy(addresses, None)


@pytest.mark.parametrize("port_range", [(80, 90), (5000, 4000), (60000, 70000)])
def test_bad_port_ranges_fail_at_start(port_range: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="port range"):
        apply_network_policy([], port_range)


def test_policy_is_replaced_and_reported() -> None:
    policy = apply_network_policy(["127.0.0.1"], (40000, 40009))
    assert policy == NetworkPolicy(host_addresses=("127.0.0.1",), port_range=(40000, 40009))
    assert current_network_policy() == policy
    assert apply_network_policy([], None) == NetworkPolicy()


def test_guard_names_moved_aioice_internals(monkeypatch: pytest.MonkeyPatch) -> None:
    check_aioice_internals()
    monkeypatch.delattr(aioice.ice, "get_host_addresses")
    monkeypatch.delattr(aioice.ice.Connection, "get_component_candidates")
    with pytest.raises(AiortcInternalsChanged) as caught:
        check_aioice_internals()
    assert "aioice.ice.get_host_addresses is missing" in str(caught.value)
    assert "aioice.ice.Connection.get_component_candidates is missing" in str(caught.value)
