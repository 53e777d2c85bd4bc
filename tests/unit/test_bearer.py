"""Bearer-token rules (parley.domain.bearer): one fold and one set of events for server and CLI."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from parley.domain import bearer
from parley.domain.identity import Identity

digests = st.sampled_from(["d1", "d2", "d3", "d4"])
agents = st.sampled_from(["a", "b"])
ops = st.lists(
    st.one_of(
        st.tuples(st.just("mint"), digests, agents),
        st.tuples(st.just("revoke_agent"), agents),
        st.tuples(st.just("revoke_digest"), digests),
    ),
    max_size=12,
)


def test_a_new_token_is_tok_and_43_urlsafe_chars() -> None:
    token = bearer.new_bearer_token()
    assert token.startswith("tok_") and len(token) == 47 and "=" not in token
    assert token != bearer.new_bearer_token()


def test_rotation_mints_first_then_revokes_only_if_there_is_something_to_revoke() -> None:
    assert [t for t, _ in bearer.rotation("new", "a", "o", [])] == [bearer.TOKEN_MINTED]
    events = bearer.rotation("new", "a", "o", ["old"])
    assert events == [bearer.minted("new", "a", "o"), bearer.revoked(["old"])]


def test_unknown_events_are_ignored() -> None:
    active: dict[str, Identity] = {}
    assert bearer.apply(active, "token_renamed", {"digest": "x"}) is False
    assert active == {}


@given(ops)
def test_the_fold_matches_a_plain_model(steps: list[tuple]) -> None:
    active: dict[str, Identity] = {}
    model: dict[str, str] = {}
    for step in steps:
        if step[0] == "mint":
            _, digest, agent = step
            bearer.apply(active, *bearer.minted(digest, agent, "owner"))
            model[digest] = agent
            continue
        if step[0] == "revoke_agent":
            hit = bearer.targets(active, step[1], None)
            expected = sorted(d for d, a in model.items() if a == step[1])
        else:
            hit = bearer.targets(active, None, step[1])
            expected = [step[1]] if step[1] in model else []
        assert sorted(hit) == expected
        if hit:
            assert bearer.apply(active, *bearer.revoked(hit)) is True
        for digest in hit:
            del model[digest]
    assert {d: i.agent_id for d, i in active.items()} == model
