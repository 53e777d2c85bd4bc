"""``parley token mint|revoke|rotate|list`` against real databases."""

from __future__ import annotations

import re

import orjson
import pytest
import trio

from parley import cli_token
from parley.actors.tokens import TokenStore
from parley.domain.identity import Identity
from parley.domain.tokens import token_digest
from parley.journal import ConcurrencyError

from . import assert_one_line_error, ev, open_store, run

TOKEN_RE = re.compile(r"^tok_[A-Za-z0-9_-]{43}$")


def mint(url: str, agent: str = "agent-1", owner: str = "alice") -> str:
    result = run("token", "mint", agent, owner, "--database-url", url)
    assert result.exit_code == 0, result.stderr
    token = result.stdout.strip()
    assert TOKEN_RE.match(token) and result.stdout == token + "\n"
    return token


def listed(url: str) -> list[dict]:
    result = run("token", "list", "--database-url", url, "--json")
    assert result.exit_code == 0, result.stderr
    return orjson.loads(result.stdout)


def tokens_events(url: str):
    with open_store(url) as store:
        return store.read_stream("tokens")


class _SyncJournal:
    """Enough of the async Journal for TokenStore.load, over the sync store."""

    def __init__(self, store) -> None:
        self.store = store

    async def read_stream(self, stream_id, after_seq=0):
        return self.store.read_stream(stream_id, after_seq)


async def server_view(url: str) -> TokenStore:
    """The token store a server would load from this journal."""
    with open_store(url) as store:
        tokens = TokenStore(_SyncJournal(store))
        await tokens.load()
    return tokens


async def test_mint_prints_the_token_once_and_journals_only_its_digest(migrated_url):
    token = mint(migrated_url)
    result = run("token", "mint", "agent-2", "bob", "--database-url", migrated_url)
    assert "will NOT be shown again" in result.stderr
    assert "a running server applies this within moments" in result.stderr
    assert "tok_" not in result.stderr
    second = result.stdout.strip()

    events = tokens_events(migrated_url)
    assert [(e.seq, e.type) for e in events] == [(1, "token_minted"), (2, "token_minted")]
    assert events[0].data == {"digest": token_digest(token), "agent_id": "agent-1", "owner": "alice"}
    assert list(events[0].data) == ["digest", "agent_id", "owner"]
    assert token not in repr(events)

    tokens = await server_view(migrated_url)
    assert tokens.resolve(token) == Identity("agent-1", "alice")
    assert tokens.resolve(second) == Identity("agent-2", "bob")


def test_list_shows_digest_prefixes_never_tokens(migrated_url):
    token = mint(migrated_url)
    mint(migrated_url, "agent-2", "bob")
    rows = listed(migrated_url)
    assert rows == [
        {"digest": token_digest(token)[:12], "agent_id": "agent-1", "owner": "alice"},
        {"digest": rows[1]["digest"], "agent_id": "agent-2", "owner": "bob"},
    ]
    text = run("token", "list", "--database-url", migrated_url)
    assert text.exit_code == 0
    assert token_digest(token)[:12] in text.stdout and "agent-1" in text.stdout and "alice" in text.stdout
    assert "tok_" not in text.stdout and token_digest(token) not in text.stdout


def test_list_empty(migrated_url):
    assert run("token", "list", "--database-url", migrated_url).stdout.strip() == "no journaled tokens"
    assert listed(migrated_url) == []


