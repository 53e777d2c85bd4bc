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
    database_url: str = "sqlite:///parley.db"
    tokens: tuple[SeedToken, ...] = ()
    admin_token: str | None = None
    admin_audit: bool = True
    read_auth: bool = False
    websockets: bool = True
    # Caps (defaults equal Caucus's).
    max_posts_per_minute: int = 30
    global_max_posts_per_minute: int | None = None
    max_channel_creates_per_minute: int = 10
    max_messages_per_channel: int = 10_000
    max_channels: int = 1_000
    max_read_limit: int = 500
    max_streams: int = 32
    max_body_bytes: int = 262_144
    max_artifact_bytes: int = 1_048_576
    max_channel_artifact_bytes: int = 16_777_216
    max_total_artifact_bytes: int = 134_217_728
    stream_heartbeat_s: float = 15.0
    #: An idle keep-alive connection is closed after this long.
    keep_alive_s: float = 5.0
    # Sessions.
    session_secret: str | None = None
    #: Previous secrets, still accepted to re-issue old tokens (rotation; ADR-0024).
    session_secret_previous: tuple[str, ...] = ()
    #: Where the session key lives when PARLEY_SESSION_SECRET is not set (ADR-0024).
    session_key_file: str | None = None
    max_sessions_per_identity: int = 1_000
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


def _int(env: Mapping[str, str], name: str, default: int, *, low: int = 1, high: int | None = None) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"invalid {name}: must be an integer {bound}")
    return value


def _port(env: Mapping[str, str]) -> int:
    for name in ("PARLEY_PORT", "PORT"):
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        text = raw.strip()
        # ASCII digits only: str.isdigit() and int() also accept other scripts' digits.
        if not (text.isascii() and text.isdigit()) or int(text) > 65535:
            shown = raw if len(raw) <= 20 else raw[:20] + "…"
            raise ConfigError(f'invalid {name} "{shown}": must be an integer in [0, 65535]')
        return int(text)
    return 4317


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    return raw.strip().lower() not in FALSY


def check_database_url(url: str) -> str:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    allowed = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")
    if scheme not in allowed:
        shown = scheme or "(none)"
        raise ConfigError(
            f"invalid PARLEY_DATABASE_URL: unsupported scheme {shown!r} "
            "(use sqlite:///path or postgresql://...)"
        )
    return url


def from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from ``env`` (default ``os.environ``) plus flag overrides."""
    env = os.environ if env is None else env
    raw_tokens_name = "PARLEY_TOKENS" if _get(env, "PARLEY_TOKENS") is not None else "CAUCUS_TOKENS"
    read_auth_raw = (_get(env, "PARLEY_READ_AUTH") or "open").strip().lower()
    if read_auth_raw not in ("open", "token"):
        raise ConfigError("invalid PARLEY_READ_AUTH: must be 'open' or 'token'")
    failpoints = frozenset(
        p.strip() for p in (_get(env, "PARLEY_FAILPOINTS") or "").split(",") if p.strip()
    )
    testing = _flag(env, "PARLEY_TESTING", False)
    if failpoints and not testing:
        raise ConfigError("invalid PARLEY_FAILPOINTS: failpoints need PARLEY_TESTING=1")
    unknown = failpoints - {"turn-after-stream-open"}
    if unknown:
        raise ConfigError("invalid PARLEY_FAILPOINTS: unknown failpoint")
    per_minute = _int(env, "PARLEY_MAX_POSTS_PER_MINUTE", 30)
    global_raw = _get(env, "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE")
    settings = Settings(
        host=_get(env, "PARLEY_HOST", "HOST") or "127.0.0.1",
        port=_port(env),
        database_url=check_database_url(_get(env, "PARLEY_DATABASE_URL") or "sqlite:///parley.db"),
        tokens=parse_tokens(_get(env, raw_tokens_name), raw_tokens_name),
        admin_token=_get(env, "PARLEY_ADMIN_TOKEN", "CAUCUS_ADMIN_TOKEN"),
        admin_audit=_flag(env, "PARLEY_ADMIN_AUDIT", _flag(env, "CAUCUS_ADMIN_AUDIT", True)),
        read_auth=read_auth_raw == "token",
        websockets=_flag(env, "PARLEY_WEBSOCKETS", True),
        max_posts_per_minute=per_minute,
        global_max_posts_per_minute=(
            _int(env, "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE", 4 * per_minute) if global_raw else None
        ),
        max_channel_creates_per_minute=_int(env, "PARLEY_MAX_CHANNEL_CREATES_PER_MINUTE", 10),
        max_messages_per_channel=_int(env, "PARLEY_MAX_MESSAGES_PER_CHANNEL", 10_000),
        max_channels=_int(env, "PARLEY_MAX_CHANNELS", 1_000),
        max_read_limit=_int(env, "PARLEY_MAX_READ_LIMIT", 500),
        max_streams=_int(env, "PARLEY_MAX_STREAMS", 32),
        max_artifact_bytes=_int(env, "PARLEY_MAX_ARTIFACT_BYTES", 1_048_576),
        max_channel_artifact_bytes=_int(env, "PARLEY_MAX_CHANNEL_ARTIFACT_BYTES", 16_777_216),
        max_total_artifact_bytes=_int(env, "PARLEY_MAX_TOTAL_ARTIFACT_BYTES", 134_217_728),
        session_secret=_get(env, "PARLEY_SESSION_SECRET"),
        session_secret_previous=tuple(
            p.strip() for p in (_get(env, "PARLEY_SESSION_SECRET_PREVIOUS") or "").split(",") if p.strip()
        ),
        session_key_file=_get(env, "PARLEY_SESSION_KEY_FILE"),
        max_sessions_per_identity=_int(env, "PARLEY_MAX_SESSIONS_PER_IDENTITY", 1_000),
        failpoints=failpoints,
        testing=testing,
        actor_idle_s=float(_int(env, "PARLEY_ACTOR_IDLE_SECONDS", 300)),
        presence_ttl_s=float(_int(env, "PARLEY_PRESENCE_TTL_SECONDS", 300)),
        workers=_int(env, "PARLEY_WORKERS", 1),
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "database_url" in overrides:
        check_database_url(overrides["database_url"])
    return settings.replace(**overrides)
