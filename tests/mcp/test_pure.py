"""The pure pieces: env parsing (§1), sanitising (§2), argument validation (§2)."""

from __future__ import annotations

import pytest

from parley.mcp import sanitize
from parley.mcp.config import ConfigError, DisplayIdentity, from_env
from parley.mcp.tools import BY_NAME, TOOLS, validate


def test_env_aliases_trimming_and_precedence():
    cfg = from_env({"CAUCUS_URL": " http://h:1/ ", "CAUCUS_TOKEN": " t ", "CAUCUS_CHANNEL": " c "})
    assert (cfg.url, cfg.token, cfg.home) == ("http://h:1", "t", "c")
    cfg = from_env({"PARLEY_TOKEN": "p", "CAUCUS_TOKEN": "c", "PARLEY_CHANNEL": "x"})
    assert cfg.token == "p" and cfg.url == "http://127.0.0.1:4317"
    for env, message in [
        ({"PARLEY_CHANNEL": "c"}, "PARLEY_TOKEN is required"),
        ({"PARLEY_TOKEN": "t", "PARLEY_CHANNEL": "  "}, "PARLEY_CHANNEL is required"),
        ({"PARLEY_TOKEN": "t", "PARLEY_CHANNEL": "c", "PARLEY_URL": "not a url"}, "PARLEY_URL is not a valid URL"),
        ({"PARLEY_TOKEN": "t", "PARLEY_CHANNEL": "c", "PARLEY_URL": "ftp://h"}, "PARLEY_URL must use http: or https:"),
        ({"PARLEY_TOKEN": "t", "PARLEY_CHANNEL": "c", "PARLEY_URL": "http://a:b@h"},
         "PARLEY_URL must not contain credentials (userinfo)"),
    ]:
        with pytest.raises(ConfigError) as caught:
            from_env(env)
        assert str(caught.value) == message


def test_display_identity():
    assert DisplayIdentity.from_token(" bob-agent : bob ") == DisplayIdentity("bob-agent", "bob")
    assert DisplayIdentity.from_token("opaque") == DisplayIdentity("session", "(anchored server-side)")
    assert DisplayIdentity.from_token(":bob") == DisplayIdentity("session", "(anchored server-side)")


def test_sanitising_drops_controls_per_field():
    message = {"body": "a\tb\nc\x1b\x7f\x85d", "owner": "o\tw\x9f", "to": ["x\ny"], "target": "t\n", "thread": "\x1b"}
    clean = sanitize.message(message)
    assert clean == {"body": "a\tb\ncd", "owner": "ow", "to": ["xy"], "target": "t", "thread": "\x1b"}
    assert sanitize.descriptor({"purpose": "p\t\x00", "created_by": "c\t"}) == {"purpose": "p\t", "created_by": "c"}


def test_validation_texts():
    post = BY_NAME["parley_post"]
    assert validate(post, {"type": "note", "body": "x", "extra": 1}) is None
    assert validate(post, {"type": 3, "body": "x"}) == "Invalid arguments: `type` must be a string."
    assert validate(BY_NAME["parley_read_channel"], {"since": -1, "limit": 0}) == (
        "Invalid arguments: `since`: must be at least 0; `limit`: must be at least 1."
    )
    start = BY_NAME["parley_session_start"]
    assert validate(start, {"from": "start", "channels": ["a"]}) is None and validate(start, {"from": 4}) is None
    assert validate(start, {"from": "middle"}) == 'Invalid arguments: `from` must be "head", "start" or a number.'
    assert validate(start, {"channels": ["a", ""]}) == "Invalid arguments: `channels`: every item must be a string (non-empty)."
    assert [t.name for t in TOOLS][-4:] == ["parley_wait", "parley_session_start", "parley_session_continue", "parley_session_close"]
