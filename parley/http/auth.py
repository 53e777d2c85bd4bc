"""Bearer tokens on the wire: parsing, resolving, and the admin gate.

A missing, empty, unknown or revoked token all give the same 401 body, byte
for byte (no oracle). The admin secret is compared by digest in constant
time.
"""

from __future__ import annotations

import hmac
import re

from ..domain.identity import Identity
from ..domain.tokens import token_digest
from ..errors import Unauthorized

_BEARER = re.compile(r"^Bearer\s+(.+)$", re.IGNORECASE | re.DOTALL)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (trimmed), else None."""
    if header is None:
        return None
    match = _BEARER.match(header.strip())
    if match is None:
        return None
    token = match.group(1).strip()
    return token or None


def require_identity(tokens, header: str | None) -> Identity:
    identity = tokens.resolve(bearer(header))
    if identity is None:
        raise Unauthorized()
    return identity


def is_admin(settings, header: str | None) -> bool:
    """Admin surface: configured, bound to loopback, and the right secret."""
    if not settings.admin_enabled:
        return False
    token = bearer(header)
    if token is None:
        return False
    return hmac.compare_digest(token_digest(token), token_digest(settings.admin_token))
