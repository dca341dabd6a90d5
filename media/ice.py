"""ICE servers for peers: checked STUN/TURN URLs and per-participant TURN credentials.

No public server is ever used implicitly: an empty configuration means host candidates only, and the
server's own aiortc peers always get an explicit list because aiortc replaces `None` with Google's
STUN server, which a closed network cannot reach (gathering then stalls for seconds).

TURN credentials follow the TURN REST scheme coturn implements with `use-auth-secret`: the username
carries its own expiry, so the TURN server needs no database and a leaked credential dies on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy
from pydantic import BaseModel, ConfigDict

from app.settings import Settings

Scheme = Literal["stun", "turn", "turns"]
Transport = Literal["udp", "tcp"]
_SCHEMES: dict[str, Scheme] = {"stun": "stun", "turn": "turn", "turns": "turns"}
_TRANSPORTS: dict[str, Transport] = {"udp": "udp", "tcp": "tcp"}

_URL = re.compile(
    r"(?P<scheme>[a-z]+):(?P<host>[^?:\[\]/]+|\[[^\]]*\])(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>[a-z]+))?"
)
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PARTICIPANT = re.compile(r"[\x21-\x39\x3b-\x7e]{1,200}")
"""Printable ASCII without ':' (the expiry separator) or spaces: coturn splits the username at the
first ':', other TURN servers at the last, and STUN's SASLprep would rewrite non-ASCII so that the
HMAC the browser presents no longer matches ours."""


class TurnCredentialError(ValueError):
    """A credential that could not be minted; the inputs, not the TURN server, are at fault."""


@dataclass(frozen=True, slots=True)
class IceUrl:
    """One checked STUN/TURN URL (RFC 7064, RFC 7065); `url` is kept verbatim for browsers."""

    url: str
    scheme: Scheme
    host: str
    port: int | None
    transport: Transport | None

    @property
    def is_turn(self) -> bool:
        return self.scheme != "stun"


@dataclass(frozen=True, slots=True)
class IceServerConfig:
    """The ICE part of the settings, checked once so that peers never meet a malformed URL."""

    urls: tuple[IceUrl, ...]
    turn_secret: str | None
    credential_ttl_s: int

    @property
    def stun_urls(self) -> tuple[IceUrl, ...]:
        return tuple(u for u in self.urls if not u.is_turn)

    @property
    def turn_urls(self) -> tuple[IceUrl, ...]:
        return tuple(u for u in self.urls if u.is_turn)


@dataclass(frozen=True, slots=True)
class TurnCredential:
    username: str
    password: str
    expires_at: int
    """Unix time after which the TURN server refuses the credential (allocations included)."""


class IceServer(BaseModel):
    """One entry of a browser's `RTCConfiguration.iceServers`, as sent over the WebSocket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    urls: list[str]
    username: str | None = None
    credential: str | None = None

    def browser(self) -> dict[str, object]:
        """Absent fields are left out: WebIDL would turn `username: null` into the string "null"."""
        return self.model_dump(mode="json", exclude_none=True)


def parse_ice_url(url: str) -> IceUrl:
    """Check a URL as both browsers and aiortc will read it, so a typo fails at start-up.

    aiortc cannot parse IPv6 literals and silently skips TURN URLs whose transport it does not
    support, so those are refused here rather than left to fail in one kind of peer only.
    """
    match = _URL.fullmatch(url)
    if match is None:
        raise ValueError(
            f"ICE server URL {url!r} is malformed: expected stun:HOST[:PORT] or "
            "turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT][?transport=tcp]"
        )
    scheme_text, host, port_text, transport_text = match.group(
        "scheme", "host", "port", "transport"
    )
    scheme = _SCHEMES.get(scheme_text)
    if scheme is None:
        raise ValueError(
            f"ICE server URL {url!r}: scheme {scheme_text!r} is not stun, turn or turns"
        )
    _check_host(url, host)
    port = int(port_text) if port_text else None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"ICE server URL {url!r}: port {port} is outside 1-65535")
    transport = _TRANSPORTS.get(transport_text) if transport_text else None
    if transport_text and transport is None:
        raise ValueError(f"ICE server URL {url!r}: transport must be udp or tcp")
    if scheme == "stun" and transport is not None:
        raise ValueError(f"ICE server URL {url!r}: stun: URLs take no transport (RFC 7064)")
    if scheme == "turns" and transport == "udp":
        raise ValueError(f"ICE server URL {url!r}: turns: runs over TLS, use ?transport=tcp")
    return IceUrl(url=url, scheme=scheme, host=host, port=port, transport=transport)


