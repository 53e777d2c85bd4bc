"""Prometheus metrics (D10), one registry per app so tests can run several apps.

Counters and histograms are fed by the request wrapper and the channel
routes. :class:`RuntimeCollector` reads every ``statistics()`` of the
process at scrape time — the channel and session actor registries
(``RegistryStatistics``), the journal writer (``WriterStatistics``), the
seatbelt (``SeatbeltStatistics``) and the live-tail slots
(``StreamStatistics``): monotonic counts are exported as counters
(``…_total``), levels as gauges, following the Prometheus naming rules.
"""

from __future__ import annotations

import gc

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
        self.connection_errors = Counter(
            "parley_connection_errors",
            "Connections ended by an unexpected error in the HTTP layer (the server kept serving)",
            registry=self.registry,
        )
        streams = Gauge("parley_open_streams", "Open SSE and WebSocket tails", registry=self.registry)
        streams.set_function(lambda: backbone.open_streams)
        depth = Gauge("parley_journal_queue_depth", "Appends waiting for the writer", registry=self.registry)
        depth.set_function(lambda: backbone.journal.statistics().queue_depth)
        frozen = Gauge(
            "parley_gc_frozen_objects", "Objects in the GC's permanent generation (frozen at start-up)", registry=self.registry
        )
        frozen.set_function(gc.get_freeze_count)
        self.registry.register(RuntimeCollector(backbone))
        self.registry.register(SessionLag(backbone))
        GCCollector(registry=self.registry)  # python_gc_*: collections per generation
        ProcessCollector(registry=self.registry)  # process_*: CPU, memory, open fds, start time
        self._backbone = backbone

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RuntimeCollector:
    """The backbone's own counts, read from its ``statistics()`` when scraped."""

    def __init__(self, backbone) -> None:
        self._backbone = backbone

    def describe(self):
        return []

    def collect(self):
        backbone = self._backbone
        writer = backbone.journal.statistics()
        registries = {
            "channel": backbone.channels.statistics(),
            "session": backbone.sessions.registry.statistics(),
            "channel_create": backbone.creates.statistics(),
        }
        active = GaugeMetricFamily("parley_actors_active", "Actors in memory", labels=["kind"])
        mailbox = GaugeMetricFamily("parley_actor_mailbox_depth", "Commands waiting in actor mailboxes", labels=["kind"])
        activations = CounterMetricFamily("parley_actor_activations", "Actors loaded into memory", labels=["kind"])
        passivations = CounterMetricFamily("parley_actor_passivations", "Idle actors that left memory", labels=["kind"])
        restarts = CounterMetricFamily("parley_actor_restarts", "Actors restarted after a failure", labels=["kind"])
        for kind, stats in registries.items():
            active.add_metric([kind], stats.active)
            mailbox.add_metric([kind], stats.mailbox_depth)
            activations.add_metric([kind], stats.activations)
            passivations.add_metric([kind], stats.passivations)
            restarts.add_metric([kind], stats.restarts)
        largest = GaugeMetricFamily(
            "parley_actor_largest_mailbox", "Commands waiting in the deepest actor mailbox", labels=["kind"]
        )
        batches = CounterMetricFamily("parley_actor_batches", "Command batches handed to actors", labels=["kind"])
        commands = CounterMetricFamily("parley_actor_commands", "Commands handed to actors in batches", labels=["kind"])
        for kind, stats in registries.items():
            largest.add_metric([kind], stats.largest_mailbox)
            batches.add_metric([kind], stats.batches)
            commands.add_metric([kind], stats.commands)
        yield from (active, mailbox, activations, passivations, restarts, largest, batches, commands)
        yield from _writer_families(writer)
        yield from _seatbelt_families(backbone.seatbelt.statistics())
        yield from _stream_families(backbone.streams.statistics())
        yield CounterMetricFamily(
            "parley_channel_lost_races",
            "Channel commits lost to another process's append, then decided again (ADR-0007)",
            value=backbone.lost_races,
        )
        yield CounterMetricFamily(
            "parley_channel_batches_decided_ahead",
            "Channel batches decided while the batch before them committed (ADR-0057)",
            value=backbone.pipeline.decided_ahead,
        )
        yield CounterMetricFamily(
            "parley_channel_batches_decided_ahead_dropped",
            "Batches decided ahead, then dropped and decided again because the commit below failed (ADR-0057)",
            value=backbone.pipeline.dropped,
        )
        tailer = backbone.tailer
        yield CounterMetricFamily(
            "parley_journal_tail_reads", "Reads of the journal by the tailer (commits of other processes)", value=tailer.reads
        )
        yield CounterMetricFamily(
            "parley_journal_tail_skipped_reads",
            "Tailer polls that skipped the read: SQLite's data_version said nothing was committed (ADR-0049)",
            value=tailer.skipped,
        )
        integrity = CounterMetricFamily(
            "parley_integrity_failures",
            "Snapshots refused and artifacts not served because they did not match their hashes (ADR-0023)",
            labels=["kind"],
        )
        for kind, count in backbone.journal.integrity_failures.items():
            integrity.add_metric([kind], count)
        yield integrity


