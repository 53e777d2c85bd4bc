"""Token derivation, digests and session ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.domain.tokens import derive_token, digest_matches, new_session_id, token_digest

SECRET = b"s" * 32


def test_derive_token_shape_and_value() -> None:
    token = derive_token(SECRET, "ses_A", 1)
    assert re.fullmatch(r"ct_[A-Za-z0-9_-]{43}", token)
    mac = base64.urlsafe_b64decode(token[3:] + "=")
    expected = hmac.new(SECRET, b"parley/session-token/v1\x00ses_A\x001", hashlib.sha256).digest()
    assert mac == expected


@given(st.binary(min_size=1, max_size=64), st.text(max_size=40), st.integers(0, 10**9))
def test_derive_token_is_deterministic(secret: bytes, sid: str, turn: int) -> None:
    assert derive_token(secret, sid, turn) == derive_token(secret, sid, turn)


@given(st.text(max_size=40), st.integers(0, 10**6), st.integers(0, 10**6))
def test_tokens_for_different_turns_differ(sid: str, a: int, b: int) -> None:
    if a != b:
        assert derive_token(SECRET, sid, a) != derive_token(SECRET, sid, b)


def test_tokens_differ_by_session_and_secret() -> None:
    assert derive_token(SECRET, "ses_A", 1) != derive_token(SECRET, "ses_B", 1)
    assert derive_token(SECRET, "ses_A", 1) != derive_token(b"other", "ses_A", 1)
    # no ambiguity between (id "a1", turn 1) and (id "a", turn 11)
    assert derive_token(SECRET, "a1", 1) != derive_token(SECRET, "a", 11)


@pytest.mark.parametrize("turn", [-1, True, 1.0, "1"])
def test_derive_token_refuses_bad_turns(turn: object) -> None:
    with pytest.raises(ValueError):
        derive_token(SECRET, "ses_A", turn)  # type: ignore[arg-type]


def test_token_digest_is_sha256_hex() -> None:
    assert token_digest("ct_x") == hashlib.sha256(b"ct_x").hexdigest()
    assert len(token_digest("\ud800")) == 64  # lone surrogate from a lenient decoder


def test_digest_matches() -> None:
    d = token_digest("ct_x")
    assert digest_matches(d, token_digest("ct_x"))
    assert not digest_matches(d, token_digest("ct_y"))
    assert not digest_matches(None, d) and not digest_matches(d, None) and not digest_matches(None, None)
    assert not digest_matches(d, "é")  # non-ASCII never raises


def test_new_session_id_is_a_prefixed_ulid() -> None:
    sid = new_session_id()
    assert re.fullmatch(r"ses_[0-7][0-9A-HJKMNP-TV-Z]{25}", sid)
    assert new_session_id() != sid


def test_new_session_id_deterministic_parts() -> None:
    assert new_session_id(0, bytes(10)) == "ses_" + "0" * 26
    assert new_session_id((1 << 48) - 1, b"\xff" * 10) == "ses_7" + "Z" * 25
    # time-ordered
    assert new_session_id(1000, b"\xff" * 10) < new_session_id(1001, bytes(10))
    with pytest.raises(ValueError):
        new_session_id(1 << 48, bytes(10))
    with pytest.raises(ValueError):
        new_session_id(0, bytes(9))


def test_ulids_have_one_encoder_for_message_and_session_ids() -> None:
    """Session ids are ``ses_`` + the same ULID the SDK mints for msg_id (one minting rule)."""
    from parley.client import new_ulid as sdk_ulid
    from parley.domain.message import ULID_RE
    from parley.domain.tokens import new_session_id
    from parley.domain.ulid import new_ulid

    assert sdk_ulid is new_ulid
    entropy = bytes(range(10))
    assert new_session_id(1_700_000_000_000, entropy) == "ses_" + new_ulid(1_700_000_000_000, entropy)
    assert ULID_RE.fullmatch(new_ulid()) and ULID_RE.fullmatch(sdk_ulid())
    assert new_ulid(1, entropy) < new_ulid(2, entropy)  # sorts by time
