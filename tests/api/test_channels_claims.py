"""Claims over the wire: first-write-wins, leases, heartbeat, reassign, done (channels.md §3, D3).

Lease expiry is lazy and uses Caucus's ``>=`` boundary; the ManualClock is
moved to the exact millisecond instead of sleeping.
"""

from __future__ import annotations

import datetime as dt

import trio

from tests.support.server import running_server
from tests.support.server import test_settings as settings_for
from tests.support.messages import ulid



def claim_msg(target: str, **extra) -> dict:
    return {"type": "claim", "body": "taking it", "msg_id": ulid(), "target": target, **extra}


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def head(client, channel: str = "ops") -> int:
    return (await client.get(f"/channels/{channel}")).json()["head"]


async def claims(client, channel: str = "ops") -> list[dict]:
    response = await client.get(f"/channels/{channel}/claims")
    assert response.status_code == 200
    return response.json()["claims"]


async def journal_types(live, channel: str = "ops") -> list[tuple[str, dict]]:
    events = await live.backbone.journal.read_stream(f"channel:{channel}")
    return [(e.type, e.data) for e in events]


async def test_first_write_wins_on_the_normalised_target(server):
    async with server.client("tok-a") as a, server.client("tok-b") as b:
        await a.post("/channels", json={"channel": "ops"})
        first = await a.post("/channels/ops/claim", json=claim_msg("  cafe\u0301 \ufeff"))
        assert first.status_code == 200
        granted = first.json()
        assert list(granted) == ["outcome", "message", "cursor"]
        assert granted["outcome"] == "granted" and granted["cursor"] == 1
        assert granted["message"]["target"] == "  cafe\u0301 \ufeff"  # stored verbatim
        assert granted["message"]["agent_id"] == "sess-a" and granted["message"]["owner"] == "alice"

        lost = await b.post("/channels/ops/claim", json=claim_msg("caf\u00e9"))
        assert lost.status_code == 200
        assert lost.json() == {
            "outcome": "already_claimed",
            "by": {
                "agent_id": "sess-a",
                "owner": "alice",
                "ts": granted["message"]["ts"],
                "msg_id": granted["message"]["msg_id"],
            },
        }
        # Case and zero-width characters are kept: these are different targets.
        assert (await b.post("/channels/ops/claim", json=claim_msg("Caf\u00e9"))).json()["outcome"] == "granted"
        assert (await b.post("/channels/ops/claim", json=claim_msg("a\u200bb"))).json()["outcome"] == "granted"
        assert (await a.post("/channels/ops/claim", json=claim_msg("ab"))).json()["outcome"] == "granted"
        # The holder re-claiming without heartbeat is already_claimed too, and appends nothing.
        before = await head(a)
        again = await a.post("/channels/ops/claim", json=claim_msg("caf\u00e9"))
        assert again.json()["outcome"] == "already_claimed"
        assert await head(a) == before

        listed = await claims(a)
        assert [c["target"] for c in listed] == ["caf\u00e9", "Caf\u00e9", "a\u200bb", "ab"]
        assert listed[0] == {
            "target": "caf\u00e9",
            "holder": {"agent_id": "sess-a", "owner": "alice"},
            "ts": granted["message"]["ts"],
            "msg_id": granted["message"]["msg_id"],
        }


async def test_already_claimed_spends_no_budget(migrated_url):
    async with running_server(settings_for(migrated_url, max_posts_per_minute=2)) as live:
        async with live.client("tok-a") as a, live.client("tok-b") as b:
            await a.post("/channels", json={"channel": "ops"})
            assert (await a.post("/channels/ops/claim", json=claim_msg("t"))).json()["outcome"] == "granted"
            for _ in range(5):
                assert (await b.post("/channels/ops/claim", json=claim_msg("t"))).json()["outcome"] == "already_claimed"
            assert (await b.post("/channels/ops/claim", json=claim_msg("u"))).json()["outcome"] == "granted"
            assert (await b.post("/channels/ops/claim", json=claim_msg("v"))).json()["outcome"] == "granted"
            # Budget spent: even a held target now answers 429 (rate before the ledger).
            assert (await b.post("/channels/ops/claim", json=claim_msg("t"))).status_code == 429