async def test_revoke_by_agent_and_by_digest_prefix(migrated_url):
    a1 = mint(migrated_url)
    a2 = mint(migrated_url)
    b = mint(migrated_url, "agent-2", "bob")

    result = run("token", "revoke", "--digest", token_digest(b)[:12], "--database-url", migrated_url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"revoked {token_digest(b)[:12]}"

    result = run("token", "revoke", "--agent-id", "agent-1", "--database-url", migrated_url)
    assert result.exit_code == 0
    assert sorted(result.stdout.split()) == sorted(["revoked", token_digest(a1)[:12], "revoked", token_digest(a2)[:12]])

    events = tokens_events(migrated_url)
    assert [e.type for e in events] == ["token_minted"] * 3 + ["token_revoked"] * 2
    assert events[3].data == {"digests": [token_digest(b)]}
    assert events[4].data == {"digests": [token_digest(a1), token_digest(a2)]}
    assert listed(migrated_url) == []
    tokens = await server_view(migrated_url)
    assert all(tokens.resolve(t) is None for t in (a1, a2, b))

    # nothing left to revoke: an error, and nothing appended
    assert_one_line_error(run("token", "revoke", "--agent-id", "agent-1", "--database-url", migrated_url),
                          "no journaled token matches agent agent-1")  # fmt: skip
    assert len(tokens_events(migrated_url)) == 5


def test_revoke_argument_errors(migrated_url):
    mint(migrated_url)
    mint(migrated_url)
    assert_one_line_error(run("token", "revoke", "--database-url", migrated_url), "exactly one")
    assert_one_line_error(run("token", "revoke", "--agent-id", "x", "--digest", "abcdef12", "--database-url", migrated_url), "exactly one")
    assert_one_line_error(run("token", "revoke", "--digest", "abc", "--database-url", migrated_url), "at least 8 hex")
    assert_one_line_error(run("token", "revoke", "--digest", "zzzzzzzzzz", "--database-url", migrated_url), "hex")
    assert len(tokens_events(migrated_url)) == 2


def test_ambiguous_digest_prefix_is_refused():
    active = {"abcdef0011": ("a", "o"), "abcdef0022": ("b", "o")}
    with pytest.raises(cli_token.TokenError, match="ambiguous"):
        cli_token.match_digest(active, "abcdef00")
    assert cli_token.match_digest(active, "ABCDEF0022") == "abcdef0022"
    assert cli_token.match_digest(active, "abcdef0033") is None


async def test_rotate_mints_and_revokes_in_one_append(migrated_url):
    old1 = mint(migrated_url)
    old2 = mint(migrated_url)
    result = run("token", "rotate", "agent-1", "alice", "--digest", token_digest(old1)[:10], "--database-url", migrated_url)
    assert result.exit_code == 0, result.stderr
    new = result.stdout.strip()
    assert TOKEN_RE.match(new) and new not in (old1, old2)
    assert f"revoked: {token_digest(old1)[:12]}" in result.stderr and "NOT be shown again" in result.stderr

    events = tokens_events(migrated_url)
    assert [(e.type, e.recorded_at) for e in events[2:]] == [("token_minted", events[2].recorded_at), ("token_revoked", events[2].recorded_at)]
    assert events[2].data == {"digest": token_digest(new), "agent_id": "agent-1", "owner": "alice"}
    assert events[3].data == {"digests": [token_digest(old1)]}
    tokens = await server_view(migrated_url)
    assert tokens.resolve(old1) is None and tokens.resolve(old2) is not None and tokens.resolve(new) is not None

    # without --digest every token of the agent goes
    newest = run("token", "rotate", "agent-1", "alice", "--database-url", migrated_url).stdout.strip()
    tokens = await server_view(migrated_url)
    assert [t for t in (old2, new, newest) if tokens.resolve(t)] == [newest]
    assert {r["digest"] for r in listed(migrated_url)} == {token_digest(newest)[:12]}


def test_mint_uses_the_current_expected_seq(migrated_url):
    """Another writer appended to the tokens stream: the CLI still appends at its head."""
    mint(migrated_url)
    with open_store(migrated_url) as store:
        store.append("tokens", [ev("token_revoked", {"digests": []})], 1)
    mint(migrated_url, "agent-3", "carol")
    assert [e.seq for e in tokens_events(migrated_url)] == [1, 2, 3]


def test_lost_race_reloads_and_decides_again(migrated_url, monkeypatch):
    with open_store(migrated_url) as store:
        real_append = store.append
        calls = []

        def racing_append(stream, events, expected):
            calls.append(expected)
            if len(calls) == 1:  # someone else commits first
                real_append(stream, [ev("token_minted", {"digest": "ff" * 32, "agent_id": "x", "owner": "y"})], expected)
            return real_append(stream, events, expected)

        monkeypatch.setattr(store, "append", racing_append)
        token, digest = cli_token.mint(store, "agent-1", "alice")
        assert calls == [0, 1]
        assert [e.data.get("digest") for e in store.read_stream("tokens")] == ["ff" * 32, digest]

        def always_losing(stream, events, expected):
            raise ConcurrencyError(stream, expected, expected + 1)

        monkeypatch.setattr(store, "append", always_losing)
        with pytest.raises(cli_token.TokenError, match="kept changing"):
            cli_token.mint(store, "agent-1", "alice")


def test_identity_arguments_are_checked(migrated_url):
    assert_one_line_error(run("token", "mint", " ", "alice", "--database-url", migrated_url), "AGENT_ID")
    assert_one_line_error(run("token", "mint", "a", "bad\nowner", "--database-url", migrated_url), "OWNER")
    assert tokens_events(migrated_url) == []


def test_token_commands_need_a_migrated_database(tmp_path):
    missing = tmp_path / "none.db"
    assert_one_line_error(run("token", "list", "--database-url", f"sqlite:///{missing}"), "no SQLite database at")
    assert_one_line_error(run("token", "mint", "a", "o", "--database-url", f"sqlite:///{missing}"), "no SQLite database at")


async def test_a_running_server_sees_cli_token_changes(migrated_url):
    """The server's journal tailer folds token events committed by this CLI."""
    from tests.support.server import running_server, test_settings

    def cli_mint() -> str:
        with open_store(migrated_url) as store:
            return cli_token.mint(store, "cli-agent", "ops")[0]

    def cli_revoke() -> list[str]:
        with open_store(migrated_url) as store:
            return cli_token.revoke(store, agent_id="cli-agent")

    async with running_server(test_settings(migrated_url)) as live:
        token = await trio.to_thread.run_sync(cli_mint)
        with trio.fail_after(10):
            while live.backbone.tokens.resolve(token) is None:
                await trio.sleep(0.02)
        assert live.backbone.tokens.resolve(token) == Identity("cli-agent", "ops")
        async with live.client(token) as client:
            response = await client.post("/channels", json={"channel": "from-cli"})
            assert response.status_code == 201, response.text
            assert response.json()["created_by"] == "ops"
        assert len(await trio.to_thread.run_sync(cli_revoke)) == 1
        with trio.fail_after(10):
            while live.backbone.tokens.resolve(token) is not None:
                await trio.sleep(0.02)
        async with live.client(token) as client:
            response = await client.post("/channels", json={"channel": "after-revoke"})
            assert response.status_code == 401
