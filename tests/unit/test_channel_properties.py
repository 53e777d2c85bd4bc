"""Property tests of the channel fold: any command sequence keeps the invariants,
and replaying the journaled events rebuilds exactly the live state."""

from __future__ import annotations

import orjson

from hypothesis import given, settings
from hypothesis import strategies as st

from parley.domain import channel as rules
from parley.domain.claims import is_live
from parley.domain.identity import Identity
from parley.domain.message import stamp as make_stamp
from parley.domain.pending import PendingState
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


CREATED = ("channel_created", {"descriptor": {"channel": "prop", "kind": "ephemeral", "created_by": "alice"}})


class Driver:
    """Decides commands against a channel state the way the actor does."""

    def __init__(self, state: rules.ChannelState) -> None:
        self.state = state
        self.seatbelt = Seatbelt(max_posts_per_minute=1000, global_max_posts_per_minute=1000)
        self.limits = rules.Limits(max_messages_per_channel=25)
        self.now = 1_780_000_000_000
        self.counter = 0

    def stamp(self) -> str:
        self.counter += 1
        return make_stamp(self.now, self.counter)

    def decide(self, op, who, target, ttl, mid, step) -> rules.Decision | None:
        """The decision for one command (``None`` for a refusal or a tick)."""
        self.now += step
        identity = PEOPLE[who]
        if op == "tick":
            return None
        body = {"type": "note" if op == "append" else "claim", "body": f"{op}{mid}", "msg_id": ulid(mid)}
        if op != "append":
            body["target"] = target
            if ttl is not None and op in ("claim", "heartbeat", "reassign"):
                body["lease_ttl"] = ttl
            if op == "heartbeat":
                body["heartbeat"] = True
        common = dict(now_ms=self.now, stamp=self.stamp, seatbelt=self.seatbelt, limits=self.limits)
        try:
            if op == "append":
                return rules.decide_append(self.state, body, identity, **common)
            kind = "claim" if op == "heartbeat" else op
            assignee = {"agent_id": "z9", "owner": "zed"} if kind == "reassign" else None
            return rules.decide_claim(self.state, kind, body, identity, assignee=assignee, **common)
        except ParleyError:
            return None


@settings(max_examples=150, deadline=None)
@given(st.lists(command, max_size=40))
def test_any_sequence_keeps_invariants_and_replays_to_the_same_state(commands):
    state = rules.ChannelState("prop")
    rules.apply(state, *CREATED)
    journal = [CREATED]
    driver = Driver(state)
    for cmd in commands:
        decision = driver.decide(*cmd)
        if decision is None:
            continue
        for event in decision.events:
            rules.apply(state, *event)
            journal.append(event)
        assert decision.outcome.body is not None
        now = driver.now

        # Invariants after every command.
        assert state.head == len(state.messages) <= driver.limits.max_messages_per_channel
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


@settings(max_examples=200, deadline=None)
@given(st.lists(command, max_size=30), st.lists(command, min_size=1, max_size=12))
def test_a_batch_decided_on_a_pending_view_never_touches_the_state(committed, batch):
    # What the actor does with a batch: every decision taken against a
    # PendingState, the committed state untouched until the commit. Dropping
    # the view (a lost race, a failed commit) leaves the committed state
    # exactly, ledger order included; folding the batch's events in after the
    # commit gives the state that deciding them one by one on the state
    # itself gives, with the same outcomes.
    state = rules.ChannelState("prop")
    rules.apply(state, *CREATED)
    driver = Driver(state)
    for cmd in committed:
        decision = driver.decide(*cmd)
        for event in decision.events if decision else ():
            rules.apply(state, *event)
    before = orjson.dumps(rules.to_snapshot(state))
    twin = rules.from_snapshot(rules.to_snapshot(state))
    twin_driver = Driver(twin)
    twin_driver.now, twin_driver.counter = driver.now, driver.counter
    belt = twin_driver.seatbelt = driver.seatbelt  # one seatbelt: the twin charges at once
    view = PendingState(state)
    driver.state = view
    events, outcomes = [], []
    with belt.pending() as sheet:  # never charged, like a commit that failed
        driver.seatbelt = sheet
        for cmd in batch:
            decision = driver.decide(*cmd)
            outcomes.append(None if decision is None else decision.outcome)
            for event in decision.events if decision else ():
                rules.apply(view, *event)
                events.append(event)
    assert orjson.dumps(rules.to_snapshot(state)) == before, "deciding never writes to the state"
    one_by_one = []
    for cmd in batch:
        decision = twin_driver.decide(*cmd)
        one_by_one.append(None if decision is None else decision.outcome)
        for event in decision.events if decision else ():
            rules.apply(twin, *event)
    assert outcomes == one_by_one
    for event in events:
        rules.apply(state, *event)
    assert orjson.dumps(rules.to_snapshot(state)) == orjson.dumps(rules.to_snapshot(twin))