def _check_host(url: str, host: str) -> None:
    if host.startswith("["):
        raise ValueError(
            f"ICE server URL {url!r}: aiortc cannot parse IPv6 literals; use a host name"
        )
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"ICE server URL {url!r}: {host!r} is not an IPv4 address") from None
        return
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"ICE server URL {url!r}: {host!r} is not a valid host name")


def check_ice_settings(settings: Settings) -> IceServerConfig:
    """Refuse, at start-up, ICE settings that would only fail once peers try to connect."""
    urls = tuple(parse_ice_url(url) for url in settings.ice_servers)
    secret = settings.turn_secret.get_secret_value() if settings.turn_secret is not None else None
    if secret == "":
        raise ValueError("DIEMCAU_TURN_SECRET is empty")
    turn = [u.url for u in urls if u.is_turn]
    if turn and secret is None:
        raise ValueError(
            f"DIEMCAU_ICE_SERVERS lists TURN URLs ({', '.join(turn)}) but DIEMCAU_TURN_SECRET is "
            "not set: peers could not authenticate (set it to coturn's static-auth-secret)"
        )
    return IceServerConfig(
        urls=urls, turn_secret=secret, credential_ttl_s=settings.turn_credential_ttl_s
    )


def turn_credentials(
    secret: str, participant: str, *, now: float, ttl_s: int, not_after: float | None
) -> TurnCredential:
    """Mint a TURN REST credential that lapses with the session at the latest.

    `not_after` (the session's end) caps the lifetime so a point cannot keep relaying after the
    dialogue is over, whatever `ttl_s` allows.
    """
    if not secret:
        raise TurnCredentialError("TURN secret is empty")
    if not _PARTICIPANT.fullmatch(participant):
        raise TurnCredentialError(
            f"participant id {participant!r} cannot be used in a TURN username: use 1-200 "
            "printable ASCII characters without ':' or spaces"
        )
    if ttl_s <= 0:
        raise TurnCredentialError(f"credential lifetime must be positive, not {ttl_s}")
    if not math.isfinite(now):
        raise TurnCredentialError(f"now must be a finite time, not {now}")
    end = now + ttl_s if not_after is None else min(now + ttl_s, not_after)
    expires_at = math.floor(end)
    if expires_at <= now:
        raise TurnCredentialError(
            f"credential would expire at {expires_at}, not after now ({now:.0f}): "
            "the session has ended"
        )
    username = f"{expires_at}:{participant}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredential(
        username=username, password=base64.b64encode(digest).decode("ascii"), expires_at=expires_at
    )


def ice_servers_for(
    settings: Settings | IceServerConfig, participant: str, *, now: float, not_after: float | None
) -> list[IceServer]:
    """The `iceServers` a participant's peer connection gets: STUN as is, TURN with its own
    credential (one per participant, so the TURN server's logs and quotas name the point)."""
    config = settings if isinstance(settings, IceServerConfig) else check_ice_settings(settings)
    servers: list[IceServer] = []
    if config.stun_urls:
        servers.append(IceServer(urls=[u.url for u in config.stun_urls]))
    if config.turn_urls:
        if config.turn_secret is None:
            raise ValueError("TURN URLs are configured without a TURN secret")
        credential = turn_credentials(
            config.turn_secret,
            participant,
            now=now,
            ttl_s=config.credential_ttl_s,
            not_after=not_after,
        )
        servers.append(
            IceServer(
                urls=[u.url for u in config.turn_urls],
                username=credential.username,
                credential=credential.password,
            )
        )
    return servers


def aiortc_configuration(
    servers: Sequence[IceServer], *, relay_only: bool = False
) -> RTCConfiguration:
    """An aiortc configuration that never falls back to aiortc's public STUN default.

    aiortc uses only the first STUN and the first TURN URL it is given (in list order).
    """
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )
