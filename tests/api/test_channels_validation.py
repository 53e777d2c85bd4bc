"""Validation, caps, seatbelts and read arguments over the wire (channels.md §2.8-§3).

Issue strings, error codes and messages are load-bearing (Caucus's HTTP
client parses them back with regexes), so every assertion here is exact.
Time-dependent rules move the server's ManualClock instead of sleeping.
"""

from __future__ import annotations


import trio

from tests.support.server import running_server
from tests.support.server import test_settings as settings_for
from tests.support.messages import ulid

EMOJI = "\U0001f600"  # two UTF-16 code units
SLUG_HINT = " (must match ^[a-z0-9][a-z0-9-]{0,63}$)"
DUPLICATE = (
    "Duplicate of your previous post \u2014 identical content was just posted. Vary the content "
    "or stop repeating; do not re-post the same message."
)


def note(body: str = "hi", **extra) -> dict:
    return {"type": "note", "body": body, "msg_id": ulid(), **extra}


def claim_msg(target: str = "t", **extra) -> dict:
    return {"type": "claim", "body": f"claim {target}", "msg_id": ulid(), "target": target, **extra}


def issues_of(response) -> list[str]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_message"
    assert error["message"] == "Invalid message: " + "; ".join(error["issues"])
    return error["issues"]


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert "issues" not in error
    return error


async def make(client, name: str = "ops", **options) -> None:
    response = await client.post("/channels", json={"channel": name, **options})
    assert response.status_code == 201, response.text


# -- message validation ------------------------------------------------------------


async def test_every_issue_is_reported_at_once(server):
    async with server.client("tok-a") as a:
        await make(a)
        bad = {
            "type": "bogus",
            "msg_id": "not-a-ulid",
            "body": "",
            "thread": "x",
            "reply_to": 7,
            "to": [],
            "status": "meh",
            "artifact": "",
            "ts": "",
            "target": "t",
            "heartbeat": True,
        }
        issues = issues_of(await a.post("/channels/ops/append", json=bad))
        assert sorted(issues) == sorted(
            [
                "type must be one of finding, claim, status, question, answer, note, steer",
                "msg_id must be a ULID",
                "body must be a non-empty string",
                "thread must be a ULID",
                "reply_to must be a ULID",
                "to must be a non-empty array of non-empty strings",
                "status must be one of needs-response, resolved, fyi",
                "artifact must be a non-empty string",
                "ts must be a non-empty string",
                "target is only valid on claim messages",
                "heartbeat is only valid on claim messages",
            ]
        )
        assert issues.index("type must be one of finding, claim, status, question, answer, note, steer") == 0
        assert issues[-2:] == ["target is only valid on claim messages", "heartbeat is only valid on claim messages"]
        # Nothing was appended.
        assert (await a.get("/channels/ops")).json()["head"] == 0


async def test_unknown_fields_are_capped_and_sanitised(server):
    async with server.client("tok-a") as a:
        await make(a)
        extra = {f"x{i}": 1 for i in range(12)}
        issues = issues_of(await a.post("/channels/ops/append", json=note(**extra)))
        assert issues == [f'unknown field "x{i}"' for i in range(10)] + ["\u2026and 2 more unknown fields"]
        long_key = "k\x01" + "y" * 200
        issues = issues_of(await a.post("/channels/ops/append", json=note(**{long_key: 1})))
        assert issues == ['unknown field "k' + "y" * 119 + '\u2026"']
        # Array-index keys come first, as Object.keys lists them.
        issues = issues_of(await a.post("/channels/ops/append", json=note(zeta=1, **{"2": 1, "10": 1})))
        assert issues == ['unknown field "2"', 'unknown field "10"', 'unknown field "zeta"']


async def test_lengths_count_utf16_code_units(server):
    async with server.client("tok-a") as a:
        await make(a)
        ok = await a.post("/channels/ops/append", json=note(EMOJI * 8000))
        assert ok.status_code == 201
        assert issues_of(await a.post("/channels/ops/append", json=note(EMOJI * 8000 + "a"))) == [
            "body exceeds 16000 characters"
        ]
        assert issues_of(await a.post("/channels/ops/append", json=note("b", artifact=EMOJI * 513))) == [
            "artifact exceeds 1024 characters (1026)"
        ]
        assert issues_of(await a.post("/channels/ops/append", json=note("c", to=["x", EMOJI * 512 + "y"]))) == [
            "to[] entry exceeds 1024 characters"
        ]
        assert issues_of(await a.post("/channels/ops/append", json=note("d", to=["x"] * 33))) == [
            "to[] has more than 32 recipients (33)"
        ]
        assert (await a.post("/channels/ops/append", json=note("e", to=["x"] * 32))).status_code == 201
        assert (await a.post("/channels/ops/claim", json=claim_msg(EMOJI * 512))).json()["outcome"] == "granted"
        assert issues_of(await a.post("/channels/ops/claim", json=claim_msg(EMOJI * 512 + "z"))) == [
            "target exceeds 1024 characters"
        ]


async def test_control_characters(server):
    async with server.client("tok-a") as a:
        await make(a)
        body_issue = "body must not contain control characters (tab and newline are allowed)"
        for body in ("a\rb", "a\x00", "\x7f", "x\x85y", "\x1b[31m"):
            assert issues_of(await a.post("/channels/ops/append", json=note(body))) == [body_issue]
        assert (await a.post("/channels/ops/append", json=note("tab\tand\nnewline"))).status_code == 201
        assert issues_of(await a.post("/channels/ops/append", json=note("f", to=["ok", "b\x7f"]))) == [
            "to entries must not contain control characters"
        ]
        assert issues_of(await a.post("/channels/ops/append", json=note("g", artifact="u\x9f"))) == [
            "artifact must not contain control characters"
        ]
        assert issues_of(await a.post("/channels/ops/claim", json={**claim_msg("t\x00"), "body": "b"})) == [
            "target must not contain control characters"
        ]
        # Bidi overrides are not control characters (not defended, SECURITY.md).
        assert (await a.post("/channels/ops/append", json=note("\u202eevil"))).status_code == 201


async def test_claim_type_and_route_mismatch(server):
    async with server.client("tok-a") as a:
        await make(a)
        # A claim sent to append is refused first, whatever else is wrong with it.
        assert issues_of(await a.post("/channels/ops/append", json={"type": "claim", "bogus": 1})) == [
            "use claim() for claim messages"
        ]
        assignee = {"agent_id": "sess-b", "owner": "bob"}
        assert issues_of(await a.post("/channels/ops/claim", json=note())) == ['claim() requires type "claim"']
        assert issues_of(await a.post("/channels/ops/reassign", json={**note(), "assignee": assignee})) == [
            'reassignClaim() requires type "claim"'
        ]
        assert issues_of(await a.post("/channels/ops/done", json=note())) == ['markClaimDone() requires type "claim"']
        assert issues_of(await a.post("/channels/ops/claim", json=claim_msg("   "))) == [
            "claim requires a non-empty target"
        ]
        for ttl in (0, -1, 1.5, "5", True, None):
            assert issues_of(await a.post("/channels/ops/claim", json=claim_msg("l", lease_ttl=ttl))) == [
                "lease_ttl must be a positive integer (seconds)"
            ]
        assert issues_of(await a.post("/channels/ops/claim", json=claim_msg("h", heartbeat="yes"))) == [
            "heartbeat must be a boolean"
        ]
        granted = await a.post("/channels/ops/claim", json=claim_msg("float-ttl", lease_ttl=2.0))
        assert granted.json()["outcome"] == "granted"
        assert issues_of(await a.post("/channels/ops/append", json=note(lease_ttl=5))) == [
            "lease_ttl is only valid on claim messages"
        ]
        # A client v:0 is silently replaced; a client ts is overwritten.
        stored = (await a.post("/channels/ops/append", json=note("v0", v=0, ts="mine"))).json()["message"]
        assert stored["v"] == 1 and stored["ts"] != "mine"
        assert list(stored)[-4:] == ["v", "ts", "agent_id", "owner"]


# -- channels ------------------------------------------------------------------------


