"""The connection cap's arithmetic, the tail slots' pools, and their settings."""

from __future__ import annotations

import pytest

from parley.actors.streams import StreamSlots
from parley.config import ConfigError, from_env
from parley.domain.identity import Identity
from parley.errors import StreamCapacity
from parley.http.admission import connection_cap


def test_the_connection_cap_stays_below_the_file_limit():
    assert connection_cap(None, limit=1024) == 1024 - 102 - 16
    assert connection_cap(None, limit=256) == 256 - 64 - 16
    assert connection_cap(10, limit=1024) == 10
    assert connection_cap(100_000, limit=1024) == 1024 - 102 - 16  # never above what the files allow
    assert connection_cap(None, limit=10) == 1


def test_anonymous_tails_share_a_pool_and_each_identity_has_a_cap():
    slots = StreamSlots(total=4, per_identity=2, anonymous=1)
    alice, bob = Identity("a", "o"), Identity("b", "o")
    anonymous = slots.acquire(None)
    with pytest.raises(StreamCapacity):
        slots.acquire(None)
    first, second = slots.acquire(alice), slots.acquire(alice)
    with pytest.raises(StreamCapacity):
        slots.acquire(alice)
    last = slots.acquire(bob)
    with pytest.raises(StreamCapacity):
        slots.acquire(Identity("c", "o"))  # the total is reached
    assert slots.open == 4 and slots.held_by(alice) == 2
    for slot in (anonymous, first, second, last, last):  # releasing twice is harmless
        slot.release()
    assert slots.open == 0 and slots.held_by(alice) == 0 and slots.held_by(None) == 0


def test_defaults_follow_max_streams():
    slots = StreamSlots(total=32)
    assert (slots.per_identity, slots.anonymous) == (32, 16)


def test_the_limits_are_read_from_the_environment():
    settings = from_env(
        {
            "PARLEY_MAX_CONNECTIONS": "64",
            "PARLEY_BODY_TIMEOUT_SECONDS": "5",
            "PARLEY_MAX_ANONYMOUS_STREAMS": "0",
            "PARLEY_MAX_STREAMS_PER_IDENTITY": "3",
            "PARLEY_TAIL_WRITE_TIMEOUT_SECONDS": "2",
        }
    )
    assert settings.max_connections == 64 and settings.body_timeout_s == 5.0
    assert settings.max_anonymous_streams == 0 and settings.max_streams_per_identity == 3
    assert settings.tail_write_timeout_s == 2.0
    defaults = from_env({})
    assert defaults.max_connections is None and defaults.max_anonymous_streams is None
    with pytest.raises(ConfigError, match="PARLEY_MAX_CONNECTIONS"):
        from_env({"PARLEY_MAX_CONNECTIONS": "0"})
