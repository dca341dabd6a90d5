"""Which addresses and UDP ports the media plane's ICE agents (aioice, under aiortc) use.

aioice offers every non-loopback interface and lets the kernel pick each port. A conference server
needs the opposite: the addresses its firewall and NAT rules name, and ports from the range those
rules open (one port per peer connection, aiortc has no port sharing). aioice has no option for
either, so this module adjusts two aioice internals once per process. Everything it relies on is
checked when the policy is applied (`AiortcInternalsChanged` names what moved), and every gathering
verifies its host ports, so an aioice upgrade cannot silently put media outside the range.

Port range, the choice made: aioice binds its host sockets inside
`Connection.get_component_candidates` with `loop.create_datagram_endpoint(..., local_addr=(address,
0))`. Copying that method would fork 90 lines of aioice (STUN and TURN gathering included). Instead
the method is wrapped to mark "host candidate gathering" in a context variable and to wrap, once per
event loop, the loop's `create_datagram_endpoint`: only calls made under that mark with a
`local_addr` of port 0 take a port from the range; TURN sockets (which use `remote_addr`) and all
other code on the loop are untouched. The wrapper is an instance attribute of the loop, which both
the stock asyncio loops and uvloop accept.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import functools
import inspect
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice

from media.errors import AiortcInternalsChanged, MediaError

logger = logging.getLogger(__name__)

_MARK = "_diemcau_port_range"
_GATHERING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "diemcau_gathering_host_candidates", default=False
)
_REQUIRED = {
    "aioice.ice.get_host_addresses": ("use_ipv4", "use_ipv6"),
    "aioice.ice.Connection.get_component_candidates": ("self", "component", "addresses"),
}

Endpoint = tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]
CreateEndpoint = Callable[..., Awaitable[Endpoint]]


class MediaPortsExhausted(MediaError):
    """Every port of the media UDP range is in use: no new peer connection until some close."""

    code = "media_ports_exhausted"
    status = 503


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    host_addresses: tuple[str, ...] = ()
    """Empty: aioice's own choice (every non-loopback interface)."""
    port_range: tuple[int, int] | None = None
    """Inclusive; None: the kernel's ephemeral ports."""


@dataclass(slots=True)
class _State:
    policy: NetworkPolicy
    installed: bool = False
    cursor: int = 0
    """Where the next port search starts: moving on spreads ports over the range, so a port just
    closed is not reused at once and stray packets for an old peer do not reach a new one."""


_state = _State(policy=NetworkPolicy())


def current_network_policy() -> NetworkPolicy:
    return _state.policy


def apply_network_policy(
    host_addresses: Sequence[str], port_range: tuple[int, int] | None
) -> NetworkPolicy:
    """Set the process's policy; it applies to every ICE agent gathering from now on.

    Call it at process start (each media worker is its own process). Calling it again replaces the
    policy, which is how tests switch to loopback and back; an empty policy restores aioice's own
    behaviour. Addresses must be IP literals that can be bound here: a wrong one would otherwise
    only show as peers that never connect.
    """
    policy = NetworkPolicy(
        host_addresses=tuple(_check_address(a) for a in host_addresses),
        port_range=_check_range(port_range),
    )
    if not _state.installed:
        _install()
    _state.policy = policy
    _state.cursor = 0
    logger.info(
        "media network policy: host addresses %s, UDP ports %s",
        ", ".join(policy.host_addresses) or "(all non-loopback)",
        "{}-{}".format(*policy.port_range) if policy.port_range else "(any)",
    )
    return policy


def _check_address(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"media host address {address!r} is not an IP address") from None
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(f"media host address {address!r} cannot be a host candidate")
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))
    except OSError as exc:
        raise ValueError(f"media host address {address!r} cannot be bound here: {exc}") from None
    return str(ip)


def _check_range(port_range: tuple[int, int] | None) -> tuple[int, int] | None:
    if port_range is None:
        return None
    low, high = port_range
    if not 1024 <= low <= high <= 65535:
        raise ValueError(f"media UDP port range {low}-{high} is not within 1024-65535, low first")
    return (low, high)