async def test_create_channel_validation(server):
    async with server.client("tok-a") as a:
        # D5: a missing or non-string channel is 400, not Caucus's 500.
        for body in ({}, {"channel": None}, {"channel": 5}, {"purpose": "x"}):
            error_of(await a.post("/channels", json=body), 400, "invalid_channel_name")
        for name, shown in [
            ("Bad_Name", '"Bad_Name"'),
            ("", '""'),
            ("-lead", '"-lead"'),
            ("a" * 65, '"' + "a" * 65 + '"'),
            ('quo"te', '"quo\\"te"'),
            ("ctl\x01char", '"ctlchar"'),
            ("B" * 200, '"' + "B" * 120 + '\u2026"'),
        ]:
            error = error_of(await a.post("/channels", json={"channel": name}), 400, "invalid_channel_name")
            assert error["message"] == f"Invalid channel name: {shown}{SLUG_HINT}"
        assert (await a.post("/channels", json={"channel": "a" * 64})).status_code == 201

        bad_options = [
            ({"purpose": 5}, "purpose must be a string"),
            ({"purpose": "p" * 1025}, "purpose exceeds 1024 characters"),
            ({"purpose": EMOJI * 513}, "purpose exceeds 1024 characters"),
            ({"purpose": "a\rb"}, "purpose must not contain control characters (tab and newline are allowed)"),
            ({"renderBudgetChars": 0}, "renderBudgetChars must be an integer in [1, 8000]"),
            ({"renderBudgetChars": 8001}, "renderBudgetChars must be an integer in [1, 8000]"),
            ({"renderBudgetChars": 1.5}, "renderBudgetChars must be an integer in [1, 8000]"),
            ({"renderBudgetChars": "5"}, "renderBudgetChars must be an integer in [1, 8000]"),
            ({"renderBudgetChars": True}, "renderBudgetChars must be an integer in [1, 8000]"),
            ({"renderBudgetChars": None}, "renderBudgetChars must be an integer in [1, 8000]"),
        ]
        for options, issue in bad_options:
            assert issues_of(await a.post("/channels", json={"channel": "opts", **options})) == [issue]
        created = await a.post(
            "/channels",
            json={"channel": "opts", "purpose": "tab\tnl\n", "verbosity": "LOUD", "renderBudgetChars": 8000.0,
                  "created_by": "\x01mallory"},
        )
        assert created.status_code == 201
        descriptor = created.json()
        assert descriptor["verbosity"] == "LOUD" and descriptor["renderBudgetChars"] == 8000
        assert descriptor["created_by"] == "alice"
        error = error_of(await a.post("/channels", json={"channel": "opts"}), 409, "channel_exists")
        assert error["message"] == 'Channel already exists: "opts"'
        # The slug is checked before existence.
        error_of(await a.post("/channels", json={"channel": "OPTS"}), 400, "invalid_channel_name")


async def test_channel_limit(migrated_url):
    async with running_server(settings_for(migrated_url, max_channels=2)) as live:
        async with live.client("tok-a") as a:
            await make(a, "one")
            await make(a, "two")
            error = error_of(await a.post("/channels", json={"channel": "three"}), 409, "channel_limit")
            assert error["message"] == "Channel limit reached: at most 2 channels"
            # exists and option checks come first
            error_of(await a.post("/channels", json={"channel": "one"}), 409, "channel_exists")
            assert issues_of(await a.post("/channels", json={"channel": "three", "purpose": 1})) == [
                "purpose must be a string"
            ]


async def test_channel_full(migrated_url):
    settings = settings_for(migrated_url, max_messages_per_channel=2, max_posts_per_minute=3)
    async with running_server(settings) as live:
        async with live.client("tok-a") as a, live.client("tok-b") as b:
            await make(a, "ops")
            await make(a, "solo")
            assert (await a.post("/channels/ops/append", json=note("one"))).status_code == 201
            assert (await a.post("/channels/ops/claim", json=claim_msg("held"))).json()["outcome"] == "granted"
            for attempt in range(4):  # a doomed post spends no budget (checked before the seatbelt)
                error = error_of(await a.post("/channels/ops/append", json=note(f"x{attempt}")), 409, "channel_full")
                assert error["message"] == (
                    'Channel is full: "ops" holds at most 2 messages. Start a fresh channel to continue.'
                )
            error_of(await b.post("/channels/ops/claim", json=claim_msg("free")), 409, "channel_full")
            # A held target is still reported on a full channel.
            held = await b.post("/channels/ops/claim", json=claim_msg("held"))
            assert held.json()["outcome"] == "already_claimed"
            assert (await a.post("/channels/solo/append", json=note("s"))).status_code == 201
    settings = settings_for(migrated_url, max_messages_per_channel=1)
    async with running_server(settings) as live:
        async with live.client("tok-a") as a:
            await make(a, "tiny")
            await a.post("/channels/tiny/append", json=note("only"))
            error = error_of(await a.post("/channels/tiny/append", json=note("more")), 409, "channel_full")
            assert error["message"] == 'Channel is full: "tiny" holds at most 1 message. Start a fresh channel to continue.'


# -- seatbelts ----------------------------------------------------------------------------


