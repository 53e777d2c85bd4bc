"""The hash chain's two primitives: how event data is encoded, and how it is hashed.

``hash = sha256_hex(prev_hash + "\\n" + stream_id + "\\n" + str(seq) + "\\n" + type
+ "\\n" + data_text)`` over the stored JSON text exactly as written (ADR-0002;
:mod:`parley.journal.store` tells the whole story). Pure functions: every
backend, the verifier and the import tool share them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

GENESIS_HASH = ""


def compute_hash(prev_hash: str, stream_id: str, seq: int, type_: str, data: bytes | str) -> str:
    """The chain hash of one event (see module docstring)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = hashlib.sha256(
        f"{prev_hash}\n{stream_id}\n{seq}\n{type_}\n".encode("utf-8")
    )
    h.update(data)
    return h.hexdigest()


def encode_data(data: Any) -> bytes:
    """Encode event data once (orjson, insertion order preserved)."""
    if not isinstance(data, dict):
        raise TypeError(f"event data must be a dict, not {type(data).__name__}")
    return orjson.dumps(data)
