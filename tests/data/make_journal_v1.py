"""How tests/data/journal-v1.ndjson was made (kept for provenance; not run by CI).

Run once with the version that wrote it:
    python -m tests.data.make_journal_v1
It drives a real server over a socket with a ManualClock, exports the journal
and records the state every stream folds to, so later versions must rebuild
exactly that state from these bytes (tests/data/test_old_journals.py).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import orjson
import trio

from parley.journal import tools
from parley.journal.engine import make_engine
from tests.data.folds import fold_all
from tests.support.messages import ulid
from tests.support.server import running_server, test_settings

HERE = Path(__file__).parent


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/v1.db"
        async with running_server(test_settings(url)) as server:
            async with server.client("tok-a") as a, server.client("tok-b") as b, server.client() as admin:
                admin.headers["Authorization"] = "Bearer admin-secret"
                await a.post("/channels", json={"channel": "ops", "purpose": "incident"})
                await b.post("/channels", json={"channel": "side"})
                for i in range(5):
                    await (a if i % 2 else b).post(
                        "/channels/ops/append",
                        json={"type": "finding" if i % 2 else "question", "body": f"m{i}", "msg_id": ulid(i + 1)},
                    )
                claim = {"type": "claim", "body": "db", "target": "db", "lease_ttl": 5}
                await a.post("/channels/ops/claim", json={**claim, "msg_id": ulid(20)})
                server.clock.advance(6000)
                await b.post("/channels/ops/claim", json={**claim, "msg_id": ulid(21)})
                await b.post(
                    "/channels/ops/reassign",
                    json={**claim, "msg_id": ulid(22), "assignee": {"agent_id": "sess-c", "owner": "carol"}},
                )
                await a.post("/channels/ops/claim", json={**claim, "target": "cache", "msg_id": ulid(23)})
                await a.post("/channels/ops/done", json={**claim, "target": "cache", "msg_id": ulid(24)})
                blob = b"artifact bytes"
                await a.put(f"/channels/ops/artifacts/{hashlib.sha256(blob).hexdigest()}", content=blob)
                await b.post("/channels/side/archive")
                await admin.post("/admin/tokens", json={"agent_id": "minted", "owner": "dave"})
                started = (await a.post("/v1/session", json={
                    "actions": [{"subscribe": {"channel": "ops", "from": "start"}}], "max": 3,
                })).json()
                await a.post(
                    f"/v1/session/{started['sessionId']}/message",
                    json={"continuationToken": started["continuationToken"], "actions": [
                        {"append": {"channel": "ops", "message": {"type": "note", "body": "from a session", "msg_id": ulid(30)}}}
                    ]},
                )
        engine = make_engine(url)
        with open(HERE / "journal-v1.ndjson", "wb") as out:
            tools.export_events(engine, out)
        (HERE / "journal-v1.state.json").write_bytes(
            orjson.dumps(fold_all(engine), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )
        engine.dispose()


if __name__ == "__main__":
    trio.run(main)
