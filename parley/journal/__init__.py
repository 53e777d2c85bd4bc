"""The journal: parley's durable, hash-chained event store.

Public surface::

    from parley.journal import Journal, NewEvent, StoredEvent, Snapshot
    from parley.journal import ConcurrencyError, JournalUnavailable
    from parley.journal import migrate          # upgrade / downgrade / current / head
    from parley.journal import JournalBackend, MemoryJournal, open_journal   # ADR-0028
    from parley.journal.effects import PutBlobs, ChargeWindows, ReleaseLease  # ADR-0026

See :mod:`parley.journal.store` for the hash chain and
:mod:`parley.journal.writer` for group commit and global ordering.
"""

from .backend import JournalBackend, open_journal
from .engine import make_engine
from .errors import ConcurrencyError, JournalError, JournalUnavailable
from .journal import Journal
from .memory import MemoryJournal
from .store import JournalStore
from .types import NewEvent, Snapshot, StoredEvent, VerifyReport

__all__ = [
    "ConcurrencyError",
    "Journal",
    "JournalBackend",
    "JournalError",
    "JournalStore",
    "JournalUnavailable",
    "MemoryJournal",
    "NewEvent",
    "Snapshot",
    "StoredEvent",
    "VerifyReport",
    "make_engine",
    "open_journal",
]
