"""Server configuration from the environment and command-line flags.

The bin contract (channels.md, top) fixes the variable names, defaults and
error messages; every cap of the backbone is configurable too (D6). A bad
value raises :class:`ConfigError` whose one-line message names the variable
and never echoes a secret.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .domain import caps

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
FALSY = frozenset({"0", "false", "off", "no"})


class ConfigError(Exception):
    """A configuration value is unusable; the message is safe to print."""


@dataclass(frozen=True)
class SeedToken:
    token: str
    agent_id: str
    owner: str


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 4317
    database_url: str = "sqlite:///parley.db"  # parley.database_url.DEFAULT
    tokens: tuple[SeedToken, ...] = ()
    admin_token: str | None = None
    admin_audit: bool = True
    read_auth: bool = False
    websockets: bool = True
    # Caps (defaults equal Caucus's; domain/caps.py holds them).
    max_posts_per_minute: int = caps.MAX_POSTS_PER_MINUTE
    global_max_posts_per_minute: int | None = None
    max_channel_creates_per_minute: int = caps.MAX_CHANNEL_CREATES_PER_MINUTE
    max_messages_per_channel: int = caps.MAX_MESSAGES_PER_CHANNEL
    max_channels: int = caps.MAX_CHANNELS
    max_read_limit: int = caps.MAX_READ_LIMIT
    max_streams: int = 32
    max_body_bytes: int = 262_144
    max_artifact_bytes: int = caps.MAX_ARTIFACT_BYTES
    max_channel_artifact_bytes: int = caps.MAX_CHANNEL_ARTIFACT_BYTES
    max_total_artifact_bytes: int = caps.MAX_TOTAL_ARTIFACT_BYTES
    stream_heartbeat_s: float = 15.0
    #: An idle keep-alive connection is closed after this long.
    keep_alive_s: float = 5.0
    #: Open tails per identity (``None``: up to ``max_streams``) and the pool the
    #: anonymous tails of ``read_auth=open`` share (``None``: half of ``max_streams``).
    max_streams_per_identity: int | None = None
    max_anonymous_streams: int | None = None
    #: A tail whose client stops reading is dropped after this long (ADR-0022).
    tail_write_timeout_s: float = 10.0
    tail_send_buffer_bytes: int = 65_536
    #: Byte cap of the encoded messages kept for reads and tails (0: none kept, ADR-0041).
    read_cache_bytes: int = 67_108_864
    # Connections (ADR-0021).
    body_timeout_s: float = 30.0
    write_timeout_s: float = 30.0
    #: Open connections admitted at once (``None``: derived from the file limit).
    max_connections: int | None = None
    # Sessions.
    session_secret: str | None = None
    #: Previous secrets, still accepted to re-issue old tokens (rotation; ADR-0024).
    session_secret_previous: tuple[str, ...] = ()
    #: Where the session key lives when PARLEY_SESSION_SECRET is not set (ADR-0024).
    session_key_file: str | None = None
    max_sessions_per_identity: int = 1_000
    #: On Postgres, seatbelt windows and session slots live in the database,
    #: exact across processes (ADR-0025); off = per process (one process only).
    shared_seatbelts: bool = True
    failpoints: frozenset[str] = field(default_factory=frozenset)
    testing: bool = False
    # Runtime.
    actor_idle_s: float = 300.0
    presence_ttl_s: float = 300.0
    mailbox_size: int = 1024
    workers: int = 1
    #: Serve on an inherited listening socket (set for worker processes).
    listen_fd: int | None = None

    @property
    def is_loopback(self) -> bool:
        return self.host.lower() in LOOPBACK_HOSTS

    @property
    def admin_enabled(self) -> bool:
        return self.admin_token is not None and self.is_loopback

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def parse_tokens(raw: str | None, variable: str = "PARLEY_TOKENS") -> tuple[SeedToken, ...]:
    """Parse ``token:agent_id:owner,…``; the owner may contain further colons.

    The error names the 1-based entry position only, never its text.
    """
    if raw is None or raw.strip() == "":
        return ()
    seen: set[str] = set()
    tokens: list[SeedToken] = []
    for index, entry in enumerate(raw.split(","), start=1):
        parts = entry.split(":", 2)
        if len(parts) != 3 or any(p.strip() == "" for p in parts):
            raise ConfigError(f"{variable} entry {index} is malformed")
        token, agent_id, owner = (p.strip() for p in parts)
        if token in seen:
            raise ConfigError(f"{variable} entry {index} is malformed")
        seen.add(token)
        tokens.append(SeedToken(token, agent_id, owner))
    return tuple(tokens)


def _get(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value is not None and value != "":
            return value
    return None


def _shown(raw: str) -> str:
    return raw if len(raw) <= 20 else raw[:20] + "\u2026"


def parse_int(name: str, raw: str, *, low: int = 1, high: int | None = None) -> int:
    """The one integer validator of flags and env vars; ``name`` is the flag or variable."""
    text = raw.strip()
    # ASCII digits only: str.isdigit() and int() also accept other scripts' digits.
    digits = text[1:] if text.startswith("-") else text
    value = int(text) if digits.isascii() and digits.isdigit() else None
    if value is None or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f'invalid {name} "{_shown(raw)}": must be an integer {bound}')
    return value


def parse_port(name: str, raw: str) -> int:
    return parse_int(name, raw, low=0, high=65535)


def parse_database_url(name: str, raw: str) -> str:
    """Check ``raw`` with the one URL parser (:mod:`parley.database_url`); keep it as given."""
    from .database_url import DatabaseURLError, normalise

    try:
        normalise(raw)
    except DatabaseURLError as exc:
        raise ConfigError(f"invalid {name}: {exc}") from None
    return raw


def parse_read_auth(name: str, raw: str) -> bool:
    """``open`` / ``token`` → whether reads need a token."""
    value = raw.strip().lower()
    if value not in ("open", "token"):
        raise ConfigError(f"invalid {name}: must be 'open' or 'token'")
    return value == "token"


#: Integer settings: field -> (env var, default, lowest, highest). Flags of
#: ``parley serve`` are generated from this table (parley/cli_options.py).
INT_SETTINGS: dict[str, tuple[str, int, int, int | None]] = {
    "max_posts_per_minute": ("PARLEY_MAX_POSTS_PER_MINUTE", caps.MAX_POSTS_PER_MINUTE, 1, None),
    "max_channel_creates_per_minute": ("PARLEY_MAX_CHANNEL_CREATES_PER_MINUTE", caps.MAX_CHANNEL_CREATES_PER_MINUTE, 1, None),
    "max_messages_per_channel": ("PARLEY_MAX_MESSAGES_PER_CHANNEL", caps.MAX_MESSAGES_PER_CHANNEL, 1, None),
    "max_channels": ("PARLEY_MAX_CHANNELS", caps.MAX_CHANNELS, 1, None),
    "max_read_limit": ("PARLEY_MAX_READ_LIMIT", caps.MAX_READ_LIMIT, 1, None),
    "max_streams": ("PARLEY_MAX_STREAMS", 32, 1, None),
    "max_artifact_bytes": ("PARLEY_MAX_ARTIFACT_BYTES", caps.MAX_ARTIFACT_BYTES, 1, None),
    "max_channel_artifact_bytes": ("PARLEY_MAX_CHANNEL_ARTIFACT_BYTES", caps.MAX_CHANNEL_ARTIFACT_BYTES, 1, None),
    "max_total_artifact_bytes": ("PARLEY_MAX_TOTAL_ARTIFACT_BYTES", caps.MAX_TOTAL_ARTIFACT_BYTES, 1, None),
    "max_sessions_per_identity": ("PARLEY_MAX_SESSIONS_PER_IDENTITY", 1_000, 1, None),
    "workers": ("PARLEY_WORKERS", 1, 1, None),
}


#: Settings field -> the variables a flag for it replaces.
_FIELD_VARIABLES: dict[str, tuple[str, ...]] = {
    "host": ("PARLEY_HOST", "HOST"),
    "port": ("PARLEY_PORT", "PORT"),
    "database_url": ("PARLEY_DATABASE_URL",),
    "read_auth": ("PARLEY_READ_AUTH",),
    **{field: (spec[0],) for field, spec in INT_SETTINGS.items()},
}


def _int(env: Mapping[str, str], name: str, default: int, *, low: int = 1, high: int | None = None) -> int:
    raw = _get(env, name)
    return default if raw is None else parse_int(name, raw, low=low, high=high)


def _int_setting(env: Mapping[str, str], field: str) -> int:
    name, default, low, high = INT_SETTINGS[field]
    return _int(env, name, default, low=low, high=high)


def _optional_int(env: Mapping[str, str], name: str, *, low: int = 1) -> int | None:
    return _int(env, name, 0, low=low) if _get(env, name) is not None else None


def _port(env: Mapping[str, str]) -> int:
    for name in ("PARLEY_PORT", "PORT"):
        raw = env.get(name)
        if raw is not None and raw != "":
            return parse_port(name, raw)
    return 4317


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    return raw.strip().lower() not in FALSY


def check_database_url(url: str, name: str = "PARLEY_DATABASE_URL") -> str:
    return parse_database_url(name, url)


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``) plus flag overrides."""
    env = os.environ if env is None else env
    overridden = {k for k, v in overrides.items() if v is not None}
    shadowed = {name for field in overridden for name in _FIELD_VARIABLES.get(field, ())}
    if shadowed:  # a flag wins over its variable, so a bad variable it replaces is not an error
        env = {k: v for k, v in env.items() if k not in shadowed}
    raw_tokens_name = "PARLEY_TOKENS" if _get(env, "PARLEY_TOKENS") is not None else "CAUCUS_TOKENS"
    read_auth = parse_read_auth("PARLEY_READ_AUTH", _get(env, "PARLEY_READ_AUTH") or "open")
    failpoints = frozenset(
        p.strip() for p in (_get(env, "PARLEY_FAILPOINTS") or "").split(",") if p.strip()
    )
    testing = _flag(env, "PARLEY_TESTING", False)
    if failpoints and not testing:
        raise ConfigError("invalid PARLEY_FAILPOINTS: failpoints need PARLEY_TESTING=1")
    unknown = failpoints - {"turn-after-stream-open"}
    if unknown:
        raise ConfigError("invalid PARLEY_FAILPOINTS: unknown failpoint")
    per_minute = _int_setting(env, "max_posts_per_minute")
    global_raw = _get(env, "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE")
    settings = Settings(
        host=_get(env, "PARLEY_HOST", "HOST") or "127.0.0.1",
        port=_port(env),
        database_url=check_database_url(_get(env, "PARLEY_DATABASE_URL") or "sqlite:///parley.db"),
        tokens=parse_tokens(_get(env, raw_tokens_name), raw_tokens_name),
        admin_token=_get(env, "PARLEY_ADMIN_TOKEN", "CAUCUS_ADMIN_TOKEN"),
        admin_audit=_flag(env, "PARLEY_ADMIN_AUDIT", _flag(env, "CAUCUS_ADMIN_AUDIT", True)),
        read_auth=read_auth,
        websockets=_flag(env, "PARLEY_WEBSOCKETS", True),
        max_posts_per_minute=per_minute,
        global_max_posts_per_minute=(
            _int(env, "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE", 4 * per_minute) if global_raw else None
        ),
        max_channel_creates_per_minute=_int_setting(env, "max_channel_creates_per_minute"),
        max_messages_per_channel=_int_setting(env, "max_messages_per_channel"),
        max_channels=_int_setting(env, "max_channels"),
        max_read_limit=_int_setting(env, "max_read_limit"),
        max_streams=_int_setting(env, "max_streams"),
        max_artifact_bytes=_int_setting(env, "max_artifact_bytes"),
        max_channel_artifact_bytes=_int_setting(env, "max_channel_artifact_bytes"),
        max_total_artifact_bytes=_int_setting(env, "max_total_artifact_bytes"),
        max_streams_per_identity=_optional_int(env, "PARLEY_MAX_STREAMS_PER_IDENTITY"),
        max_anonymous_streams=_optional_int(env, "PARLEY_MAX_ANONYMOUS_STREAMS", low=0),
        tail_write_timeout_s=float(_int(env, "PARLEY_TAIL_WRITE_TIMEOUT_SECONDS", 10)),
        tail_send_buffer_bytes=_int(env, "PARLEY_TAIL_SEND_BUFFER_BYTES", 65_536, low=4096),
        read_cache_bytes=_int(env, "PARLEY_READ_CACHE_BYTES", 67_108_864, low=0),
        body_timeout_s=float(_int(env, "PARLEY_BODY_TIMEOUT_SECONDS", 30)),
        write_timeout_s=float(_int(env, "PARLEY_WRITE_TIMEOUT_SECONDS", 30)),
        max_connections=_optional_int(env, "PARLEY_MAX_CONNECTIONS"),
        session_secret=_get(env, "PARLEY_SESSION_SECRET"),
        session_secret_previous=tuple(
            p.strip() for p in (_get(env, "PARLEY_SESSION_SECRET_PREVIOUS") or "").split(",") if p.strip()
        ),
        session_key_file=_get(env, "PARLEY_SESSION_KEY_FILE"),
        max_sessions_per_identity=_int_setting(env, "max_sessions_per_identity"),
        shared_seatbelts=_flag(env, "PARLEY_SHARED_SEATBELTS", True),
        failpoints=failpoints,
        testing=testing,
        actor_idle_s=float(_int(env, "PARLEY_ACTOR_IDLE_SECONDS", 300)),
        presence_ttl_s=float(_int(env, "PARLEY_PRESENCE_TTL_SECONDS", 300)),
        workers=_int_setting(env, "workers"),
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "database_url" in overrides:
        check_database_url(overrides["database_url"], "--database-url")
    return settings.replace(**overrides)
