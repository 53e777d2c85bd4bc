"""Content-addressed artifacts over the wire (channels.md §2.7, §3 putArtifact, §4.2).

PUT is token-gated before the body is read, streams the body with a 1 MiB
running cap, and answers 201 for a new blob and 200 for a re-upload; GET is
open and returns the exact bytes as ``application/octet-stream``.
"""

from __future__ import annotations

import hashlib

from tests.support.server import running_server
from tests.support.server import test_settings as settings_for

MIB = 1_048_576
INTEGRITY = {
    "code": "artifact_integrity",
    "message": "Artifact integrity check failed: the uploaded bytes do not match the supplied content "
    "address (sha256).",
}
NO_ARTIFACT = {"error": {"code": "not_found", "message": "no such artifact"}}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_put_then_dedup_then_get(server):
    blob = bytes(range(256)) * 4
    digest = sha(blob)
    async with server.client("tok-a") as a, server.client() as anon:
        await a.post("/channels", json={"channel": "ops"})
        await a.post("/channels", json={"channel": "other"})
        first = await a.put(f"/channels/ops/artifacts/{digest}", content=blob)
        assert first.status_code == 201
        assert first.headers["content-type"] == "application/json; charset=utf-8"
        assert first.json() == {"uri": f"caucus://artifact/ops/{digest}", "sha256": digest, "size": len(blob)}
        async with server.client("tok-b") as b:  # anyone may re-upload; it is free
            again = await b.put(f"/channels/ops/artifacts/{digest}", content=blob)
        assert again.status_code == 200 and again.json() == first.json()

        got = await anon.get(f"/channels/ops/artifacts/{digest}")
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/octet-stream"
        assert got.headers["content-length"] == str(len(blob))
        assert got.content == blob
        # Stores are per channel.
        missing = await anon.get(f"/channels/other/artifacts/{digest}")
        assert missing.status_code == 404 and missing.json() == NO_ARTIFACT
        assert (await anon.get(f"/channels/ops/artifacts/{'0' * 64}")).json() == NO_ARTIFACT
        assert (await anon.get("/channels/ops/artifacts/not-a-sha")).json() == NO_ARTIFACT
        unknown = await anon.get(f"/channels/ghost/artifacts/{digest}")
        assert unknown.status_code == 404
        assert unknown.json()["error"] == {"code": "unknown_channel", "message": 'Unknown channel: "ghost"'}

        empty = await a.put(f"/channels/ops/artifacts/{sha(b'')}", content=b"")
        assert empty.status_code == 201 and empty.json()["size"] == 0
        assert (await anon.get(f"/channels/ops/artifacts/{sha(b'')}")).content == b""


async def test_integrity_errors(server):
    blob = b"payload"
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
        for bad in (sha(blob).upper(), sha(blob)[:63], sha(blob) + "0", "g" * 64, "x"):
            response = await a.put(f"/channels/ops/artifacts/{bad}", content=blob)
            assert response.status_code == 400, bad
            assert response.json() == {"error": INTEGRITY}
        mismatch = await a.put(f"/channels/ops/artifacts/{sha(b'other')}", content=blob)
        assert mismatch.status_code == 400 and mismatch.json() == {"error": INTEGRITY}
        ghost = await a.put(f"/channels/ghost/artifacts/{sha(blob)}", content=blob)
        assert ghost.status_code == 404 and ghost.json()["error"]["code"] == "unknown_channel"
        bad_name = await a.put(f"/channels/Nope/artifacts/{sha(blob)}", content=blob)
        assert bad_name.status_code == 400 and bad_name.json()["error"]["code"] == "invalid_channel_name"


async def test_blob_cap_is_one_mib_mid_stream(server):
    exact = b"a" * MIB
    over = exact + b"b"
    too_large = {"error": {"code": "artifact_too_large", "message": "artifact exceeds 1048576 bytes"}}
    async with server.client("tok-a") as a:
        await a.post("/channels", json={"channel": "ops"})
        ok = await a.put(f"/channels/ops/artifacts/{sha(exact)}", content=exact)
        assert ok.status_code == 201 and ok.json()["size"] == MIB

        response = await a.put(f"/channels/ops/artifacts/{sha(over)}", content=over)
        assert response.status_code == 413 and response.json() == too_large
        assert response.headers["connection"] == "close"

    async def chunked():  # no content-length: the running cap trips mid-stream
        for _ in range(17):
            yield b"c" * 65_536

    async with server.client("tok-a") as a:
        response = await a.put(f"/channels/ops/artifacts/{'0' * 64}", content=chunked())
        assert response.status_code == 413 and response.json() == too_large
        # The cap comes before the backbone's checks (Caucus buffers, then calls putArtifact).
        response = await a.put(f"/channels/ghost/artifacts/{'0' * 64}", content=over)
        assert response.status_code == 413
    async with server.client() as anon:  # the token is checked before the body is read
        response = await anon.put(f"/channels/ops/artifacts/{sha(over)}", content=over)
        assert response.status_code == 401


async def test_channel_and_global_caps(migrated_url):
    settings = settings_for(migrated_url, max_channel_artifact_bytes=10, max_total_artifact_bytes=15)
    async with running_server(settings) as live:
        async with live.client("tok-a") as a:
            for name in ("one", "two"):
                await a.post("/channels", json={"channel": name})
            six, five, four = b"6" * 6, b"5" * 5, b"4" * 4
            assert (await a.put(f"/channels/one/artifacts/{sha(six)}", content=six)).status_code == 201
            full = await a.put(f"/channels/one/artifacts/{sha(five)}", content=five)
            assert full.status_code == 413
            assert full.json()["error"] == {
                "code": "artifact_too_large",
                "message": "Artifact too large: this channel's artifact store is capped at 10 bytes.",
            }
            assert (await a.put(f"/channels/one/artifacts/{sha(four)}", content=four)).status_code == 201
            # Re-uploading is charged nothing, even at the cap.
            assert (await a.put(f"/channels/one/artifacts/{sha(six)}", content=six)).status_code == 200
            assert (await a.put(f"/channels/two/artifacts/{sha(five)}", content=five)).status_code == 201
            total = await a.put(f"/channels/two/artifacts/{sha(b'x')}", content=b"x")
            assert total.status_code == 413
            assert total.json()["error"]["message"] == (
                "Artifact too large: the backbone's artifact store is capped at 15 bytes."
            )
