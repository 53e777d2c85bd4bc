"""The journal tailer reads SQLite only after a commit (ADR-0049), and still sees a foreign one."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from tests.support.server import running_server, test_settings


async def _polls(tailer, at_least: int) -> None:
    """Until the tailer has made ``at_least`` more polls (50 ms apart: time must pass)."""
    target = tailer.reads + tailer.skipped + at_least
    with trio.fail_after(20):
        while tailer.reads + tailer.skipped < target:
            await trio.sleep(0.01)


async def test_an_idle_tailer_skips_its_reads_and_a_foreign_commit_is_still_seen(sqlite_url):
    async with AsyncExitStack() as stack:
        one = await stack.enter_async_context(running_server(test_settings(sqlite_url)))
        tailer = one.backbone.tailer
        await _polls(tailer, 3)  # past start-up and its own first reads
        reads = tailer.reads
        await _polls(tailer, 10)
        assert tailer.reads == reads, "an idle tailer read the journal"
        assert tailer.skipped >= 10

        # Another server on the same file: another connection, as another process would be.
        two = await stack.enter_async_context(running_server(test_settings(sqlite_url)))
        async with two.client("tok-a") as writer:
            assert (await writer.post("/channels", json={"channel": "elsewhere"})).status_code == 201
        with trio.fail_after(10):
            while not one.backbone.directory.exists("elsewhere"):
                await trio.sleep(0.01)
        assert tailer.reads > reads

        # Our own commits are read once each (the writer is another connection), then idle again.
        async with one.client("tok-a") as client:
            assert (await client.post("/channels", json={"channel": "here"})).status_code == 201
        await _polls(tailer, 3)
        settled = tailer.reads
        await _polls(tailer, 5)
        assert tailer.reads == settled
