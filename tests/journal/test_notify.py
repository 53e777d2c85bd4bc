"""Commit notifications between processes on Postgres (parley.journal.notify)."""

from __future__ import annotations

import pytest
import trio

from parley.journal import migrate
from parley.journal.journal import Journal
from parley.journal.notify import channel_for, foreign_position
from parley.journal.types import NewEvent


def test_foreign_position_ignores_our_own_and_garbage():
    assert foreign_position("abc 42", "xyz") == 42
    assert foreign_position("abc 42", "abc") is None
    assert foreign_position("abc", "xyz") is None
    assert foreign_position("abc x", "xyz") is None


@pytest.mark.postgres
async def test_commits_of_another_journal_wake_the_listener_with_their_position_and_ours_do_not(postgres_url):
    migrate.upgrade(postgres_url)
    ours, theirs = Journal.open(postgres_url), Journal.open(postgres_url)
    async with ours, theirs:
        woken: list[int] = []
        second = trio.Event()

        def on_wake(position: int) -> None:
            woken.append(position)
            if len(woken) == 2:
                second.set()

        async with trio.open_nursery() as nursery:
            await nursery.start(ours.listen, on_wake)
            assert ours.listening
            mine = await ours.append("channel:a", [NewEvent("message", {"n": 1})], 0)
            first = await theirs.append("channel:a", [NewEvent("message", {"n": 2})], 1)
            also_mine = await ours.append("channel:b", [NewEvent("message", {"n": 3})], 0)
            last = await theirs.append("channel:a", [NewEvent("message", {"n": 4}), NewEvent("message", {"n": 5})], 2)
            # Notifications arrive in commit order: by the second foreign one,
            # ours (committed in between) would have been seen too.
            with trio.fail_after(5):
                await second.wait()
            assert woken == [first[-1].position, last[-1].position]
            assert mine[-1].position not in woken and also_mine[-1].position not in woken
            nursery.cancel_scope.cancel()
        assert not ours.listening


def test_each_schema_has_its_own_channel_name_that_postgres_accepts():
    names = {channel_for(s) for s in ("public", "t_" + "a" * 60, 'odd "name"', None)}
    assert len(names) == 4
    assert all(len(n) <= 63 and n.replace("_", "").isalnum() for n in names)


@pytest.mark.postgres
async def test_commits_in_another_schema_of_the_same_database_do_not_wake_the_listener(postgres_url):
    from tests.conftest import postgres_schema_url

    migrate.upgrade(postgres_url)
    with postgres_schema_url() as other_url:
        migrate.upgrade(other_url)
        ours, same, other = Journal.open(postgres_url), Journal.open(postgres_url), Journal.open(other_url)
        async with ours, same, other:
            woken: list[int] = []
            got = trio.Event()

            def on_wake(position: int) -> None:
                woken.append(position)
                got.set()

            async with trio.open_nursery() as nursery:
                await nursery.start(ours.listen, on_wake)
                await other.append("channel:a", [NewEvent("message", {"n": 1})], 0)
                await other.append("channel:a", [NewEvent("message", {"n": 2})], 1)
                # Postgres queues notifications in commit order: once the
                # same-schema commit has woken us, the other schema's
                # (committed before it) would have been delivered already.
                mine = await same.append("channel:a", [NewEvent("message", {"n": 3})], 0)
                with trio.fail_after(5):
                    await got.wait()
                assert woken == [mine[-1].position]
                nursery.cancel_scope.cancel()


async def test_sqlite_has_nothing_to_listen_to(sqlite_url):
    migrate.upgrade(sqlite_url)
    async with Journal.open(sqlite_url) as journal:
        with trio.fail_after(1):
            await journal.listen(lambda position: None)  # returns at once
        assert not journal.listening
