"""Continuation-token and session-id maths (pure; no clock or RNG unless defaulted).

Why derived tokens: the contract keeps tokens out of the journal. A token is
``HMAC-SHA256(secret, label ‖ sessionId ‖ turn)``, so the server can re-issue
the token of any committed turn (byte-identical replay) while only its sha256
digest is journaled. A presented token is checked against that digest, not
re-derived, so a new secret (rotation, ADR-0024) leaves live tokens valid; the
old secret is only needed to re-issue an already committed turn's token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from parley.domain.ulid import new_ulid

__all__ = [
    "SESSION_ID_PREFIX",
    "TOKEN_PREFIX",
    "derive_token",
    "digest_matches",
    "new_session_id",
    "token_digest",
]

#: Every continuation token starts with this, so a leaked one is recognisable.
TOKEN_PREFIX = "ct_"
#: Every session id starts with this (followed by a 26-char ULID).
SESSION_ID_PREFIX = "ses_"

# Domain-separation label: the secret may one day derive other things too.
_TOKEN_LABEL = b"parley/session-token/v1\x00"


def derive_token(secret: bytes, session_id: str, turn: int) -> str:
    """The token issued by committed turn ``turn`` of ``session_id``.

    The message is length-unambiguous (NUL separator; session ids never hold
    NUL, and the turn is a decimal integer), so no two (id, turn) pairs share
    an HMAC input. Output: ``ct_`` + 43 urlsafe base64 chars, no padding.
    """
    if isinstance(turn, bool) or not isinstance(turn, int) or turn < 0:
        raise ValueError("turn must be a non-negative integer")
    msg = _TOKEN_LABEL + session_id.encode("utf-8", "surrogatepass") + b"\x00" + str(turn).encode()
    mac = hmac.new(secret, msg, hashlib.sha256).digest()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def token_digest(token: str) -> str:
    """sha256 hex of the token's UTF-8 bytes: the only form that is journaled.

    Any presented string is digestible (``surrogatepass`` keeps a lone
    surrogate from a lenient JSON decoder from crashing the check).
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def digest_matches(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two digests; ``None`` never matches."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def new_session_id(now_ms: int | None = None, entropy: bytes | None = None) -> str:
    """``ses_`` + a ULID (26 Crockford base32 chars: 48-bit ms time, 80 random bits).

    Why a ULID rather than uuid4: ids sort by creation time, which keeps
    journal listings and logs readable, with the same 80 bits of randomness a
    guess would have to beat (the id is not a secret anyway: the continuation
    token and the owner check protect a session). ``now_ms``/``entropy`` exist
    so tests are deterministic.
    """
    return SESSION_ID_PREFIX + new_ulid(now_ms, entropy)
