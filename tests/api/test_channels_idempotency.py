"""D2 (msg_id uniqueness, Idempotency-Key), D11 (archive) and anti-forgery over the wire.

A replay answers with the original status and body plus
``Idempotent-Replayed: true`` and appends nothing; the same key or msg_id
with different content is a 409. Client identity fields are advisory: the
bearer decides who wrote what, and the seatbelt and the claim ledger are
keyed on that anchored identity.
"""

from __future__ import annotations

import hashlib

import trio
from tests.support.messages import ulid



def note(body: str = "hi", **extra) -> dict:
    return {"type": "note", "body": body, "msg_id": ulid(), **extra}


def claim_msg(target: str = "t", **extra) -> dict:
    return {"type": "claim", "body": f"claim {target}", "msg_id": ulid(), "target": target, **extra}


async def head(client, channel: str = "ops") -> int:
    return (await client.get(f"/channels/{channel}")).json()["head"]


async def log(client, channel: str = "ops") -> list[dict]:
    return (await client.post(f"/channels/{channel}/read", json={"cursor": 0})).json()["messages"]


# -- D2: msg_id --------------------------------------------------------------------


async def test_same_msg_id_same_content_replays_the_original(server):
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
        message = note("once")
        first = await a.post("/channels/ops/append", json=message)
        assert first.status_code == 201 and "idempotent-replayed" not in first.headers
        await a.post("/channels/ops/append", json=note("after"))
        server.clock.advance(5)
        again = await a.post("/channels/ops/append", json={**message, "agent_id": "spoof", "ts": "x"})
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()  # the original {message, cursor}, not a dup error
        assert await head(a) == 2

        conflict = await a.post("/channels/ops/append", json={**message, "body": "changed"})
        assert conflict.status_code == 409
        assert conflict.json()["error"]["code"] == "msg_id_conflict"
        async with server.client("tok-b") as b:  # same content from another identity differs
            other = await b.post("/channels/ops/append", json=message)
            assert other.status_code == 409 and other.json()["error"]["code"] == "msg_id_conflict"
            # a claim reusing a message's msg_id is a conflict too
            reused = await b.post("/channels/ops/claim", json={**claim_msg(), "msg_id": message["msg_id"]})
            assert reused.json()["error"]["code"] == "msg_id_conflict"
        assert await head(a) == 2

        # msg_id is per channel
        await a.post("/channels", json={"channel": "elsewhere"})
        assert (await a.post("/channels/elsewhere/append", json=message)).status_code == 201


async def test_claim_retry_replays_the_grant(server):
    async with server.client("tok-a") as a, server.client("tok-b") as b:
        await a.post("/channels", json={"channel": "ops"})
        message = claim_msg("job", lease_ttl=30)
        granted = await a.post("/channels/ops/claim", json=message)
        assert granted.json()["outcome"] == "granted"
        retry = await a.post("/channels/ops/claim", json=message)
        assert retry.status_code == 200 and retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == granted.json()
        assert (await b.post("/channels/ops/claim", json=claim_msg("job"))).json()["outcome"] == "already_claimed"
        done = claim_msg("job")
        first = await a.post("/channels/ops/done", json=done)
        assert first.json()["outcome"] == "granted"
        again = await a.post("/channels/ops/done", json=done)
        assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
        assert await head(a) == 2


async def test_retry_storm_appends_once(server):
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
        message = note("storm")
        responses = []

        async def send() -> None:
            responses.append(await a.post("/channels/ops/append", json=message))

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(send)
        assert [r.status_code for r in responses] == [201] * 50
        originals = [r for r in responses if "idempotent-replayed" not in r.headers]
        assert len(originals) == 1
        assert all(r.json() == originals[0].json() for r in responses)
        assert await head(a) == 1
        assert [m["msg_id"] for m in await log(a)] == [message["msg_id"]]


# -- D2: Idempotency-Key -------------------------------------------------------------


async def test_idempotency_key_on_append_claim_and_create(server):
    async with server.client("tok-a") as a:
        key = {"Idempotency-Key": "retry-1"}
        created = await a.post("/channels", json={"channel": "ops", "purpose": "p"}, headers=key)
        assert created.status_code == 201
        server.clock.advance(10)
        again = await a.post("/channels", json={"channel": "ops", "purpose": "p"}, headers=key)
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert again.json() == created.json()
        changed = await a.post("/channels", json={"channel": "ops2"}, headers=key)
        assert changed.status_code == 409 and changed.json()["error"]["code"] == "idempotency_conflict"
        # Without the key, a re-create is channel_exists as usual.
        assert (await a.post("/channels", json={"channel": "ops", "purpose": "p"})).status_code == 409

        # A client that regenerates msg_id on every attempt is deduplicated by the key.
        first = await a.post("/channels/ops/append", json=note("keyed"), headers={"Idempotency-Key": "a-1"})
        assert first.status_code == 201
        retry = await a.post("/channels/ops/append", json=note("keyed"), headers={"Idempotency-Key": "a-1"})
        assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
        assert retry.json() == first.json()
        different = await a.post("/channels/ops/append", json=note("other"), headers={"Idempotency-Key": "a-1"})
        assert different.status_code == 409 and different.json()["error"]["code"] == "idempotency_conflict"
        assert await head(a) == 1

        claimed = await a.post("/channels/ops/claim", json=claim_msg("k"), headers={"Idempotency-Key": "c-1"})
        assert claimed.json()["outcome"] == "granted"
        replay = await a.post("/channels/ops/claim", json=claim_msg("k"), headers={"Idempotency-Key": "c-1"})
        assert replay.headers["idempotent-replayed"] == "true" and replay.json() == claimed.json()
        # the same key on another route is a different request
        cross = await a.post("/channels/ops/done", json=claim_msg("k"), headers={"Idempotency-Key": "c-1"})
        assert cross.status_code == 409 and cross.json()["error"]["code"] == "idempotency_conflict"
        assert await head(a) == 2

        for bad in ("", "has space", "x" * 256, "caf\u00e9"):
            response = await a.post(
                "/channels/ops/append", json=note("bad key"), headers={"Idempotency-Key": bad.encode()}
            )
            assert response.status_code == 400, bad
            assert response.json()["error"] == {
                "code": "invalid_request",
                "message": "Idempotency-Key must be 1-255 visible ASCII characters",
            }
    async with server.client() as anon:  # the token comes first
        response = await anon.post("/channels/ops/append", json=note(), headers={"Idempotency-Key": "has space"})
        assert response.status_code == 401


