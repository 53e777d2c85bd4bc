"""ULIDs: 26 Crockford base32 characters, a 48-bit millisecond time then 80 random bits.

Why one minting rule: message ids (the SDK mints them for its callers) and
session ids (``ses_`` + a ULID) must both sort by creation time and carry the
same 80 bits of randomness; two hand-written encoders had drifted apart.
(Checking one is a message rule: :data:`parley.domain.message.ULID_RE`.)
"""

from __future__ import annotations

import os
import time
from typing import Final

__all__ = ["CROCKFORD", "new_ulid"]

CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(now_ms: int | None = None, entropy: bytes | None = None) -> str:
    """A fresh ULID (26 Crockford chars: 48-bit ms time, 80 random bits); ``now_ms``/``entropy`` (10 bytes) make it deterministic."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rnd = os.urandom(10) if entropy is None else entropy
    if not 0 <= ms < 1 << 48 or len(rnd) != 10:
        raise ValueError("ULID needs a 48-bit timestamp and 10 random bytes")
    value = (ms << 80) | int.from_bytes(rnd, "big")
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