def _writer_families(writer):
    yield CounterMetricFamily("parley_journal_batches", "Journal commit batches of this process", value=writer.batches)
    yield CounterMetricFamily("parley_journal_events", "Events committed by this process", value=writer.events)
    yield CounterMetricFamily(
        "parley_journal_requests", "Write requests (appends, side writes) committed in batches", value=writer.requests
    )
    yield CounterMetricFamily(
        "parley_journal_failed_batches", "Commit batches that failed and were answered 503", value=writer.failed_batches
    )
    yield CounterMetricFamily(
        "parley_journal_stale_connection_retries",
        "Batches retried once on a fresh database connection",
        value=writer.stale_connection_retries,
    )
    yield GaugeMetricFamily(
        "parley_journal_last_batch_size", "Requests in the writer's last commit batch", value=writer.last_batch_size
    )
    yield GaugeMetricFamily(
        "parley_journal_failing_seconds",
        "How long commits have been failing (0 while the writer commits)",
        value=writer.failing_for_s or 0.0,
    )
    sizes = CounterMetricFamily(
        "parley_journal_batch_size_batches", "Committed batches by request count bucket", labels=["size"]
    )
    for label, count in writer.batch_size_histogram.items():
        sizes.add_metric([label], count)
    yield sizes


def _seatbelt_families(belt):
    windows = GaugeMetricFamily("parley_seatbelt_windows", "Sliding windows the seatbelt tracks", labels=["scope"])
    windows.add_metric(["channel"], belt.channel_windows)
    windows.add_metric(["global"], belt.global_windows)
    windows.add_metric(["create"], belt.create_windows)
    yield windows
    yield GaugeMetricFamily(
        "parley_seatbelt_dup_baselines", "Channel windows holding a previous post for the dup guard", value=belt.dup_baselines
    )
    yield GaugeMetricFamily(
        "parley_seatbelt_pending_batches",
        "Batches decided against the seatbelt whose commit is under way (ADR-0037)",
        value=belt.pending_sheets,
    )
    yield CounterMetricFamily("parley_seatbelt_sweeps", "Idle-window sweeps of the seatbelt", value=belt.sweeps)
    yield CounterMetricFamily(
        "parley_seatbelt_swept_windows", "Idle windows the sweeps forgot", value=belt.swept_entries
    )
    yield CounterMetricFamily(
        "parley_seatbelt_evicted_windows", "Windows dropped by the seatbelt's size cap", value=belt.lru_evictions
    )


def _stream_families(streams):
    yield GaugeMetricFamily(
        "parley_anonymous_streams", "Open SSE and WebSocket tails without a token", value=streams.anonymous_open
    )
    yield GaugeMetricFamily("parley_stream_capacity", "Live tails this process admits at once", value=streams.capacity)
    yield CounterMetricFamily("parley_streams_opened", "Live tails opened since start", value=streams.opened)
    yield CounterMetricFamily(
        "parley_stream_refusals", "Live tails refused with 503 stream_capacity", value=streams.refusals
    )


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
