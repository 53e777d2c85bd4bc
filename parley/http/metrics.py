"""Prometheus metrics (D10), one registry per app so tests can run several apps.

Counters and histograms are fed by the request wrapper and the channel
routes; gauges read the runtime's ``statistics()`` at scrape time.
"""

from __future__ import annotations

import gc

from prometheus_client import GCCollector, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, backbone) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "parley_http_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "parley_write_seconds",
            "Latency of append and claim requests",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "parley_seatbelt_rejections", "Seatbelt rejections by code", ["code"], registry=self.registry
        )
        active = Gauge("parley_actors_active", "Actors in memory", ["kind"], registry=self.registry)
        active.labels("channel").set_function(lambda: backbone.channels.statistics().active)
        streams = Gauge("parley_open_streams", "Open SSE and WebSocket tails", registry=self.registry)
        streams.set_function(lambda: backbone.open_streams)
        batches = Gauge("parley_journal_batches", "Journal commit batches so far", registry=self.registry)
        batches.set_function(lambda: backbone.journal.statistics().get("batches", 0))
        events = Gauge("parley_journal_events", "Events committed by this process", registry=self.registry)
        events.set_function(lambda: backbone.journal.statistics().get("events", 0))
        depth = Gauge("parley_journal_queue_depth", "Appends waiting for the writer", registry=self.registry)
        depth.set_function(lambda: backbone.journal.statistics().get("queue_depth", 0))
        races = Gauge(
            "parley_channel_lost_races",
            "Channel commits lost to another process's append, then decided again (ADR-0007)",
            registry=self.registry,
        )
        races.set_function(lambda: backbone.lost_races)
        frozen = Gauge(
            "parley_gc_frozen_objects", "Objects in the GC's permanent generation (frozen at start-up)", registry=self.registry
        )
        frozen.set_function(gc.get_freeze_count)
        self.registry.register(SessionLag(backbone))
        GCCollector(registry=self.registry)  # python_gc_*: collections per generation
        self._backbone = backbone

    def render(self) -> bytes:
        return generate_latest(self.registry)


class SessionLag:
    """``parley_session_lag_messages``: messages after each session's cursor, per subscription.

    Computed at scrape time from the channel heads and the cursors of each open
    session's latest turn, so an agent that stopped taking turns shows a growing
    lag (ADR-0016). Operators aggregate with ``max by (agent_id, owner)``.
    """

    def __init__(self, backbone) -> None:
        self._backbone = backbone

    def collect(self):
        family = GaugeMetricFamily(
            "parley_session_lag_messages",
            "Messages not yet delivered to a session, per subscribed channel",
            labels=["agent_id", "owner", "session", "channel"],
        )
        sessions = self._backbone.sessions
        for agent_id, owner, session_id, channel, lag in sessions.lag() if sessions is not None else []:
            family.add_metric([agent_id, owner, session_id, channel], lag)
        yield family
