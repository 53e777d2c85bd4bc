"""parley.session_keys: where the key lives, rotation, re-issuing with a previous key (ADR-0024)."""

from __future__ import annotations

import os
import stat

import pytest

from parley.config import Settings
from parley.domain.tokens import derive_token, token_digest
from parley.session_keys import SessionKeyError, SessionKeys, key_file_path, load, read_key_file, rotate


def test_reissue_finds_the_key_that_minted_the_journaled_digest():
    old = SessionKeys(b"old")
    new = SessionKeys(b"new", (b"old",))
    minted = old.mint("ses_X", 4)
    assert new.reissue("ses_X", 4, token_digest(minted)) == minted
    assert new.mint("ses_X", 5) == derive_token(b"new", "ses_X", 5)
    # unknown digest: the current key's token (it is stale anyway)
    assert new.reissue("ses_X", 4, "0" * 64) == derive_token(b"new", "ses_X", 4)
    assert SessionKeys(b"new").reissue("ses_X", 4, token_digest(minted)) != minted


@pytest.mark.parametrize(
    ("url", "expected"),
    [("sqlite:////srv/p.db", "/srv/p.db.key"), ("sqlite+pysqlite:////srv/q.db?mode=rw", "/srv/q.db.key")],
)
def test_the_default_key_file_sits_next_to_a_sqlite_file(url, expected):
    assert str(key_file_path(Settings(database_url=url))) == expected


def test_other_databases_use_the_home_directory_and_the_variable_wins(tmp_path):
    assert str(key_file_path(Settings(database_url="postgresql://h/db"))).endswith("/.parley/session.key")
    assert key_file_path(Settings(session_key_file=str(tmp_path / "k"))) == tmp_path / "k"


def test_load_creates_a_0600_file_once_and_rotation_keeps_one_previous(tmp_path):
    settings = Settings(session_key_file=str(tmp_path / "d" / "k"))
    first = load(settings)
    assert load(settings) == first
    path = tmp_path / "d" / "k"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert rotate(path) == 2
    rotated = load(settings)
    assert rotated.previous == (first.current,) and rotated.current != first.current
    rotate(path)
    assert load(settings).previous == (rotated.current,)


def test_environment_secret_wins_and_a_too_open_file_is_refused(tmp_path):
    env = Settings(session_secret="s", session_secret_previous=("p",), session_key_file=str(tmp_path / "none"))
    assert load(env) == SessionKeys(b"s", (b"p",), "env")
    path = tmp_path / "open"
    path.write_text("k\n")
    os.chmod(path, 0o640)
    with pytest.raises(SessionKeyError, match="mode 0640"):
        read_key_file(path)
