"""Schemathesis against ``GET /openapi.json`` over a live server.

A real ``parley serve`` subprocess (SQLite file, seed tokens, seatbelts raised
so rate limits do not hide the routes) is fuzzed from the document it serves:
every documented operation gets schema-valid (positive) and schema-invalid
(negative) requests over a real socket, and every answer must

* not be a 5xx (``not_a_server_error``),
* use a status the operation documents (``status_code_conformance``),
* use a content type documented for that status (``content_type_conformance``),
* match the documented schema for that status — JSON bodies, and each event
  of a Server-Sent Events body (``response_schema_conformance``),
* carry documented headers in their documented shape (``response_headers_conformance``).

Positive cases are also aimed at a seeded channel, artifact and session (so
success bodies get checked, not only 404s; the artifact PUT also with the
seeded blob itself) and, where an operation takes an ``Accept`` header, at its
``text/event-stream`` form. An event stream is read until it has been silent
for ``STREAM_SILENCE`` seconds (the channel tail never ends by itself).

The two WebSocket routes are fuzzed as what a plain HTTP client gets from
them (their documented refusals). Requests reuse one keep-alive connection per
operation and mode, like a real client; a request left unanswered for
``REQUEST_TIMEOUT`` seconds is a failure too, reported with the request sent
just before it on the same connection.

Failures are collected per (operation, check, status) instead of raised inside
Hypothesis, so one run reports every distinct problem with a curl command that
reproduces it, and no shrinking runs against the (stateful) live server. The
summary (operations, examples, failures, answers per operation) is printed:
see it with ``-s`` or ``-rP``.

Bounded: derandomized with a fixed seed, no deadline, no example database, a
few examples per operation and mode. A valid session-turn ``wait`` is sent as
``0``: a turn subscribed to a quiet channel would otherwise hold the request
for up to 60 s (invalid values are sent as generated: they must be refused).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.errors import FailureGroup

from tests.support.process import ADMIN, serve, sqlite_url

pytestmark = pytest.mark.reliability

TOKEN = "tok-a"
#: Examples per operation, per generation mode.
POSITIVE_EXAMPLES = 20
NEGATIVE_EXAMPLES = 10
SEED = 20240611
#: Seconds before an unanswered request counts as a failure (a hang, not a slow answer).
REQUEST_TIMEOUT = 10
#: An event stream is read until it has been silent this long.
STREAM_SILENCE = 1
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
#: Raised seatbelts: the fuzzer posts far faster than an agent may.
ENV = {
    "PARLEY_MAX_POSTS_PER_MINUTE": "1000000",
    "PARLEY_MAX_CHANNEL_CREATES_PER_MINUTE": "1000000",
}


@dataclass
class Tally:
    operations: int = 0
    examples: int = 0
    #: (operation, "status media-type") -> count
    answers: Counter = field(default_factory=Counter)
    #: (operation, check title, status) -> first report
    failures: dict[tuple[str, str, int], str] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    #: operation -> seconds spent on it
    seconds: Counter = field(default_factory=Counter)

    def fail(self, key: tuple[str, str, int], report: str) -> None:
        self.failures.setdefault(key, report)
        self.hits[key] += 1

    def summary(self) -> str:
        by_op: dict[str, list[str]] = {}
        for (op, answer), n in sorted(self.answers.items()):
            by_op.setdefault(op, []).append(f"{answer} x{n}")
        return "\n".join(f"  {op} ({self.seconds[op]:.1f}s): {', '.join(a)}" for op, a in by_op.items())


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A ``parley serve`` subprocess with one channel, one artifact and one session."""
    tmp = tmp_path_factory.mktemp("openapi-fuzz")
    with serve(sqlite_url(tmp), tmp, **ENV) as server:
        blob = b"fuzz artifact"
        sha = hashlib.sha256(blob).hexdigest()
        with server.client(TOKEN) as c:
            assert c.post("/channels", json={"channel": "fuzz", "purpose": "schemathesis"}).status_code == 201
            assert c.put(f"/channels/fuzz/artifacts/{sha}", content=blob).status_code == 201
            started = c.post("/v1/session", json={"actions": [{"subscribe": {"channel": "fuzz", "from": "start"}}]})
            assert started.status_code == 200, started.text
        server.known = {"channel": "fuzz", "sha256": sha, "id": started.json()["sessionId"], "blob": blob,
                        "asset": "app.js"}
        try:
            yield server
        finally:
            server.close()
            # Expected noise: access and audit logs, and the tracebacks of 500s the test reports anyway.
            noise = ('{"event":"request"', '{"kind":"caucus.admin.audit"', "unhandled error", "internal error on",
                     "Traceback", " ", "werkzeug.")
            unusual = [
                line
                for line in server.stderr().splitlines()
                if line and not line.startswith(noise) and "[parley.access]" not in line
            ]
            if unusual:
                print("server stderr (unusual lines):\n" + "\n".join(unusual[-40:]))


