"""Metrics follow Prometheus conventions, and the shipped dashboard queries what exists (issue 16 item 8)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.support.process import serve, sqlite_url

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "parley.json"
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "le", "route", "code", "status",
    "generation", "kind", "without", "avg", "max", "min", "agent_id", "owner",
}


def exported_series(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def queried_metrics(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n not in PROMQL_WORDS}


def test_counters_end_in_total_and_process_metrics_are_exported(tmp_path):
    with serve(sqlite_url(tmp_path), tmp_path) as server, server.client() as client:
        client.get("/healthz")
        text = client.get("/metrics").text
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    counters = [name for name, kind in types.items() if kind == "counter"]
    assert counters and all(name.endswith("_total") for name in counters), counters
    for monotonic in ("parley_journal_batches_total", "parley_journal_events_total", "parley_channel_lost_races_total"):
        assert types.get(monotonic) == "counter", monotonic
    series = exported_series(text)
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"} <= series
    assert 'parley_actors_active{kind="session"}' in text


def test_every_dashboard_query_names_an_exported_metric(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs
    with serve(sqlite_url(tmp_path), tmp_path) as server, server.client("tok-a") as client:
        client.post("/channels", json={"channel": "d"})
        client.post("/channels/d/append", json={"type": "note", "body": "x", "msg_id": "01HZX3K4M5N6P7Q8R9S0T1V2W3"})
        # The same content again: a seatbelt rejection, so the labelled counter has a series.
        client.post("/channels/d/append", json={"type": "note", "body": "x", "msg_id": "01HZX3K4M5N6P7Q8R9S0T1V2W4"})
        # A session subscribed to the channel, so the lag gauge has a series.
        client.post("/v1/session", json={"actions": [{"subscribe": {"channel": "d", "from": "start"}}]})
        text = client.get("/metrics").text
    series = exported_series(text)
    missing = {(expr, name) for expr in exprs for name in queried_metrics(expr) if name not in series}
    assert not missing, sorted(missing)


def test_every_statistics_dataclass_is_exported(tmp_path):
    """Each ``statistics()`` of the process reaches /metrics (issue 17 item 9)."""
    with serve(sqlite_url(tmp_path), tmp_path) as server, server.client("tok-a") as client:
        client.post("/channels", json={"channel": "s"})
        client.post("/channels/s/append", json={"type": "note", "body": "x", "msg_id": "01HZX3K4M5N6P7Q8R9S0T1V2W5"})
        text = client.get("/metrics").text
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    expected = {
        # runtime (RegistryStatistics), per kind
        "parley_actor_largest_mailbox": "gauge",
        "parley_actor_batches_total": "counter",
        "parley_actor_commands_total": "counter",
        # writer (WriterStatistics)
        "parley_journal_requests_total": "counter",
        "parley_journal_failed_batches_total": "counter",
        "parley_journal_batch_size_batches_total": "counter",
        "parley_journal_failing_seconds": "gauge",
        # seatbelt (SeatbeltStatistics)
        "parley_seatbelt_windows": "gauge",
        "parley_seatbelt_pending_batches": "gauge",
        "parley_seatbelt_sweeps_total": "counter",
        # stream slots (StreamStatistics)
        "parley_stream_refusals_total": "counter",
        "parley_streams_opened_total": "counter",
    }
    assert {name: types.get(name) for name in expected} == expected
    assert 'parley_actor_commands_total{kind="channel"}' in text
    assert 'parley_seatbelt_windows{scope="channel"} 1.0' in text
    assert 'parley_actor_batches_total{kind="session"}' in text


def test_the_pipeline_and_the_tailer_are_counted(tmp_path):
    """ADR-0057's decided-ahead batches and ADR-0049's skipped tailer reads reach
    /metrics as counters; an idle SQLite server's tailer skips its reads."""

    def counter(text: str, name: str) -> float:
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        assert match, name
        return float(match.group(1))

    with serve(sqlite_url(tmp_path), tmp_path) as server, server.client("tok-a") as client:
        client.post("/channels", json={"channel": "t"})
        client.post("/channels/t/append", json={"type": "note", "body": "x", "msg_id": "01HZX3K4M5N6P7Q8R9S0T1V2W6"})
        first = client.get("/metrics").text
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", first, re.M))
        for name in (
            "parley_channel_batches_decided_ahead_total",
            "parley_channel_batches_decided_ahead_dropped_total",
            "parley_journal_tail_reads_total",
            "parley_journal_tail_skipped_reads_total",
        ):
            assert types.get(name) == "counter", name
        assert counter(first, "parley_channel_batches_decided_ahead_dropped_total") == 0
        # The tailer polls every 50 ms; with nothing committed it skips each read.
        # Scrape until two more polls have skipped (a condition, not a sleep).
        skipped = counter(first, "parley_journal_tail_skipped_reads_total")
        deadline = time.monotonic() + 10
        while True:
            text = client.get("/metrics").text
            if counter(text, "parley_journal_tail_skipped_reads_total") >= skipped + 2:
                break
            assert time.monotonic() < deadline, "an idle tailer did not skip its reads"
