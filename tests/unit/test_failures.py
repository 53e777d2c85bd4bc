"""The one error mapper (parley/actors/failures.py) and the one error-frame shape (ADR-0034).

Plain calls, no server: every journal exception is either translated by
the map or deliberately left to its caller; a translated error carries no
chained traceback; unexpected exceptions become ``internal_error`` and are
logged, never sent; stream error frames are the envelope's inner object.
"""

from __future__ import annotations

import logging

import orjson
import pytest

import parley.journal.errors as journal_errors
from parley.actors.failures import (
    JOURNAL_ERRORS,
    JOURNAL_UNAVAILABLE,
    map_journal_errors,
    translated,
    wire_error,
)
from parley.errors import (
    InternalError,
    InvalidMessage,
    Refused,
    Retryable,
    ServiceUnavailable,
    TurnInFlight,
    Unavailable,
)
from parley.http.error_frames import NO_ID, error_body, sse_error_event, ws_error_frame
from parley.http.sessions import sse_event

#: Journal exceptions a caller handles itself (reload and decide again), so the map leaves them alone.
#: (``WindowFull``, the shared seatbelt's lost race, is not a JournalError: the channel actor handles it.)
DECIDED_AGAIN = {journal_errors.ConcurrencyError}


def test_every_journal_error_is_mapped_or_left_to_its_caller_on_purpose():
    leaves = {
        cls for cls in vars(journal_errors).values()
        if isinstance(cls, type) and issubclass(cls, journal_errors.JournalError) and cls is not journal_errors.JournalError
    }
    mapped = {kind for kind, _ in JOURNAL_ERRORS}
    assert leaves == mapped | DECIDED_AGAIN, "a new journal exception needs a place in JOURNAL_ERRORS or DECIDED_AGAIN"
    conflict = journal_errors.ConcurrencyError("channel:x", 1, 2)
    assert translated(conflict) is None
    with pytest.raises(journal_errors.ConcurrencyError), map_journal_errors():
        raise conflict


def test_a_journal_outage_is_a_retryable_503_with_its_one_message():
    error = wire_error(journal_errors.JournalUnavailable("database is locked"))
    assert isinstance(error, Unavailable) and isinstance(error, ServiceUnavailable) and isinstance(error, Retryable)
    assert (error.status, error.code, error.message, error.retry_after_header()) == (
        503, "unavailable", JOURNAL_UNAVAILABLE, "1"
    )
    assert "locked" not in orjson.dumps(error.envelope()).decode()  # the journal's text stays in the logs


def test_an_integrity_failure_is_a_500_that_names_the_operator_tool():
    error = wire_error(journal_errors.IntegrityFailure("artifact abc of c does not match its sha256"))
    assert isinstance(error, InternalError) and not isinstance(error, (Refused, Retryable))
    assert "parley journal verify" in error.message


def test_the_context_manager_re_raises_translated_without_the_journal_traceback():
    with pytest.raises(Unavailable) as caught, map_journal_errors():
        raise journal_errors.JournalUnavailable("connection refused")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    refusal = TurnInFlight()
    with pytest.raises(TurnInFlight) as again, map_journal_errors():
        raise refusal
    assert again.value is refusal


def test_wire_error_logs_what_it_hides_and_nothing_it_sends(caplog):
    log = logging.getLogger("parley.test.failures")
    with caplog.at_level(logging.WARNING, logger=log.name):
        refusal = TurnInFlight()
        assert wire_error(refusal, log=log) is refusal
        assert caplog.records == []
        assert isinstance(wire_error(journal_errors.JournalUnavailable("down"), log=log, during="append"), Unavailable)
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.WARNING, "append failed: down")]
        caplog.clear()
        bug = wire_error(ZeroDivisionError("boom"), log=log, during="GET /x")
        assert type(bug) is InternalError and bug.message == InternalError.default_message
        (record,) = caplog.records
        assert record.levelno == logging.ERROR and record.exc_info is not None


# -- error frames -----------------------------------------------------------------------


def test_a_websocket_error_frame_is_the_envelope_inner_object_after_type_and_id():
    error = InvalidMessage(["body must be a non-empty string"])
    frame = ws_error_frame(error, 7)
    assert list(frame) == ["type", "id", "code", "message", "issues"]
    assert frame == {"type": "error", "id": 7, **error.envelope()["error"]}
    assert ws_error_frame(error, None)["id"] is None  # an unreadable frame id is still an id
    assert "id" not in ws_error_frame(TurnInFlight())  # /v1/ws frames carry none
    assert ws_error_frame(TurnInFlight(), NO_ID) == {
        "type": "error", "code": "turn_in_flight", "message": "a turn is already in flight for this session"
    }


def test_an_sse_error_event_carries_the_same_object():
    error = Unavailable("server is shutting down", retry_after=1)
    kind, data = sse_error_event(error)
    assert (kind, data) == ("error", error_body(error))
    assert sse_event(kind, data) == (
        b'event: error\ndata: {"code":"unavailable","message":"server is shutting down"}\n\n'
    )

