"""Builds the configured media backend: on the API's loop, or a pool of forwarding processes."""

from __future__ import annotations

from aiortc import RTCConfiguration

from app.settings import Settings
from media.embedded.backend import EmbeddedMedia
from media.ice import IceServer, aiortc_configuration, check_ice_settings
from media.interface import MediaBackend
from media.net import apply_network_policy


def server_ice_servers(settings: Settings) -> list[IceServer]:
    """The server's own peers use STUN only: they are the reachable end, and a TURN allocation
    per server peer would double the relay's load for nothing."""
    config = check_ice_settings(settings)
    if not config.stun_urls:
        return []
    return [IceServer(urls=[u.url for u in config.stun_urls])]


def embedded_backend(settings: Settings, *, worker: int = 0) -> EmbeddedMedia:
    """The forwarder for this process, with the process-wide network policy applied first."""
    port_range = None
    if settings.media_udp_port_min is not None and settings.media_udp_port_max is not None:
        port_range = (settings.media_udp_port_min, settings.media_udp_port_max)
    apply_network_policy(settings.media_host_addresses, port_range)
    servers = server_ice_servers(settings)

    def configuration() -> RTCConfiguration:
        return aiortc_configuration(servers)

    return EmbeddedMedia(configuration=configuration, worker=worker)


def create_backend(settings: Settings) -> MediaBackend:
    if settings.effective_media_workers == 0:
        return embedded_backend(settings)
    from media.workers.pool import WorkerPool

    return WorkerPool(settings)