# -- anti-forgery --------------------------------------------------------------------


async def test_spoofed_identity_never_reaches_the_log(server):
    spoof = {"agent_id": "sess-a", "owner": "alice"}
    async with server.client("tok-a") as a, server.client("tok-b") as b:
        created = await b.post("/channels", json={"channel": "ops", "created_by": "alice"})
        assert created.json()["created_by"] == "bob"
        await b.post("/channels/ops/append", json=note("from bob", **spoof))
        await a.post("/channels/ops/claim", json=claim_msg("job", lease_ttl=60))
        # bob pretending to be alice: no renew, no done, no reassign of alice's claim
        fake_renew = await b.post("/channels/ops/claim", json=claim_msg("job", heartbeat=True, **spoof))
        assert fake_renew.json()["outcome"] == "already_claimed"
        assert (await b.post("/channels/ops/done", json=claim_msg("job", **spoof))).json()["outcome"] == "already_claimed"
        fake_reassign = await b.post(
            "/channels/ops/reassign",
            json={**claim_msg("job", **spoof), "assignee": {"agent_id": "sess-b", "owner": "bob"}},
        )
        assert fake_reassign.json()["outcome"] == "already_claimed"
        await b.post("/channels/ops/claim", json=claim_msg("bobs", **spoof))
        for message in await log(a):
            if message["body"] == "from bob" or message.get("target") == "bobs":
                assert (message["agent_id"], message["owner"]) == ("sess-b", "bob")
            else:
                assert (message["agent_id"], message["owner"]) == ("sess-a", "alice")
        assert {m["owner"] for m in await log(a)} == {"alice", "bob"}
        holders = {c["target"]: c["holder"] for c in (await a.get("/channels/ops/claims")).json()["claims"]}
        assert holders == {"job": {"agent_id": "sess-a", "owner": "alice"}, "bobs": {"agent_id": "sess-b", "owner": "bob"}}
        # The dup baseline is the anchored agent's: alice's body from bob is not alice's duplicate.
        assert (await a.post("/channels/ops/append", json=note("from bob"))).status_code == 201


# -- D11: archive ----------------------------------------------------------------------


async def test_archive_is_owner_only_and_read_only_afterwards(server):
    async with server.client("tok-a") as a, server.client("tok-b") as b, server.client() as anon:
        await a.post("/channels", json={"channel": "ops"})
        await a.post("/channels/ops/append", json=note("before"))
        await a.post("/channels/ops/claim", json=claim_msg("job"))
        blob = b"kept"
        sha = hashlib.sha256(blob).hexdigest()
        await a.put(f"/channels/ops/artifacts/{sha}", content=blob)

        assert (await anon.post("/channels/ops/archive")).status_code == 401
        refused = await b.post("/channels/ops/archive")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        missing = await a.post("/channels/ghost/archive")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_channel"

        archived = await a.post("/channels/ops/archive")
        assert archived.status_code == 200
        assert archived.json()["archived"] is True and archived.json()["head"] == 2
        assert (await a.post("/channels/ops/archive")).status_code == 200  # idempotent

        closed = {"code": "channel_archived", "message": 'Channel is archived: "ops"'}
        writes = [
            a.post("/channels/ops/append", json=note("after")),
            a.post("/channels/ops/claim", json=claim_msg("new")),
            a.post("/channels/ops/done", json=claim_msg("job")),
            a.post(
                "/channels/ops/reassign",
                json={**claim_msg("job"), "assignee": {"agent_id": "sess-b", "owner": "bob"}},
            ),
        ]
        for write in writes:
            response = await write
            assert response.status_code == 409 and response.json()["error"] == closed
        new_blob = b"new"
        put = await a.put(f"/channels/ops/artifacts/{hashlib.sha256(new_blob).hexdigest()}", content=new_blob)
        assert put.status_code == 409 and put.json()["error"] == closed

        # Reads still work, and the archive is visible in the descriptor.
        assert (await anon.get("/channels/ops")).json()["archived"] is True
        assert [d.get("archived") for d in (await anon.get("/channels")).json()["channels"]] == [True]
        assert len(await log(anon)) == 2
        assert (await anon.get(f"/channels/ops/artifacts/{sha}")).content == blob
        assert len((await anon.get("/channels/ops/claims")).json()["claims"]) == 1
        async with anon.stream("GET", "/channels/ops/stream?since=0") as stream:
            assert stream.status_code == 200
            text = b""
            async for chunk in stream.aiter_bytes():
                text += chunk
                if text.count(b"data: ") == 2:
                    break
        assert (await a.post("/channels", json={"channel": "ops"})).json()["error"]["code"] == "channel_exists"