def check_aioice_internals() -> None:
    """Raise `AiortcInternalsChanged` naming every aioice name this module relies on that moved."""
    problems: list[str] = []
    for name, params in _REQUIRED.items():
        owner: Any = aioice
        for part in name.split(".")[1:]:
            owner = getattr(owner, part, None)
        if owner is None:
            problems.append(f"{name} is missing")
        elif tuple(inspect.signature(owner).parameters)[: len(params)] != params:
            problems.append(f"{name} no longer takes {params}")
    if problems:
        raise AiortcInternalsChanged(
            "media/net.py cannot apply the network policy: " + "; ".join(problems)
        )


def _install() -> None:
    check_aioice_internals()
    # setattr, not assignment: these are deliberate replacements of another package's names.
    wrapped_hosts = _wrap_host_addresses(aioice.ice.get_host_addresses)
    wrapped_gathering = _wrap_gathering(aioice.ice.Connection.get_component_candidates)
    setattr(aioice.ice, "get_host_addresses", wrapped_hosts)  # noqa: B010
    setattr(aioice.ice.Connection, "get_component_candidates", wrapped_gathering)  # noqa: B010
    _state.installed = True


def _wrap_host_addresses(original: Callable[[bool, bool], list[str]]) -> Callable[..., list[str]]:
    @functools.wraps(original)
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        configured = _state.policy.host_addresses
        if not configured:
            return original(use_ipv4, use_ipv6)
        return [
            a
            for a in configured
            if (use_ipv4 if ipaddress.ip_address(a).version == 4 else use_ipv6)
        ]

    return get_host_addresses


def _wrap_gathering(
    original: Callable[..., Awaitable[list[aioice.Candidate]]],
) -> Callable[..., Awaitable[list[aioice.Candidate]]]:
    @functools.wraps(original)
    async def get_component_candidates(
        self: aioice.Connection, *args: Any, **kwargs: Any
    ) -> list[aioice.Candidate]:
        port_range = _state.policy.port_range
        if port_range is None:
            return await original(self, *args, **kwargs)
        _wrap_loop(asyncio.get_running_loop())
        token = _GATHERING.set(True)
        try:
            candidates = await original(self, *args, **kwargs)
        finally:
            _GATHERING.reset(token)
        low, high = port_range
        stray = [c for c in candidates if c.type == "host" and not low <= c.port <= high]
        if stray:
            raise AiortcInternalsChanged(
                f"aioice bound host candidates outside the media port range {low}-{high} "
                f"({', '.join(f'{c.host}:{c.port}' for c in stray)}): re-check media/net.py"
            )
        return candidates

    return get_component_candidates


def _wrap_loop(loop: asyncio.AbstractEventLoop) -> None:
    current: CreateEndpoint = loop.create_datagram_endpoint
    if getattr(current, _MARK, False):
        return

    async def create_datagram_endpoint(
        protocol_factory: Callable[[], asyncio.DatagramProtocol],
        local_addr: tuple[str, int] | None = None,
        remote_addr: tuple[str, int] | None = None,
        **kwargs: Any,
    ) -> Endpoint:
        port_range = _state.policy.port_range
        if (
            port_range is None
            or not _GATHERING.get()
            or local_addr is None
            or local_addr[1] != 0
            or remote_addr is not None
        ):
            return await current(
                protocol_factory, local_addr=local_addr, remote_addr=remote_addr, **kwargs
            )
        return await _bind_in_range(current, protocol_factory, local_addr[0], port_range, kwargs)

    setattr(create_datagram_endpoint, _MARK, True)
    setattr(loop, "create_datagram_endpoint", create_datagram_endpoint)  # noqa: B010


async def _bind_in_range(
    create: CreateEndpoint,
    protocol_factory: Callable[[], asyncio.DatagramProtocol],
    host: str,
    port_range: tuple[int, int],
    kwargs: dict[str, Any],
) -> Endpoint:
    """Bind the first free port of the range, searching from the cursor.

    Ports taken by another process, or by another gathering between two tries, are skipped; any
    other bind error is aioice's to handle (it skips that address), as it would be without a range.
    """
    low, high = port_range
    size = high - low + 1
    start = _state.cursor % size
    for step in range(size):
        offset = (start + step) % size
        try:
            endpoint = await create(protocol_factory, local_addr=(host, low + offset), **kwargs)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        _state.cursor = offset + 1
        return endpoint
    raise MediaPortsExhausted(
        f"no free UDP port in the media range {low}-{high} on {host}",
        details={"host": host, "port_min": low, "port_max": high},
    )
