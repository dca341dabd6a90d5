"""ICE server settings, TURN REST credentials and the configurations browsers and aiortc get."""

from __future__ import annotations

import pytest
from aiortc import RTCIceTransportPolicy
from aiortc.rtcicetransport import connection_kwargs, parse_stun_turn_uri
from pydantic import SecretStr

from app.settings import Settings
from media.ice import (
    IceServer,
    IceServerConfig,
    TurnCredentialError,
    aiortc_configuration,
    check_ice_settings,
    ice_servers_for,
    parse_ice_url,
    turn_credentials,
)

NOW = 1_700_000_000.25


def settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def test_credential_matches_an_independent_hmac() -> None:
    """Expected values from `openssl dgst -sha1 -hmac SECRET -binary | base64`."""
    credential = turn_credentials("north", "point-1", now=1000.0, ttl_s=3600, not_after=None)
    assert credential.username == "4600:point-1"
    assert credential.password == "eJZBlqDZZjozSkPSQ/2vFIb5jBE="
    assert credential.expires_at == 4600
    credential = turn_credentials("s3cret", "hall", now=1_699_999_000, ttl_s=1000, not_after=None)
    assert (credential.username, credential.password) == (
        "1700000000:hall",
        "vLQI+KFIHeQgUdFC153WZkZ570Y=",
    )


def test_credential_lapses_with_the_session() -> None:
    capped = turn_credentials("s", "p", now=NOW, ttl_s=12 * 3600, not_after=NOW + 600.9)
    assert capped.expires_at == int(NOW + 600.9)
    assert capped.username.startswith(f"{int(NOW + 600.9)}:")
    uncapped = turn_credentials("s", "p", now=NOW, ttl_s=60, not_after=NOW + 600)
    assert uncapped.expires_at == int(NOW + 60)


@pytest.mark.parametrize("not_after", [NOW - 1, NOW, NOW + 0.5])
def test_credential_for_an_ended_session_is_refused(not_after: float) -> None:
    with pytest.raises(TurnCredentialError, match="session has ended"):
        turn_credentials("s", "p", now=NOW, ttl_s=3600, not_after=not_after)


@pytest.mark.parametrize(
    "participant",
    ["", "point:1", "point 1", "điểm-1", "tab\there", "x" * 201, "new\nline"],
)
def test_participant_ids_that_break_the_scheme_are_refused(participant: str) -> None:
    with pytest.raises(TurnCredentialError, match="participant id"):
        turn_credentials("s", participant, now=NOW, ttl_s=60, not_after=None)


def test_credential_error_is_a_value_error() -> None:
    assert issubclass(TurnCredentialError, ValueError)
    with pytest.raises(ValueError, match="empty"):
        turn_credentials("", "p", now=NOW, ttl_s=60, not_after=None)
    with pytest.raises(ValueError, match="positive"):
        turn_credentials("s", "p", now=NOW, ttl_s=0, not_after=None)
    with pytest.raises(ValueError, match="finite"):
        turn_credentials("s", "p", now=float("nan"), ttl_s=60, not_after=None)


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "transport"),
    [
        ("stun:stun.example.vn", "stun", "stun.example.vn", None, None),
        ("stun:10.0.0.1:3478", "stun", "10.0.0.1", 3478, None),
        ("turn:turn.example.vn", "turn", "turn.example.vn", None, None),
        ("turn:turn.example.vn:3478?transport=udp", "turn", "turn.example.vn", 3478, "udp"),
        ("turn:127.0.0.1:3478?transport=tcp", "turn", "127.0.0.1", 3478, "tcp"),
        ("turns:turn.example.vn:5349?transport=tcp", "turns", "turn.example.vn", 5349, "tcp"),
        ("turns:turn-1.example.vn", "turns", "turn-1.example.vn", None, None),
    ],
)
def test_valid_urls(
    url: str, scheme: str, host: str, port: int | None, transport: str | None
) -> None:
    parsed = parse_ice_url(url)
    assert (parsed.url, parsed.scheme, parsed.host, parsed.port, parsed.transport) == (
        url,
        scheme,
        host,
        port,
        transport,
    )
    # aiortc reads the same URL the same way (it would otherwise drop or reject it).
    theirs = parse_stun_turn_uri(url)
    assert (theirs["scheme"], theirs["host"]) == (scheme, host)
    if port is not None:
        assert theirs["port"] == port


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "malformed"),
        ("turn:", "malformed"),
        ("stun://stun.example.vn", "malformed"),
        ("turn:host:3478/path", "malformed"),
        ("http://example.vn", "malformed"),
        ("stuns:stun.example.vn", "not stun, turn or turns"),
        ("turn:[::1]:3478", "IPv6"),
        ("turn:host:0", "port 0"),
        ("turn:host:70000", "port 70000"),
        ("turn:host?transport=sctp", "udp or tcp"),
        ("stun:host?transport=udp", "no transport"),
        ("turns:host?transport=udp", "TLS"),
        ("turn:-bad-.example.vn", "host name"),
        ("turn:bad_name.example.vn", "host name"),
        ("turn:300.1.1.1", "IPv4"),
        ("TURN:host", "malformed"),
    ],
)
def test_invalid_urls(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_ice_url(url)


def test_turn_without_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="DIEMCAU_TURN_SECRET is not set"):
        check_ice_settings(settings(ice_servers=["stun:a.vn", "turn:b.vn:3478?transport=udp"]))
    with pytest.raises(ValueError, match="empty"):
        check_ice_settings(settings(ice_servers=["turn:b.vn"], turn_secret=""))
    with pytest.raises(ValueError, match="malformed"):
        check_ice_settings(settings(ice_servers=["stun//a.vn"]))


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIEMCAU_ICE_SERVERS", "stun:a.vn:3478, turn:b.vn?transport=tcp")
    monkeypatch.setenv("DIEMCAU_TURN_SECRET", "k")
    monkeypatch.setenv("DIEMCAU_TURN_CREDENTIAL_TTL_S", "600")
    config = check_ice_settings(Settings())
    assert [u.url for u in config.stun_urls] == ["stun:a.vn:3478"]
    assert [u.url for u in config.turn_urls] == ["turn:b.vn?transport=tcp"]
    assert (config.turn_secret, config.credential_ttl_s) == ("k", 600)


