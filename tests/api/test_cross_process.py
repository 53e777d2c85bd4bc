"""Two servers on one database behave as one backbone (ADR-0007).

Each server has its own backbone, journal engine and actors; they share only
the database, exactly like two `parley serve` processes.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from tests.support.server import running_server, test_settings
from tests.support.messages import ulid



async def _two_servers(stack: AsyncExitStack, url: str, **overrides):
    one = await stack.enter_async_context(running_server(test_settings(url, **overrides)))
    two = await stack.enter_async_context(running_server(test_settings(url, **overrides)))
    return one, two


async def test_claims_through_two_servers_grant_exactly_once(migrated_url):
    async with AsyncExitStack() as stack:
        one, two = await _two_servers(stack, migrated_url)
        clients = [
            await stack.enter_async_context(one.client("tok-a")),
            await stack.enter_async_context(two.client("tok-b")),
            await stack.enter_async_context(one.client("tok-c")),
            await stack.enter_async_context(two.client("tok-a")),
        ]
        assert (await clients[0].post("/channels", json={"channel": "race"})).status_code == 201
        for round_ in range(15):
            outcomes: list[str] = []

            async def claim(i: int, client) -> None:
                r = await client.post(
                    "/channels/race/claim",
                    json={"type": "claim", "body": f"r{round_}", "msg_id": ulid(round_ * 10 + i), "target": f"t{round_}"},
                )
                assert r.status_code == 200, r.text
                outcomes.append(r.json()["outcome"])

            async with trio.open_nursery() as nursery:
                for i, client in enumerate(clients):
                    nursery.start_soon(claim, i, client)
            assert outcomes.count("granted") == 1, (round_, outcomes)


async def test_an_append_on_one_server_reaches_a_tail_on_the_other(migrated_url):
    async with AsyncExitStack() as stack:
        one, two = await _two_servers(stack, migrated_url)
        writer = await stack.enter_async_context(one.client("tok-a"))
        reader = await stack.enter_async_context(two.client())
        assert (await writer.post("/channels", json={"channel": "tail"})).status_code == 201
        with trio.fail_after(10):
            # The second server learns of the channel from the journal tailer.
            while (await reader.get("/channels/tail")).status_code != 200:
                await trio.sleep(0.05)
            async with reader.stream("GET", "/channels/tail/stream?since=0") as stream:
                lines = stream.aiter_lines()
                assert await lines.__anext__() == ": keep-alive"
                r = await writer.post(
                    "/channels/tail/append", json={"type": "note", "body": "across", "msg_id": ulid(1)}
                )
                assert r.status_code == 201
                seen = []
                async for line in lines:
                    if line.startswith("data: "):
                        seen.append(line)
                        break
        assert '"body":"across"' in seen[0]


async def test_appends_racing_through_two_servers_into_one_channel(migrated_url):
    # Both servers' actors decide on their own copy of the channel; the one
    # whose commit loses takes its decisions back, folds the other's events
    # in and decides again (ADR-0007). Nothing acknowledged may be lost or
    # doubled, and both copies must end up equal to the journal.
    async with AsyncExitStack() as stack:
        caps = {"max_posts_per_minute": 100_000, "global_max_posts_per_minute": 100_000}
        one, two = await _two_servers(stack, migrated_url, **caps)
        clients = []
        for server in (one, two):
            for token in ("tok-a", "tok-b", "tok-c"):
                clients.append(await stack.enter_async_context(server.client(token)))
        assert (await clients[0].post("/channels", json={"channel": "race"})).status_code == 201
        acked: dict[str, int] = {}
        sent = 0

        async def append(client, n: int) -> None:
            msg_id = ulid(10_000 + n)
            r = await client.post("/channels/race/append", json={"type": "note", "body": f"n{n}", "msg_id": msg_id})
            if r.status_code == 201:
                acked[msg_id] = r.json()["cursor"]
            else:  # only "busy" may refuse, and a refused append is not stored
                assert r.status_code == 503, r.text

        for _round in range(40):
            async with trio.open_nursery() as nursery:
                for client in clients:
                    for _ in range(3):
                        nursery.start_soon(append, client, sent)
                        sent += 1
            if one.backbone.lost_races + two.backbone.lost_races >= 5:
                break
        assert one.backbone.lost_races + two.backbone.lost_races >= 1, "no race happened: the test proved nothing"
        assert sorted(acked.values()) == list(range(1, len(acked) + 1))
        for server in (one, two):
            async with server.client("tok-a") as reader:
                # the other server's last commits reach this one through its tailer
                with trio.fail_after(10):
                    while (await reader.get("/channels/race")).json()["head"] < len(acked):
                        await trio.sleep(0.01)
                messages: list[dict] = []
                while len(messages) < len(acked):
                    page = (await reader.post("/channels/race/read", json={"cursor": len(messages)})).json()
                    messages += page["messages"]
            assert {m["msg_id"]: cursor for cursor, m in enumerate(messages, 1)} == acked


async def test_appends_claims_and_dones_racing_through_two_servers_leave_both_equal_to_the_journal(migrated_url):
    # Grants are taken back in place after a lost race, dones reload the
    # actor: either way each server's copy must equal what a third server,
    # started afterwards, folds from the journal alone.
    caps = {"max_posts_per_minute": 100_000, "global_max_posts_per_minute": 100_000}
    async with AsyncExitStack() as stack:
        one, two = await _two_servers(stack, migrated_url, **caps)
        clients = [
            await stack.enter_async_context(server.client(token))
            for server in (one, two)
            for token in ("tok-a", "tok-b", "tok-c")
        ]
        assert (await clients[0].post("/channels", json={"channel": "mix"})).status_code == 201
        n = 0

        async def act(client, k: int) -> None:
            op = ("append", "claim", "claim", "done")[k % 4]
            body = {"type": "claim" if op != "append" else "note", "body": f"{op}{k}", "msg_id": ulid(20_000 + k)}
            if op != "append":
                body["target"] = f"t{k % 3}"
            r = await client.post(f"/channels/mix/{op}", json=body)
            assert r.status_code in (200, 201, 409, 503), r.text

        for _round in range(25):
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(act, client, n)
                    n += 1
        assert one.backbone.lost_races + two.backbone.lost_races >= 1, "no race happened: the test proved nothing"

        async def view(server, head: int) -> tuple[list[dict], list[dict]]:
            async with server.client("tok-a") as reader:
                with trio.fail_after(10):
                    while (await reader.get("/channels/mix")).json()["head"] < head:
                        await trio.sleep(0.01)
                messages: list[dict] = []
                while len(messages) < head:
                    messages += (await reader.post("/channels/mix/read", json={"cursor": len(messages)})).json()["messages"]
                return messages, (await reader.get("/channels/mix/claims")).json()["claims"]

        third = await stack.enter_async_context(running_server(test_settings(migrated_url, **caps)))
        async with third.client("tok-a") as reader:
            head = (await reader.get("/channels/mix")).json()["head"]
        truth = await view(third, head)
        assert await view(one, head) == truth
        assert await view(two, head) == truth