def _headers(operation) -> dict[str, str]:
    security = operation.definition.raw.get("security") or []
    token = ADMIN if any("admin" in requirement for requirement in security) else TOKEN
    return {"Authorization": f"Bearer {token}"}


def _cap_wait(case) -> None:
    """Send a valid turn ``wait`` as 0 (invalid ones are left alone: they must be refused)."""
    body = case.body
    if isinstance(body, dict):
        wait = body.get("wait")
        if isinstance(wait, int) and not isinstance(wait, bool) and 0 < wait <= 60:
            body["wait"] = 0


def _strategy(operation, mode, known: dict):
    """Generated cases, plus (positive mode) cases aimed at the seeded channel/artifact/session
    and, where the operation takes an ``Accept`` header, cases asking for its SSE form."""
    generated = operation.as_strategy(generation_mode=mode)
    if mode.is_negative:
        return generated
    params = operation.definition.raw.get("parameters", [])
    fixed = {p["name"]: known[p["name"]] for p in params if p.get("in") == "path"}
    variants = [generated]
    if fixed:
        variants.append(operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    if operation.method.upper() == "PUT" and "sha256" in fixed:
        # The blob that matches the seeded digest: a 200 (already stored) to check.
        variants.append(operation.as_strategy(generation_mode=mode, path_parameters=fixed, body=known["blob"]))
    if any(p.get("in") == "header" and p["name"].lower() == "accept" for p in params):
        sse = {"Accept": "text/event-stream"}
        variants.append(operation.as_strategy(generation_mode=mode, path_parameters=fixed or None, headers=sse))
    return st.one_of(*variants)


def _describe(case, outcome, seconds: float, headers) -> str:
    return f"{outcome} after {seconds:.3f}s: {case.as_curl_command(headers)}"


def _fuzz(live, operation, mode, examples: int, tally: Tally) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    headers = _headers(operation)
    session = requests.Session()
    # Schemathesis lets a session's headers win over generated ones: drop requests'
    # defaults so a generated `Accept` is really sent.
    session.headers.clear()
    responses = operation.definition.raw["responses"].values()
    streams = any(media.startswith("text/event-stream") for r in responses for media in r.get("content", {}))
    timeout = (REQUEST_TIMEOUT, STREAM_SILENCE) if streams else REQUEST_TIMEOUT
    previous: list = [None]  # (case, outcome, seconds) of the last request on this connection

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @given(case=_strategy(operation, mode, live.known))
    def run(case):
        _cap_wait(case)
        tally.examples += 1
        t0 = time.monotonic()
        try:
            response = case.call(base_url=live.url, session=session, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            before = "none" if previous[0] is None else _describe(*previous[0], headers)
            tally.fail(
                (label, f"transport error {type(exc).__name__}", 0),
                f"[{mode.value}] {exc} after {time.monotonic() - t0:.1f}s\n{case.as_curl_command(headers)}\n"
                f"previous request on this connection: {before}",
            )
            previous[0] = (case, type(exc).__name__, time.monotonic() - t0)
            return
        previous[0] = (case, response.status_code, time.monotonic() - t0)
        media = (response.headers.get("content-type") or ["-"])[0].split(";")[0]
        tally.answers[(label, f"{response.status_code} {media}")] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs={"base_url": live.url})
        except FailureGroup as group:
            for failure in group.exceptions:
                tally.fail((label, failure.title, response.status_code), f"[{mode.value}] {group.message}")

    started = time.monotonic()
    with session:
        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # Nothing to negate (no parameters, no body): no negative case exists.
            assert mode.is_negative, label
        finally:
            tally.seconds[label] += time.monotonic() - started


def test_openapi_document_holds_under_fuzzing(live):
    t0 = time.monotonic()
    schema = schemathesis.openapi.from_url(
        f"{live.url}/openapi.json", config=schemathesis.Config(seed=SEED), timeout=10
    )
    tally = Tally()
    for result in schema.get_all_operations():
        operation = result.ok()  # an operation the loader cannot use raises here
        tally.operations += 1
        _fuzz(live, operation, schemathesis.GenerationMode.POSITIVE, POSITIVE_EXAMPLES, tally)
        _fuzz(live, operation, schemathesis.GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, tally)
    elapsed = time.monotonic() - t0

    assert live.proc.poll() is None, "the server died under fuzzing"
    print(
        f"\nschemathesis {schemathesis.__version__}: {tally.operations} operations, {tally.examples} examples, "
        f"{len(tally.failures)} distinct failures ({sum(tally.hits.values())} failing examples) in {elapsed:.1f}s\n"
        f"{tally.summary()}"
    )
    assert tally.operations >= 25, f"only {tally.operations} operations loaded"
    details = "\n\n".join(
        f"== {op} — {title} — HTTP {status} (x{tally.hits[(op, title, status)]})\n{report}"
        for (op, title, status), report in sorted(tally.failures.items())
    )
    assert not tally.failures, f"{len(tally.failures)} distinct failures:\n\n{details}"
