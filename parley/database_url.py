"""The one parser of database URLs (``--database-url`` / ``PARLEY_DATABASE_URL``).

Both the configuration (:mod:`parley.config`) and the journal's engine
(:mod:`parley.journal.engine`) call :func:`normalise`, so a URL is either
accepted everywhere or refused everywhere with the same line. Stdlib only: it
runs while the CLI parses its flags, before any database library is imported.

Accepted: ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` (and
``sqlite+pysqlite``), ``postgresql://…``, ``postgres://…`` and
``postgresql+psycopg://…``. A refusal's message never repeats a URL that can
hold a password (only SQLite URLs, which cannot, are quoted).
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT = "sqlite:///parley.db"
SQLITE_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite"})
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres", "postgresql+psycopg"})


class DatabaseURLError(ValueError):
    """The URL cannot name a parley journal; the message is one safe line (no URL)."""


def scheme(url: str) -> str:
    """The part before ``://`` (lower-cased), or ``""``."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else ""


def is_sqlite(url: str) -> bool:
    return scheme(url) in SQLITE_SCHEMES


def normalise(url: object) -> str:
    """``url`` with the driver SQLAlchemy should use; raise :class:`DatabaseURLError`."""
    if not isinstance(url, str) or not url.strip():
        raise DatabaseURLError("the database URL is empty; use sqlite:///parley.db or postgresql://HOST/DB")
    kind = scheme(url)
    rest = url.partition("://")[2]
    if kind in SQLITE_SCHEMES:
        return "sqlite://" + _sqlite_rest(url, rest)
    if kind in POSTGRES_SCHEMES:
        _check_postgres(url)
        return "postgresql+psycopg://" + rest
    shown = repr(kind) if kind else "(none)"
    raise DatabaseURLError(
        f"unsupported database URL scheme {shown}; use sqlite:///path or postgresql://HOST/DB"
    )


def _sqlite_rest(url: str, rest: str) -> str:
    location, _, query = rest.partition("?")
    host, slash, path = location.partition("/")
    if host:
        # sqlite://parley.db: the file name landed in the host part, which SQLite ignores.
        raise DatabaseURLError(
            f"{url} puts the file name where the host goes; use sqlite:///{host}{slash}{path} "
            f"(relative) or sqlite:////absolute/path"
        )
    if path == "" and not query:
        raise DatabaseURLError(
            f"{url or 'sqlite://'} names no file; use sqlite:///parley.db (relative) or sqlite:////absolute/path"
        )
    if path in ("", ":memory:") or "mode=memory" in query:
        raise DatabaseURLError("in-memory SQLite is not supported by the journal; use a file")
    return rest


def _check_postgres(url: str) -> None:
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise DatabaseURLError(
            "the Postgres URL has a port that is not a number in [0, 65535]; "
            "use postgresql://USER@HOST:5432/DB"
        ) from None


def sqlite_path(url: str) -> str | None:
    """The file a SQLite URL names (``file:`` URIs unwrapped), or None for Postgres."""
    if not is_sqlite(url):
        return None
    path = url.partition("://")[2].partition("/")[2].split("?", 1)[0]
    if path.startswith("file:"):
        path = path[len("file:"):]
    return path


def postgres_address(url: str) -> tuple[str, int, str | None, str]:
    """``(host, port, user, database)`` of a Postgres URL, for error messages (no password)."""
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or 5432, parts.username, parts.path.strip("/")
