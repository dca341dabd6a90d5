"""Prometheus metrics of the live side, in a registry per service (tests run several side by side)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from media.interface import BackendStats


class SignalingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connections = Gauge(
            "diemcau_ws_connections",
            "Open WebSocket connections by role.",
            ["role"],
            registry=self.registry,
        )
        self.presence = Gauge(
            "diemcau_presence_points",
            "Invited points by presence state, over all live sessions.",
            ["state"],
            registry=self.registry,
        )
        self.messages_in = Counter(
            "diemcau_ws_messages_in_total",
            "Messages received, by type (invalid ones as 'invalid').",
            ["type"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "diemcau_ws_messages_out_total",
            "Messages queued to clients, by type.",
            ["type"],
            registry=self.registry,
        )
        self.errors = Counter(
            "diemcau_ws_errors_total",
            "Error messages sent, by code.",
            ["code"],
            registry=self.registry,
        )
        self.closes = Counter(
            "diemcau_ws_closes_total",
            "Connections closed by the server, by close code.",
            ["code"],
            registry=self.registry,
        )
        self.overflows = Counter(
            "diemcau_ws_queue_overflows_total",
            "Connections cut because their outgoing queue overflowed.",
            registry=self.registry,
        )
        self.fanout_seconds = Histogram(
            "diemcau_fanout_seconds",
            "Time to queue one session event to every connection of the session.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.media_negotiation = Histogram(
            "diemcau_media_negotiation_seconds",
            "From a media.publish/subscribe offer to its answer (ICE gathering included).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.media_peers = Gauge(
            "diemcau_media_peers",
            "Media peer connections held by the server.",
            registry=self.registry,
        )
        self.media_workers = Gauge(
            "diemcau_media_workers",
            "Media forwarding loops (processes, or the API's own).",
            registry=self.registry,
        )
        self.media_forwarded_packets = Gauge(
            "diemcau_media_forwarded_packets",
            "RTP packets forwarded to subscribers since start (all workers).",
            registry=self.registry,
        )
        self.media_codecs = Gauge(
            "diemcau_media_codec_objects",
            "Decoders or encoders on the server's own peers: must stay 0 (never transcoded).",
            ["kind"],
            registry=self.registry,
        )
        self.media_loop_lag_max_seconds = Gauge(
            "diemcau_media_loop_lag_max_seconds",
            "Longest a forwarding loop was held since the previous scrape.",
            registry=self.registry,
        )
        self.media_cpu_seconds = Gauge(
            "diemcau_media_cpu_seconds",
            "CPU time of the media forwarding processes (the API's own when media runs on its loop).",
            registry=self.registry,
        )
        self.loop_lag_seconds = Histogram(
            "diemcau_event_loop_lag_seconds",
            "How late a 100 ms timer fires: event-loop congestion.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.rollcall_commit_seconds = Histogram(
            "diemcau_rollcall_commit_seconds",
            "From a roll-call answer or action stepped in memory to its commit: the part of an "
            "ack's wait that is the server's.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self._lag_task: asyncio.Task[None] | None = None
        self.recent_lags: list[float] = []

    def start(self) -> None:
        self._lag_task = asyncio.create_task(self._watch_lag(), name="loop-lag")

    async def _watch_lag(self) -> None:
        interval = 0.1
        while True:
            started = time.perf_counter()
            await asyncio.sleep(interval)
            lag = max(0.0, time.perf_counter() - started - interval)
            self.loop_lag_seconds.observe(lag)
            self.recent_lags.append(lag)
            if len(self.recent_lags) > 6000:
                del self.recent_lags[:3000]

    def observe_media(self, stats: BackendStats) -> None:
        """Called at each scrape: the media plane lives in other processes, so it is read then."""
        self.media_peers.set(stats.peers)
        self.media_workers.set(stats.workers)
        self.media_forwarded_packets.set(stats.forwarded_packets)
        self.media_codecs.labels("decoder").set(stats.decoders_created)
        self.media_codecs.labels("encoder").set(stats.encoders_created)
        self.media_loop_lag_max_seconds.set(stats.loop_lag_max_s)
        self.media_cpu_seconds.set(stats.cpu_s)

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