async def test_concurrent_claimers_exactly_one_grant_per_round(migrated_url):
    rounds, claimers = 100, 8
    settings = settings_for(migrated_url, max_posts_per_minute=100_000)
    async with running_server(settings) as live:
        async with live.client("admin-secret") as admin:
            tokens = []
            for i in range(claimers):
                minted = await admin.post("/admin/tokens", json={"agent_id": f"racer-{i}", "owner": f"owner-{i}"})
                tokens.append(minted.json()["token"])
        clients = [live.client(token) for token in tokens]
        try:
            await clients[0].post("/channels", json={"channel": "race"})
            winners: dict[int, list[str]] = {}

            async def contend(r: int, i: int) -> None:
                response = await clients[i].post("/channels/race/claim", json=claim_msg(f" job-{r} "))
                assert response.status_code == 200, response.text
                body = response.json()
                if body["outcome"] == "granted":
                    winners.setdefault(r, []).append(body["message"]["agent_id"])
                else:
                    assert body["outcome"] == "already_claimed"

            for r in range(rounds):
                async with trio.open_nursery() as nursery:
                    for i in range(claimers):
                        nursery.start_soon(contend, r, i)
            assert sorted(winners) == list(range(rounds))
            assert all(len(w) == 1 for w in winners.values()), winners
            assert await head(clients[0], "race") == rounds
            listed = await claims(clients[0], "race")
            assert {c["target"]: c["holder"]["agent_id"] for c in listed} == {
                f"job-{r}": winners[r][0] for r in range(rounds)
            }
        finally:
            for client in clients:
                await client.aclose()


async def test_lease_expires_at_the_exact_boundary_and_the_lapse_is_journaled(server):
    clock = server.clock
    t0 = clock.now_ms()
    async with server.client("tok-a") as a, server.client("tok-b") as b:
        await a.post("/channels", json={"channel": "ops"})
        held = (await a.post("/channels/ops/claim", json=claim_msg("lease", lease_ttl=5))).json()["message"]
        assert held["lease_ttl"] == 5
        forever = (await a.post("/channels/ops/claim", json=claim_msg("forever"))).json()["message"]
        listed = await claims(a)
        assert listed == [
            {
                "target": "lease",
                "holder": {"agent_id": "sess-a", "owner": "alice"},
                "ts": held["ts"],
                "msg_id": held["msg_id"],
                "expires_at": iso(t0 + 5000),
            },
            {
                "target": "forever",
                "holder": {"agent_id": "sess-a", "owner": "alice"},
                "ts": forever["ts"],
                "msg_id": forever["msg_id"],
            },
        ]
        clock.advance(4_999)
        lost = (await b.post("/channels/ops/claim", json=claim_msg("lease"))).json()
        assert lost["outcome"] == "already_claimed" and lost["by"]["msg_id"] == held["msg_id"]
        clock.advance(1)  # now == claimed_at + ttl * 1000: expired
        assert [c["target"] for c in await claims(a)] == ["forever"]
        assert "claim_lapsed" not in [t for t, _ in await journal_types(server)]  # lazy: not yet judged
        won = (await b.post("/channels/ops/claim", json=claim_msg("lease"))).json()
        assert won["outcome"] == "granted" and won["message"]["owner"] == "bob"
        events = await journal_types(server)
        lapses = [d for t, d in events if t == "claim_lapsed"]
        assert lapses == [{"key": "lease", "msg_id": held["msg_id"]}]
        assert [c["holder"]["owner"] for c in await claims(a) if c["target"] == "lease"] == ["bob"]
        clock.advance(10 ** 9)
        assert sorted(c["target"] for c in await claims(a)) == ["forever", "lease"]


async def test_lapsed_claim_on_done_is_not_held_and_journaled(server):
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
        held = (await a.post("/channels/ops/claim", json=claim_msg("t", lease_ttl=1))).json()["message"]
        server.clock.advance(1_000)
        before = await head(a)
        assert (await a.post("/channels/ops/done", json=claim_msg("t"))).json() == {"outcome": "not_held"}
        assert await head(a) == before
        assert ("claim_lapsed", {"key": "t", "msg_id": held["msg_id"]}) in await journal_types(server)
        assert (await a.post("/channels/ops/done", json=claim_msg("never"))).json() == {"outcome": "not_held"}


