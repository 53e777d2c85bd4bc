"""A channel actor rebuilt from the journal has exactly the state it had live,
and snapshot + tail equals a full replay."""

from __future__ import annotations

import hashlib

from parley.actors.channel_actor import ChannelActor, stream_id
from parley.domain import channel as rules
from tests.support.messages import ulid



async def _populate(server, count: int, start: int = 0) -> None:
    async with server.client("tok-a") as a, server.client("tok-b") as b:
        for i in range(start, start + count):
            client = a if i % 2 else b
            r = await client.post(
                "/channels/replay/append", json={"type": "note", "body": f"m{i}", "msg_id": ulid(i)}
            )
            assert r.status_code == 201, r.text
        r = await a.post(
            "/channels/replay/claim",
            json={"type": "claim", "body": "c", "msg_id": ulid(1000 + start), "target": f"t{start}", "lease_ttl": 30},
        )
        assert r.json()["outcome"] == "granted"
        blob = f"blob{start}".encode()
        r = await a.put(f"/channels/replay/artifacts/{hashlib.sha256(blob).hexdigest()}", content=blob)
        assert r.status_code == 201


async def _full_replay(server) -> rules.ChannelState:
    state = rules.ChannelState("replay")
    for event in await server.backbone.journal.read_stream(stream_id("replay")):
        rules.apply(state, event.type, event.data)
    return state


async def test_replay_and_snapshot_plus_tail_equal_live_state(server):
    async with server.client("tok-a") as a:
        assert (await a.post("/channels", json={"channel": "replay"})).status_code == 201
    await _populate(server, 10)
    live_actor = server.backbone.channels._cells["replay"].actor
    live = rules.to_snapshot(live_actor.state)
    assert rules.to_snapshot(await _full_replay(server)) == live

    # Snapshot now, write a tail, and activate a fresh actor: snapshot + tail.
    await server.backbone.journal.save_snapshot(stream_id("replay"), live_actor.state.seq, live)
    await _populate(server, 7, start=10)
    fresh = ChannelActor("replay", server.backbone)
    await fresh.activate()
    assert fresh._snapshot_seq == live["seq"]
    assert rules.to_snapshot(fresh.state) == rules.to_snapshot(await _full_replay(server))
    assert rules.to_snapshot(fresh.state) == rules.to_snapshot(live_actor.state)
    assert fresh.state.head == 19
