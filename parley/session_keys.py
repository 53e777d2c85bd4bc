"""The HMAC keys of continuation tokens, kept out of the database (ADR-0024).

Whoever holds the key and an owner's bearer token can compute that session's
current continuation token, so the key must not sit next to the data: a
database dump, a read replica or a stolen backup must not be enough.

Where the key comes from, first match wins:

1. ``PARLEY_SESSION_SECRET`` (and ``PARLEY_SESSION_SECRET_PREVIOUS``, comma
   separated, for rotation);
2. the key file ``PARLEY_SESSION_KEY_FILE``, by default ``<sqlite file>.key``
   next to a SQLite database, else ``~/.parley/session.key``. It is created
   (mode 0600, its directory 0700 when created) on first start; a file that
   group or others may read or write is refused.

Key file format: one key per line, the first is current (new tokens), the
others are previous keys; ``#`` lines are comments. Only the journaled digest
of a token is compared when a client presents it, so rotating never
invalidates a live token; a previous key is needed to re-issue, byte for
byte, a response minted before the rotation (idempotent replays).
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from .atomic_file import atomic_write
from .config import Settings
from .domain.tokens import derive_token, digest_matches, token_digest

#: How many previous keys a rotation keeps.
KEEP_PREVIOUS = 1
LEGACY_META_KEY = "session_secret"
_HEADER = (
    "# parley session keys (ADR-0024): first line current, the others previous.\n"
    "# Keep this file mode 0600 and out of database backups.\n"
)


class SessionKeyError(Exception):
    """The keys cannot be used; the message is one safe line (never a key)."""


@dataclass(frozen=True)
class SessionKeys:
    current: bytes
    previous: tuple[bytes, ...] = ()
    #: "env" or the key file's path (for messages; never a key).
    source: str = "env"

    def mint(self, session_id: str, turn: int) -> str:
        """The token a new turn issues: always the current key."""
        return derive_token(self.current, session_id, turn)

    def reissue(self, session_id: str, turn: int, digest: str | None) -> str:
        """The token of an already committed turn whose journaled digest is ``digest``.

        Tries the current key, then the previous ones, so a replay after a
        rotation answers the very token first issued. Unknown digest (or none
        matches): the current key's token.
        """
        token = derive_token(self.current, session_id, turn)
        if digest is None or digest_matches(token_digest(token), digest):
            return token
        for key in self.previous:
            old = derive_token(key, session_id, turn)
            if digest_matches(token_digest(old), digest):
                return old
        return token

    def with_previous(self, key: bytes) -> SessionKeys:
        if key == self.current or key in self.previous:
            return self
        return SessionKeys(self.current, (*self.previous, key), self.source)


def key_file_path(settings: Settings) -> Path:
    if settings.session_key_file:
        return Path(settings.session_key_file).expanduser()
    from .journal.admin import sqlite_database

    database = sqlite_database(settings.database_url)
    if database not in (None, "", ":memory:"):
        return Path(f"{database}.key")
    return Path("~/.parley/session.key").expanduser()


def _check_mode(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise SessionKeyError(f"session key file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise SessionKeyError(
            f"session key file {path} is accessible to group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {path}`"
        )


def read_key_file(path: Path) -> list[str]:
    """The keys in ``path`` (current first); FileNotFoundError if absent."""
    fd = os.open(path, os.O_RDONLY)  # a symlink is followed; the mode checked is its target's
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        _check_mode(path, os.fstat(f.fileno()))
        keys = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise SessionKeyError(f"session key file {path} holds no key; delete it to have a new one made")
    return keys


def write_key_file(path: Path, keys: list[str], *, exclusive: bool = False) -> None:
    """Write ``keys`` with mode 0600: atomically (replace), or only if absent (``exclusive``)."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = _HEADER + "".join(f"{k}\n" for k in keys)
    # exclusive: FileExistsError if another process was first
    atomic_write(path, text.encode("utf-8"), mode=0o600, exclusive=exclusive)


def new_key() -> str:
    return secrets.token_urlsafe(32)


def load(settings: Settings, *, create: bool = True) -> SessionKeys:
    """The keys the server signs with; creates the key file on first start."""
    if settings.session_secret:
        previous = tuple(p.encode("utf-8") for p in settings.session_secret_previous)
        return SessionKeys(settings.session_secret.encode("utf-8"), previous, "env")
    path = key_file_path(settings)
    try:
        try:
            keys = read_key_file(path)
        except FileNotFoundError:
            if not create:
                raise SessionKeyError(f"session key file {path} does not exist; start the server once to create it") from None
            try:
                write_key_file(path, [new_key()], exclusive=True)
            except FileExistsError:
                pass  # another worker made it first: use theirs
            keys = read_key_file(path)
    except SessionKeyError:
        raise
    except OSError as exc:
        raise SessionKeyError(
            f"cannot use the session key file {path}: {exc.strerror or type(exc).__name__} "
            "(set PARLEY_SESSION_KEY_FILE or PARLEY_SESSION_SECRET)"
        ) from None
    return SessionKeys(keys[0].encode("utf-8"), tuple(k.encode("utf-8") for k in keys[1:]), str(path))


def adopt_legacy_secret(path: Path, legacy: str) -> None:
    """Keep a secret that used to live in the database as a previous key of ``path``."""
    keys = read_key_file(path)
    if legacy not in keys:
        write_key_file(path, [*keys, legacy])


def rotate(path: Path) -> int:
    """A new current key; the old current becomes previous. Returns the keys now kept."""
    try:
        keys = read_key_file(path)
    except FileNotFoundError:
        keys = []
    kept = [new_key(), *keys[:KEEP_PREVIOUS]]  # the old current stays, for replays
    write_key_file(path, kept)
    return len(kept)