async def test_per_channel_rate_limit_and_recovery(migrated_url):
    async with running_server(settings_for(migrated_url, max_posts_per_minute=3)) as live:
        clock = live.clock
        async with live.client("tok-a") as a, live.client("tok-b") as b:
            await make(a, "ops")
            await make(a, "other")
            for i in range(3):
                assert (await a.post("/channels/ops/append", json=note(f"m{i}"))).status_code == 201
            limited = await a.post("/channels/ops/append", json=note("m3"))
            error = error_of(limited, 429, "rate_limited")
            assert error["message"] == (
                "Rate limit exceeded: at most 3 posts/min per agent. Wait ~60s before posting again, "
                "or batch your updates."
            )
            assert limited.headers["retry-after"] == "60"
            # Rate comes before dup; a claim is rate-checked even on a free target.
            error_of(await a.post("/channels/ops/append", json=note("m2")), 429, "rate_limited")
            error_of(await a.post("/channels/ops/claim", json=claim_msg("x")), 429, "rate_limited")
            # Budgets are per (channel, agent): bob and another channel are unaffected.
            assert (await b.post("/channels/ops/append", json=note("bob"))).status_code == 201
            assert (await a.post("/channels/other/append", json=note("elsewhere"))).status_code == 201

            clock.advance(30_500)
            limited = await a.post("/channels/ops/append", json=note("m3"))
            assert "Wait ~30s" in limited.json()["error"]["message"]
            assert limited.headers["retry-after"] == "30"
            clock.advance(29_499)
            assert limited.status_code == 429
            limited = await a.post("/channels/ops/append", json=note("m3"))
            assert limited.status_code == 429 and "Wait ~1s" in limited.json()["error"]["message"]
            assert limited.headers["retry-after"] == "1"
            clock.advance(1)  # exactly one window after the first three posts
            assert (await a.post("/channels/ops/append", json=note("m3"))).status_code == 201


async def test_global_rate_limit(migrated_url):
    settings = settings_for(migrated_url, max_posts_per_minute=3, global_max_posts_per_minute=5)
    async with running_server(settings) as live:
        async with live.client("tok-a") as a:
            for name in ("c1", "c2", "c3"):
                await make(a, name)
            for i in range(3):
                assert (await a.post("/channels/c1/append", json=note(f"a{i}"))).status_code == 201
            live.clock.advance(10_000)
            for i in range(2):
                assert (await a.post("/channels/c2/append", json=note(f"b{i}"))).status_code == 201
            limited = await a.post("/channels/c3/append", json=note("c"))
            error = error_of(limited, 429, "rate_limited")
            assert error["message"] == (
                "Rate limit exceeded: at most 5 posts/min per agent across all channels. Wait ~50s before "
                "posting again, or batch your updates."
            )
            assert limited.headers["retry-after"] == "50"
            # The channel scope is reported first when both are exhausted.
            error = error_of(await a.post("/channels/c1/append", json=note("d")), 429, "rate_limited")
            assert "across all channels" not in error["message"]
            live.clock.advance(50_000)
            assert (await a.post("/channels/c3/append", json=note("c"))).status_code == 201


async def test_create_rate_limit(migrated_url):
    settings = settings_for(migrated_url, max_channel_creates_per_minute=2)
    async with running_server(settings) as live:
        async with live.client("tok-a") as a, live.client("tok-b") as b:
            await make(a, "one")
            # Rejected creates spend no budget.
            error_of(await a.post("/channels", json={"channel": "one"}), 409, "channel_exists")
            error_of(await a.post("/channels", json={"channel": "BAD"}), 400, "invalid_channel_name")
            issues_of(await a.post("/channels", json={"channel": "x", "purpose": 1}))
            await make(a, "two")
            limited = await a.post("/channels", json={"channel": "three"})
            error = error_of(limited, 429, "rate_limited")
            assert error["message"] == (
                "Rate limit exceeded: at most 2 channel creates/min per owner. Wait ~60s before creating "
                "another channel."
            )
            assert limited.headers["retry-after"] == "60"
            await make(b, "bobs")  # per owner
            live.clock.advance(60_000)
            await make(a, "three")


