"""Every SDK result is a plain dict shaped exactly like its TypedDict in parley.client.types.

The TypedDicts are only worth having if they describe the wire: this test
calls every public method against a live server and checks each answer
against its declared type, recursively: required keys present, no key the
type does not declare, and every value of the declared type. A server field
added without its type, or a type promising a key the server never sends,
fails here.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, NotRequired, get_args, get_origin, get_type_hints

import trio

from parley.client import (
    Actions,
    AppendResult,
    AsyncParley,
    ChannelDescriptor,
    ClaimEntry,
    ClaimOutcome,
    Health,
    Message,
    Parley,
    ReadPage,
    SessionClosed,
    SessionDescription,
    SessionTurn,
    StoredArtifact,
    TailItem,
    Token,
)


def conforms(value: Any, hint: Any, where: str = "result") -> list[str]:
    """Every way ``value`` differs from the type ``hint`` (empty: it conforms)."""
    origin = get_origin(hint)
    if hint is Any:
        return []
    if typing.is_typeddict(hint):
        if type(value) is not dict:
            return [f"{where}: {type(value).__name__}, not a plain dict"]
        hints = get_type_hints(hint)
        problems = [f"{where}: no key {key!r}" for key in sorted(hint.__required_keys__ - value.keys())]
        problems += [f"{where}: undeclared key {key!r}" for key in sorted(value.keys() - hints.keys())]
        for key in value.keys() & hints.keys():
            problems += conforms(value[key], hints[key], f"{where}[{key!r}]")
        return problems
    if origin is NotRequired:
        return conforms(value, get_args(hint)[0], where)
    if origin is Literal:
        return [] if value in get_args(hint) else [f"{where}: {value!r} not in {get_args(hint)}"]
    if origin in (typing.Union, types.UnionType):
        options = [conforms(value, option, where) for option in get_args(hint)]
        return [] if any(not o for o in options) else min(options, key=len)
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: not a list"]
        return [p for i, item in enumerate(value) for p in conforms(item, get_args(hint)[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: not a dict"]
        key_t, value_t = get_args(hint)
        return [p for k, v in value.items() for p in conforms(k, key_t, where) + conforms(v, value_t, f"{where}[{k!r}]")]
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r} is not None"]
    if hint is int and isinstance(value, bool):
        return [f"{where}: bool where int expected"]
    return [] if isinstance(value, hint) else [f"{where}: {type(value).__name__}, not {hint.__name__}"]


def check(value: Any, hint: Any) -> None:
    problems = conforms(value, hint)
    assert not problems, "\n".join(problems)


def test_the_checker_can_fail() -> None:
    good = {"messages": [], "cursor": 0}
    assert conforms(good, ReadPage) == []
    assert conforms({**good, "extra": 1}, ReadPage) == ["result: undeclared key 'extra'"]
    assert conforms({"messages": []}, ReadPage) == ["result: no key 'cursor'"]
    assert conforms({"messages": [], "cursor": True}, ReadPage) == ["result['cursor']: bool where int expected"]


async def test_every_async_result_matches_its_type(server, tmp_path) -> None:
    async with AsyncParley(server.url, "tok-a") as alice, AsyncParley(server.url, "tok-b") as bob:
        check(await alice.health(), Health)
        check(await alice.create_channel("typed", purpose="p"), ChannelDescriptor)
        check(await alice.create_channel("bare"), ChannelDescriptor)  # no purpose
        for descriptor in await bob.list_channels():
            check(descriptor, ChannelDescriptor)
        appended = await alice.append("typed", body="hi", to=["bob"], status="needs-response")
        check(appended, AppendResult)
        check(await alice.append("typed", body="re", reply_to=appended["message"]["msg_id"]), AppendResult)
        check(await alice.claim("typed", "db", lease_ttl=60, heartbeat=True), ClaimOutcome)
        check(await bob.claim("typed", "db"), ClaimOutcome)  # already_claimed: `by`
        check(await alice.claim("typed", "forever"), ClaimOutcome)
        for entry in await bob.claims("typed"):
            check(entry, ClaimEntry)
        check(await alice.reassign("typed", "db", ("sess-b", "bob")), ClaimOutcome)
        check(await bob.done("typed", "db"), ClaimOutcome)
        check(await bob.done("typed", "db"), ClaimOutcome)  # not_held
        check(await alice.put_artifact("typed", b"blob"), StoredArtifact)
        page = await bob.read("typed", 0)
        check(page, ReadPage)
        assert [m["body"] async for m in bob.iter_messages("typed", limit=2)] == [m["body"] for m in page["messages"]]
        async with bob.tail("typed", since=0) as tail:
            async for item in tail:
                check(item, TailItem)
                break
        async with bob.tail_ws("typed", since=0) as ws_tail:
            async for item in ws_tail:
                check(item, TailItem)
                break
        check(await alice.describe("typed"), ChannelDescriptor)
        check(await alice.archive("typed"), ChannelDescriptor)

        turn = await alice.start_session([Actions.subscribe("bare", "start"), Actions.append("bare", body="s")])
        check(turn, SessionTurn)
        parked = await alice.continue_session(turn["sessionId"], turn["continuationToken"], wait=1)
        assert parked["status"] == "parked"
        check(parked, SessionTurn)
        check(await alice.describe_session(turn["sessionId"]), SessionDescription)
        check(await alice.close_session(turn["sessionId"], parked["continuationToken"]), SessionClosed)

    async with AsyncParley(server.url, admin_token="admin-secret") as admin:
        minted = await admin.mint("bot-1", "dave")
        check(minted, Token)
        check(await admin.rotate("bot-1", "dave"), Token)


async def test_sync_results_and_iter_messages(server) -> None:
    def script() -> tuple[list[Message], list[str]]:
        with Parley(server.url, "tok-a") as alice:
            alice.create_channel("sync-typed")
            for i in range(5):
                alice.append("sync-typed", body=f"m{i}")
            messages = list(alice.iter_messages("sync-typed", limit=2))
            paged = [m["body"] for p in alice.read_all("sync-typed", cursor=1, limit=3) for m in p["messages"]]
            return messages, paged

    with trio.fail_after(20):
        messages, paged = await trio.to_thread.run_sync(script)
    for message in messages:
        check(message, Message)
    assert [m["body"] for m in messages] == [f"m{i}" for i in range(5)]
    assert paged == [f"m{i}" for i in range(1, 5)]
