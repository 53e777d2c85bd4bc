"""Two servers on one database behave as one backbone (ADR-0007).

Each server has its own backbone, journal engine and actors; they share only
the database, exactly like two `parley serve` processes.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from tests.support.server import running_server, test_settings
from tests.support.messages import ulid



async def _two_servers(stack: AsyncExitStack, url: str):
    one = await stack.enter_async_context(running_server(test_settings(url)))
    two = await stack.enter_async_context(running_server(test_settings(url)))
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
