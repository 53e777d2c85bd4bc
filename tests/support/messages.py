"""Message helpers shared by the tests."""

from __future__ import annotations

import itertools

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ids = itertools.count(1)


def ulid(n: int | None = None) -> str:
    """A ULID-shaped id: the ``n``-th one (stable across calls) or the next unused one."""
    if n is None:
        n = next(_ids) + (1 << 40)
    return "01J4000000" + "".join(CROCKFORD[(n >> (5 * i)) & 31] for i in range(15, -1, -1))