def test_no_servers_by_default() -> None:
    assert check_ice_settings(settings()).urls == ()
    assert ice_servers_for(settings(), "p", now=NOW, not_after=None) == []


def test_browser_list_for_stun_and_turn() -> None:
    config = settings(
        ice_servers=["stun:a.vn", "turn:b.vn:3478?transport=udp", "turns:b.vn:5349"],
        turn_secret=SecretStr("north"),
        turn_credential_ttl_s=3600,
    )
    servers = ice_servers_for(config, "point-7", now=NOW, not_after=NOW + 60)
    assert [s.browser() for s in servers] == [
        {"urls": ["stun:a.vn"]},
        {
            "urls": ["turn:b.vn:3478?transport=udp", "turns:b.vn:5349"],
            "username": f"{int(NOW + 60)}:point-7",
            "credential": turn_credentials(
                "north", "point-7", now=NOW, ttl_s=3600, not_after=NOW + 60
            ).password,
        },
    ]
    # A checked configuration can be reused without re-parsing the settings.
    checked = check_ice_settings(config)
    assert isinstance(checked, IceServerConfig)
    assert ice_servers_for(checked, "point-7", now=NOW, not_after=NOW + 60) == servers


def test_stun_only_needs_no_secret() -> None:
    servers = ice_servers_for(settings(ice_servers=["stun:a.vn"]), "p", now=NOW, not_after=None)
    assert [s.browser() for s in servers] == [{"urls": ["stun:a.vn"]}]


def test_turn_credentials_for_an_ended_session_are_refused() -> None:
    config = settings(ice_servers=["turn:b.vn"], turn_secret=SecretStr("k"))
    with pytest.raises(TurnCredentialError):
        ice_servers_for(config, "p", now=NOW, not_after=NOW - 10)


def test_aiortc_configuration_is_never_none() -> None:
    """`None` would make aiortc use Google's public STUN server."""
    empty = aiortc_configuration([])
    assert empty.iceServers == []
    assert connection_kwargs(empty.iceServers) == {}
    assert empty.iceTransportPolicy is RTCIceTransportPolicy.ALL


def test_aiortc_configuration_carries_turn_credentials() -> None:
    servers = [
        IceServer(urls=["stun:a.vn"]),
        IceServer(urls=["turn:b.vn:3478?transport=udp"], username="9:p", credential="pw"),
    ]
    config = aiortc_configuration(servers, relay_only=True)
    assert config.iceTransportPolicy is RTCIceTransportPolicy.RELAY
    assert config.iceServers is not None
    assert connection_kwargs(config.iceServers) == {
        "stun_server": ("a.vn", 3478),
        "turn_server": ("b.vn", 3478),
        "turn_ssl": False,
        "turn_transport": "udp",
        "turn_username": "9:p",
        "turn_password": "pw",
    }


def test_ice_server_is_frozen_and_strict() -> None:
    server = IceServer(urls=["stun:a.vn"])
    with pytest.raises(ValueError, match="frozen"):
        server.urls = []  # type: ignore[misc]
    with pytest.raises(ValueError, match="Extra inputs"):
        IceServer(urls=["stun:a.vn"], credentialType="oauth")  # type: ignore[call-arg]
