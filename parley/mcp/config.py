"""``parley mcp``'s environment (contracts/mcp.md §1): URL, bearer, home channel.

``PARLEY_*`` wins over the ``CAUCUS_*`` alias. Every message is value-free:
neither the token nor the URL is ever interpolated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_URL = "http://127.0.0.1:4317"


class ConfigError(Exception):
    """A start-up configuration problem (its message is printed as is)."""


@dataclass(frozen=True)
class DisplayIdentity:
    """What ``parley_status`` shows and writes carry as placeholders (the backbone anchors the real one)."""

    agent_id: str
    owner: str

    @classmethod
    def from_token(cls, token: str) -> DisplayIdentity:
        agent_id, colon, owner = token.partition(":")
        if colon and agent_id.strip() and owner.strip():
            return cls(agent_id.strip(), owner.strip())
        return cls("session", "(anchored server-side)")


@dataclass(frozen=True)
class McpConfig:
    url: str
    token: str
    home: str

    @property
    def identity(self) -> DisplayIdentity:
        return DisplayIdentity.from_token(self.token)


def _get(env: Mapping[str, str], name: str) -> str | None:
    for key in (f"PARLEY_{name}", f"CAUCUS_{name}"):
        value = env.get(key)
        if value is not None and value.strip():
            return value.strip()
    return None


def check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigError("PARLEY_URL is not a valid URL") from None
    if not parts.scheme or not parts.netloc:
        raise ConfigError("PARLEY_URL is not a valid URL")
    if parts.scheme not in ("http", "https"):
        raise ConfigError("PARLEY_URL must use http: or https:")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ConfigError("PARLEY_URL must not contain credentials (userinfo)")
    return url.rstrip("/")


def from_env(env: Mapping[str, str] | None = None) -> McpConfig:
    env = os.environ if env is None else env
    url = check_url(_get(env, "URL") or DEFAULT_URL)
    token = _get(env, "TOKEN")
    if token is None:
        raise ConfigError("PARLEY_TOKEN is required")
    home = _get(env, "CHANNEL")
    if home is None:
        raise ConfigError("PARLEY_CHANNEL is required")
    return McpConfig(url, token, home)


def state_dir(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get("PARLEY_STATE_DIR") or os.path.join(os.path.expanduser("~"), ".parley")
