"""Property tests of the channel fold: any command sequence keeps the invariants,
and replaying the journaled events rebuilds exactly the live state."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from parley.domain import channel as rules
from parley.domain.claims import is_live
from parley.domain.identity import Identity
from parley.domain.message import stamp as make_stamp
from parley.domain.seatbelt import Seatbelt
from parley.errors import ParleyError
from tests.support.messages import ulid

PEOPLE = [Identity("a1", "alice"), Identity("a2", "alice"), Identity("b1", "bob"), Identity("c1", "carol")]


command = st.tuples(
    st.sampled_from(["append", "claim", "heartbeat", "reassign", "done", "tick"]),
    st.integers(0, len(PEOPLE) - 1),
    st.sampled_from(["t1", " t1", "t2", "t\u0301"]),  # whitespace and NFC variants collide
    st.sampled_from([None, 1, 5]),
    st.integers(0, 30),  # msg_id choice: reuse exercises D2
    st.integers(0, 7000),  # clock step in ms
)


@settings(max_examples=150, deadline=None)
@given(st.lists(command, max_size=40))
def test_any_sequence_keeps_invariants_and_replays_to_the_same_state(commands):
    state = rules.ChannelState("prop")
    created = ("channel_created", {"descriptor": {"channel": "prop", "kind": "ephemeral", "created_by": "alice"}})
    rules.apply(state, *created)
    journal = [created]
    seatbelt = Seatbelt(max_posts_per_minute=1000, global_max_posts_per_minute=1000)
    limits = rules.Limits(max_messages_per_channel=25)
    now = 1_780_000_000_000
    counter = [0]

    def stamp() -> str:
        counter[0] += 1
        return make_stamp(now, counter[0])

    for op, who, target, ttl, mid, step in commands:
        now += step
        identity = PEOPLE[who]
        if op == "tick":
            continue
        body = {"type": "note" if op == "append" else "claim", "body": f"{op}{mid}", "msg_id": ulid(mid)}
        if op != "append":
            body["target"] = target
            if ttl is not None and op in ("claim", "heartbeat", "reassign"):
                body["lease_ttl"] = ttl
            if op == "heartbeat":
                body["heartbeat"] = True
        try:
            if op == "append":
                decision = rules.decide_append(
                    state, body, identity, now_ms=now, stamp=stamp, seatbelt=seatbelt, limits=limits
                )
            else:
                kind = "claim" if op == "heartbeat" else op
                assignee = {"agent_id": "z9", "owner": "zed"} if kind == "reassign" else None
                decision = rules.decide_claim(
                    state, kind, body, identity, now_ms=now, stamp=stamp, seatbelt=seatbelt,
                    limits=limits, assignee=assignee,
                )
        except ParleyError:
            continue
        for event in decision.events:
            rules.apply(state, *event)
            journal.append(event)
        decision.response(state)

        # Invariants after every command.
        assert state.head == len(state.messages) <= limits.max_messages_per_channel
        stamps = [m["ts"] for m in state.messages]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        msg_ids = [m["msg_id"] for m in state.messages]
        assert len(set(msg_ids)) == len(msg_ids), "D2: a msg_id is stored once"
        live_keys = [k for k, e in state.ledger.items() if is_live(e, now)]
        assert len(live_keys) == len(set(live_keys))
        for message in state.messages:
            assert (message["agent_id"], message["owner"]) in {(p.agent_id, p.owner) for p in PEOPLE}

    replayed = rules.ChannelState("prop")
    for event in journal:
        rules.apply(replayed, *event)
    assert rules.to_snapshot(replayed) == rules.to_snapshot(state)
    assert rules.to_snapshot(rules.from_snapshot(rules.to_snapshot(state))) == rules.to_snapshot(state)
