"""Everything ``parley journal verify`` checks beyond one event chain (ADR-0023).

The hash chain (:mod:`parley.journal.verify`) proves each stream is internally
consistent. It cannot see what lies outside it, so this module adds:

- **snapshots**: each one's binding to the chain (``event_hash`` and
  ``digest``, migration 0003) is checked (``parley journal verify`` also folds
  each stream again and compares, in :mod:`parley.replay.audit`, which
  composes these checks: the fold needs the domain, above the journal);
- **artifacts**: every stored blob hashes to its ``sha256`` and has its size,
  and every ``artifact_stored`` event still has its bytes;
- **anchors**: a JSON file of each stream's head ``(seq, hash)`` and one
  checkpoint digest over them. Verifying against an anchor exported earlier
  finds deleted streams, deleted tails and chains rewritten consistently —
  tampering that leaves every chain valid and that nothing inside the database
  can reveal without a secret.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import schema
from .store import load_checked_snapshot
from .stream_ids import channel_of

ANCHOR_FORMAT = "parley-anchor/1"

Heads = dict[str, tuple[int, str]]


class AnchorError(Exception):
    """An anchor file cannot be used; the message is one safe line."""


def checkpoint(heads: Mapping[str, tuple[int, str]]) -> str:
    """sha256 over ``stream_id \\n seq \\n hash \\n`` of every stream, sorted by stream id.

    One value an operator can write down or publish: equal checkpoints mean
    equal heads for every stream.
    """
    h = hashlib.sha256()
    for sid in sorted(heads):
        seq, head_hash = heads[sid]
        h.update(f"{sid}\n{seq}\n{head_hash}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def make_anchor(heads: Mapping[str, tuple[int, str]], last_position: int) -> dict[str, Any]:
    return {
        "format": ANCHOR_FORMAT,
        "created_at": time.time(),
        "last_position": last_position,
        "checkpoint": checkpoint(heads),
        "streams": {sid: [seq, h] for sid, (seq, h) in sorted(heads.items())},
    }


def parse_anchor(raw: bytes) -> Heads:
    """The heads of an anchor file; AnchorError if it is not one or was edited."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AnchorError("the anchor file is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != ANCHOR_FORMAT:
        raise AnchorError(f"the anchor file is not a {ANCHOR_FORMAT} file")
    streams = doc.get("streams")
    if not isinstance(streams, dict):
        raise AnchorError("the anchor file has no streams")
    heads: Heads = {}
    for sid, entry in streams.items():
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int) and isinstance(entry[1], str)):
            raise AnchorError("the anchor file has a malformed stream entry")
        heads[sid] = (entry[0], entry[1])
    if checkpoint(heads) != doc.get("checkpoint"):
        raise AnchorError("the anchor file's checkpoint does not match its streams (the file was edited)")
    return heads


def compare_with_anchor(engine: Engine, anchored: Heads, current: Heads) -> list[str]:
    """What an earlier anchor says has gone: deleted streams, tails, rewritten history.

    A stream that grew past its anchored seq is fine as long as the event at
    that seq still has the anchored hash (chains only grow).
    """
    problems: list[str] = []
    e = schema.events
    for sid in sorted(anchored):
        seq, anchored_hash = anchored[sid]
        head = current.get(sid)
        if head is None:
            problems.append(f"stream {sid!r}: deleted (the anchor has it at seq {seq})")
            continue
        if head[0] < seq:
            problems.append(f"stream {sid!r}: truncated to seq {head[0]} (the anchor has seq {seq})")
            continue
        if head[0] == seq:
            found = head[1]
        else:
            with engine.connect() as conn:
                found = conn.execute(sa.select(e.c.hash).where(e.c.stream_id == sid, e.c.seq == seq)).scalar()
        if found != anchored_hash:
            problems.append(f"stream {sid!r}: rewritten (seq {seq} no longer has the anchored hash)")
    return problems


def check_artifacts(engine: Engine, chunk: int = 64) -> tuple[int, list[str]]:
    """``(blobs checked, problems)``: bytes vs sha256 and size; events without bytes."""
    a = schema.artifacts
    problems: list[str] = []
    checked = 0
    present: set[tuple[str, str]] = set()
    with engine.connect() as conn:
        keys = conn.execute(sa.select(a.c.channel, a.c.sha256).order_by(a.c.channel, a.c.sha256)).all()
    for k in range(0, len(keys), chunk):
        part = keys[k : k + chunk]
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(a.c.channel, a.c.sha256, a.c.size, a.c.data).where(
                    sa.tuple_(a.c.channel, a.c.sha256).in_([tuple(p) for p in part])
                )
            ).all()
        for channel, sha, size, data in rows:
            checked += 1
            present.add((channel, sha))
            data = bytes(data)
            if hashlib.sha256(data).hexdigest() != sha:
                problems.append(f"artifact {sha[:12]} of {channel}: bytes do not match the sha256")
            elif len(data) != size:
                problems.append(f"artifact {sha[:12]} of {channel}: size {len(data)} where {size} is recorded")
    e = schema.events
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(e.c.stream_id, e.c.data).where(e.c.type == "artifact_stored", schema.NOT_MESSAGE)
        ).all()
    for sid, data_text in stored:
        channel = channel_of(sid) or sid
        try:
            sha = orjson.loads(data_text)["sha256"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # a malformed event is the chain's and the fold's finding
        if (channel, sha) not in present:
            problems.append(f"artifact {str(sha)[:12]} of {channel}: recorded by an event but its bytes are gone")
    return checked, problems


def check_snapshot_bindings(engine: Engine) -> tuple[int, list[str]]:
    """``(snapshots checked, problems)``: each snapshot's digest and event hash."""
    s = schema.snapshots
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.select(s.c.stream_id).order_by(s.c.stream_id))]
        problems = []
        for sid in ids:
            _snapshot, why = load_checked_snapshot(conn, sid)
            if why is not None and not why.startswith("unbound"):
                problems.append(f"snapshot of {sid!r}: {why}")
    return len(ids), problems
