"""A real coturn on loopback, configured like production but for `allow-loopback-peers`.

Production must never allow loopback peers (a TURN server would relay into its own host); tests need
it because every peer here lives on 127.0.0.1, and without it ICE silently stays in `checking`.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import unavailable

TURNSERVER = Path("/usr/bin/turnserver")
READY_TIMEOUT_S = 10.0
RELAY_PORTS = 100
"""Relay ports are drawn below Linux's ephemeral range (32768+) so that they cannot collide with
ports the kernel hands to peers, and at random so that concurrent runs rarely share a range."""


@dataclass(frozen=True, slots=True)
class Coturn:
    url: str
    secret: str
    port: int
    relay_ports: tuple[int, int]
    log: Path

    def __iter__(self) -> Iterator[str]:
        """Unpacks as `(url, secret)`."""
        return iter((self.url, self.secret))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no coturn log: {exc})"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def write_config(directory: Path, *, port: int, secret: str, relay_ports: tuple[int, int]) -> Path:
    config = directory / "turnserver.conf"
    lines = [
        f"listening-port={port}",
        "listening-ip=127.0.0.1",
        "relay-ip=127.0.0.1",
        f"min-port={relay_ports[0]}",
        f"max-port={relay_ports[1]}",
        "use-auth-secret",
        f"static-auth-secret={secret}",
        "realm=diemcau.test",
        "fingerprint",
        "no-tls",
        "no-dtls",
        "no-cli",
        "no-rfc5780",
        "allow-loopback-peers",
        f"log-file={directory / 'turnserver.log'}",
        "simple-log",
        f"pidfile={directory / 'turnserver.pid'}",
        f"userdb={directory / 'turndb'}",
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


def stun_binding_answered(port: int, timeout_s: float) -> bool:
    """Whether a STUN Binding request to 127.0.0.1:port gets a success response."""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(request, ("127.0.0.1", port))
        try:
            data = sock.recv(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == transaction


def start_coturn(directory: Path) -> tuple[subprocess.Popen[bytes], Coturn]:
    port = free_port()
    base = random.randrange(20000, 32000 - RELAY_PORTS)
    relay_ports = (base, base + RELAY_PORTS - 1)
    secret = secrets.token_urlsafe(24)
    config = write_config(directory, port=port, secret=secret, relay_ports=relay_ports)
    server = Coturn(
        url=f"turn:127.0.0.1:{port}?transport=udp",
        secret=secret,
        port=port,
        relay_ports=relay_ports,
        log=directory / "turnserver.log",
    )
    process = subprocess.Popen(
        [str(TURNSERVER), "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=directory,
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if stun_binding_answered(port, 0.1):
            return process, server
    stop(process)
    pytest.fail(
        f"coturn did not answer on 127.0.0.1:{port} within {READY_TIMEOUT_S} s "
        f"(exit code {process.returncode}); log:\n{server.log_tail()}",
        pytrace=False,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """One coturn for the whole run; it unpacks as `(url, secret)`."""
    if not (TURNSERVER.is_file() and os.access(TURNSERVER, os.X_OK)):
        unavailable("coturn not installed: apt-get install coturn")
    process, server = start_coturn(tmp_path_factory.mktemp("coturn"))
    try:
        yield server
    finally:
        stop(process)
