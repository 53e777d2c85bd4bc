"""The journal: parley's durable, hash-chained event store.

Public surface::

    from parley.journal import Journal, NewEvent, StoredEvent, Snapshot
    from parley.journal import ConcurrencyError, JournalUnavailable
    from parley.journal import migrate          # upgrade / downgrade / current / head

See :mod:`parley.journal.store` for the hash chain and
:mod:`parley.journal.writer` for group commit and global ordering.
"""

from .engine import make_engine
from .errors import ConcurrencyError, JournalError, JournalUnavailable
from .journal import Journal
from .store import JournalStore
from .types import NewEvent, Snapshot, StoredEvent, VerifyReport

__all__ = [
    "ConcurrencyError",
    "Journal",
    "JournalError",
    "JournalStore",
    "JournalUnavailable",
    "NewEvent",
    "Snapshot",
    "StoredEvent",
    "VerifyReport",
    "make_engine",
]
