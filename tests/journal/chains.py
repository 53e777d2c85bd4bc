"""Export-format journal files built in memory, for the import tests."""

from __future__ import annotations

from collections.abc import Callable

from parley.journal.store import GENESIS_HASH, compute_hash
from parley.journal.tools.lines import encode_line


def interleaved_chain_lines(streams: int, events: int, data: Callable[[int], bytes], tick: float) -> list[bytes]:
    """``events`` rounds over ``streams`` channels, each a valid hash chain opened by
    ``channel_created``; round ``i`` stores ``data(i)`` and positions are ``tick`` s apart."""
    heads = {f"channel:s{k}": (0, GENESIS_HASH) for k in range(streams)}
    out, position = [], 0
    for i in range(events):
        for sid, (seq, prev) in heads.items():
            seq += 1
            position += 1
            type_ = "note" if seq > 1 else "channel_created"
            text = data(i)
            h = compute_hash(prev, sid, seq, type_, text)
            out.append(encode_line(position, sid, seq, type_, text, 1e9 + position * tick, prev, h))
            heads[sid] = (seq, h)
    return out
