"""The one database-URL parser (parley/database_url.py), shared by config and engine."""

from __future__ import annotations

import pytest

from parley import config, database_url
from parley.journal.engine import normalise_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///parley.db", "sqlite:///parley.db"),
        ("sqlite+pysqlite:///parley.db", "sqlite:///parley.db"),
        ("sqlite:////abs/p.db", "sqlite:////abs/p.db"),
        ("sqlite:///file:/abs/p.db?mode=ro&uri=true", "sqlite:///file:/abs/p.db?mode=ro&uri=true"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
    ],
)
def test_config_and_engine_accept_the_same_urls(url, expected):
    assert database_url.normalise(url) == normalise_url(url) == expected
    assert config.from_env({"PARLEY_DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("sqlite://parley.db", "use sqlite:///parley.db"),
        ("sqlite://", "names no file"),
        ("sqlite:///", "names no file"),
        ("sqlite:///:memory:", "in-memory"),
        ("postgresql://u:hunter2@h:abc/db", "port that is not a number"),
        ("postgresql://u:hunter2@h:99999/db", "port that is not a number"),
        ("mysql://u:hunter2@h/db", "unsupported database URL scheme 'mysql'"),
        ("", "empty"),
    ],
)
def test_config_and_engine_refuse_the_same_urls(url, needle):
    with pytest.raises(ValueError) as by_engine:
        normalise_url(url)
    with pytest.raises(config.ConfigError) as by_config:
        config.from_env({"PARLEY_DATABASE_URL": url or " "})
    assert needle in str(by_engine.value)
    assert str(by_config.value).startswith("invalid PARLEY_DATABASE_URL: ")
    assert "hunter2" not in str(by_engine.value) + str(by_config.value)


def test_sqlite_path_unwraps_file_uris():
    assert database_url.sqlite_path("sqlite:///file:/a/b.db?mode=ro&uri=true") == "/a/b.db"
    assert database_url.sqlite_path("sqlite:///rel.db") == "rel.db"
    assert database_url.sqlite_path("postgresql://h/db") is None