async def test_duplicate_post_guard(server):
    async with server.client("tok-a") as a, server.client("tok-b") as b:
        await make(a)
        assert (await a.post("/channels/ops/append", json=note("same"))).status_code == 201
        error = error_of(await a.post("/channels/ops/append", json=note("  same\n")), 409, "duplicate_post")
        assert error["message"] == DUPLICATE
        # A rejected post does not become the baseline; the type is part of the key.
        error_of(await a.post("/channels/ops/append", json=note("same")), 409, "duplicate_post")
        assert (await a.post("/channels/ops/append", json={**note("same"), "type": "finding"})).status_code == 201
        # A-B-A is allowed.
        assert (await a.post("/channels/ops/append", json=note("A"))).status_code == 201
        assert (await a.post("/channels/ops/append", json=note("B"))).status_code == 201
        assert (await a.post("/channels/ops/append", json=note("A"))).status_code == 201
        # Another agent has its own baseline; claims never touch it.
        assert (await b.post("/channels/ops/append", json=note("A"))).status_code == 201
        assert (await a.post("/channels/ops/claim", json=claim_msg("c"))).status_code == 200
        error_of(await a.post("/channels/ops/append", json=note("A")), 409, "duplicate_post")
        # After a quiet window and a sweep, the baseline is forgotten.
        server.clock.advance(60_000)
        assert (await b.post("/channels/ops/append", json=note("tick"))).status_code == 201
        server.clock.advance(60_000)
        assert (await b.post("/channels/ops/append", json=note("tock"))).status_code == 201
        assert (await a.post("/channels/ops/append", json=note("A"))).status_code == 201


# -- reads ------------------------------------------------------------------------------


async def test_read_cursor_and_limit_rules(server):
    async with server.client("tok-a") as a:
        await make(a)
        for i in range(3):
            await a.post("/channels/ops/append", json=note(f"r{i}"))
        cursor_error = "cursor must be an integer in [0, 3]"
        for body in ({}, {"cursor": -1}, {"cursor": 4}, {"cursor": 1.5}, {"cursor": "0"}, {"cursor": True},
                     {"cursor": None}, {"limit": 1}):
            error = error_of(await a.post("/channels/ops/read", json=body), 400, "invalid_cursor")
            assert error["message"] == cursor_error, body
        error = error_of(await a.post("/channels/ops/read"), 400, "invalid_cursor")  # absent body = {}
        assert error["message"] == cursor_error
        for limit in (0, -1, 1.5, "2", None, True, False):
            error = error_of(await a.post("/channels/ops/read", json={"cursor": 0, "limit": limit}), 400,
                             "invalid_cursor")
            assert error["message"] == "limit must be a positive integer", limit
        for body in (b"[]", b"[0]", b"0", b'"x"', b"null", b"false"):
            error = error_of(await a.post("/channels/ops/read", content=body), 400, "invalid_request")
            assert error["message"] == "request body must be a JSON object"
        page = (await a.post("/channels/ops/read", json={"cursor": 1.0, "limit": 1.0})).json()
        assert [m["body"] for m in page["messages"]] == ["r1"] and page["cursor"] == 2
        page = (await a.post("/channels/ops/read", json={"cursor": 2, "limit": 100})).json()
        assert [m["body"] for m in page["messages"]] == ["r2"] and page["cursor"] == 3
        assert (await a.post("/channels/ops/read", json={"cursor": 3})).json() == {"messages": [], "cursor": 3}
        # subscribe mints the head; earlier messages are invisible from it
        cursor = (await a.post("/channels/ops/subscribe")).json()["cursor"]
        assert (await a.post("/channels/ops/read", json={"cursor": cursor})).json() == {"messages": [], "cursor": 3}


async def test_read_limit_is_silently_clamped_at_500(migrated_url):
    settings = settings_for(migrated_url, max_posts_per_minute=10_000)
    async with running_server(settings) as live:
        async with live.client("tok-a") as a:
            await make(a)

            async def post(i: int) -> None:
                response = await a.post("/channels/ops/append", json=note(f"bulk {i}"))
                assert response.status_code == 201

            async with trio.open_nursery() as nursery:
                for i in range(501):
                    nursery.start_soon(post, i)
            page = (await a.post("/channels/ops/read", json={"cursor": 0, "limit": 10_000})).json()
            assert len(page["messages"]) == 500 and page["cursor"] == 500
            assert "hasMore" not in page
            page = (await a.post("/channels/ops/read", json={"cursor": 0})).json()
            assert len(page["messages"]) == 500
            page = (await a.post("/channels/ops/read", json={"cursor": 500})).json()
            assert len(page["messages"]) == 1 and page["cursor"] == 501
            assert len({m["body"] for m in (await a.post("/channels/ops/read", json={"cursor": 1})).json()["messages"]}) == 500
