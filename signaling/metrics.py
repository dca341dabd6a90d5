"""Prometheus metrics of the live side, in a registry per service (tests run several side by side)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.loop_lag_seconds = Histogram(
            "diemcau_event_loop_lag_seconds",
            "How late a 100 ms timer fires: event-loop congestion.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
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

    async def close(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