async def test_heartbeat_renews_for_the_same_owner_only(server):
    clock = server.clock
    t0 = clock.now_ms()
    async with server.client("admin-secret") as admin:
        minted = await admin.post("/admin/tokens", json={"agent_id": "sess-a2", "owner": "alice"})
        twin_token = minted.json()["token"]
    async with server.client("tok-a") as a, server.client("tok-b") as b, server.client(twin_token) as twin:
        await a.post("/channels", json={"channel": "ops"})
        await a.post("/channels/ops/claim", json=claim_msg("job", lease_ttl=5))
        clock.advance(3_000)
        # Another owner's heartbeat is just a lost claim.
        assert (await b.post("/channels/ops/claim", json=claim_msg("job", heartbeat=True, lease_ttl=5))).json()[
            "outcome"
        ] == "already_claimed"
        # Same owner, different agent: a renew, appended, with a fresh lease.
        renew = await twin.post("/channels/ops/claim", json=claim_msg("job", heartbeat=True, lease_ttl=5))
        body = renew.json()
        assert body["outcome"] == "granted" and body["message"]["agent_id"] == "sess-a2"
        assert body["message"]["heartbeat"] is True
        listed = await claims(a)
        assert listed[0]["holder"] == {"agent_id": "sess-a2", "owner": "alice"}
        assert listed[0]["expires_at"] == iso(t0 + 8_000)
        clock.advance(4_999)  # t0 + 7999
        lost = (await b.post("/channels/ops/claim", json=claim_msg("job"))).json()
        assert lost["by"]["msg_id"] == body["message"]["msg_id"]
        # heartbeat:false from the holder is not a renew
        assert (await a.post("/channels/ops/claim", json=claim_msg("job", heartbeat=False))).json()[
            "outcome"
        ] == "already_claimed"
        # A renew without lease_ttl replaces the TTL: the claim never expires now.
        await a.post("/channels/ops/claim", json=claim_msg("job", heartbeat=True))
        clock.advance(10**8)
        assert (await b.post("/channels/ops/claim", json=claim_msg("job"))).json()["outcome"] == "already_claimed"
        assert "expires_at" not in (await claims(a))[0]
        # A heartbeat on a free target is a plain grant.
        assert (await b.post("/channels/ops/claim", json=claim_msg("new", heartbeat=True))).json()[
            "outcome"
        ] == "granted"


async def test_reassign_and_done(server):
    async with server.client("tok-a") as a, server.client("tok-b") as b, server.client("tok-c") as c:
        await a.post("/channels", json={"channel": "ops"})
        await a.post("/channels/ops/claim", json=claim_msg("job"))
        to_bob = {"agent_id": "sess-b", "owner": "bob"}
        # Another owner cannot reassign a live claim; the ledger is untouched.
        refused = (await c.post("/channels/ops/reassign", json={**claim_msg("job"), "assignee": to_bob})).json()
        assert refused["outcome"] == "already_claimed" and refused["by"]["owner"] == "alice"
        assert (await claims(a))[0]["holder"]["owner"] == "alice"

        moved = await a.post("/channels/ops/reassign", json={**claim_msg("job", lease_ttl=60), "assignee": to_bob})
        assert moved.status_code == 200
        body = moved.json()
        assert body["outcome"] == "granted"
        message = body["message"]
        assert message["agent_id"] == "sess-a" and message["owner"] == "alice"  # authored by the caller
        assert message["assignee"] == to_bob  # D3: recorded on the stored claim
        listed = await claims(a)
        assert listed[0]["holder"] == to_bob
        assert listed[0]["msg_id"] == message["msg_id"] and listed[0]["ts"] == message["ts"]
        page = (await a.post("/channels/ops/read", json={"cursor": 1})).json()["messages"]
        assert page == [message]
        events = await server.backbone.journal.read_stream("channel:ops")
        assert events[-1].data["claim"]["assignee"] == to_bob

        # Now alice no longer holds it: her done is already_claimed, bob's done resolves it.
        assert (await a.post("/channels/ops/done", json=claim_msg("job"))).json()["outcome"] == "already_claimed"
        done = (await b.post("/channels/ops/done", json=claim_msg("job", status="needs-response"))).json()
        assert done["outcome"] == "granted" and done["message"]["status"] == "resolved"
        assert await claims(a) == []
        assert (await b.post("/channels/ops/done", json=claim_msg("job"))).json() == {"outcome": "not_held"}

        # Reassigning an unheld target is a fresh grant to the assignee.
        fresh = (await c.post("/channels/ops/reassign", json={**claim_msg("other"), "assignee": to_bob})).json()
        assert fresh["outcome"] == "granted" and fresh["message"]["owner"] == "carol"
        assert (await claims(a))[0]["holder"] == to_bob
        # The assignee's owner may reassign onwards.
        onward = await b.post(
            "/channels/ops/reassign", json={**claim_msg("other"), "assignee": {"agent_id": "x", "owner": "y"}}
        )
        assert onward.json()["outcome"] == "granted"
