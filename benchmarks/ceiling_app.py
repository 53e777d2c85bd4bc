"""The web-stack ceiling: a bare Quart-Trio route served exactly like parley.

    PORT=0 python benchmarks/ceiling_app.py   # prints "ceiling listening on http://HOST:PORT"

Same app class (QuartTrio), same catch-all route shape as ``parley.http.app``
(one ``<everything:path>`` rule for every method), same body handling (the
streamed body is buffered and parsed with orjson), same Hypercorn config
(``parley.server.hypercorn_config``: trio worker, one process, keep-alive 5 s,
no access log). Each request answers 201 with ``{"message": <parsed body>,
"cursor": N}`` (so the response is about as large as parley's append answer)
and does no other work: no auth, no validation, no actor, no journal, no
metrics, no per-request log line. The ratio parley / ceiling is how much of
the stack's request budget parley keeps.
"""

from __future__ import annotations

import itertools
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import orjson  # noqa: E402
import trio  # noqa: E402
from hypercorn.trio import serve  # noqa: E402
from quart import Response, request  # noqa: E402
from quart_trio import QuartTrio  # noqa: E402
from werkzeug.routing import BaseConverter  # noqa: E402

from parley.config import Settings  # noqa: E402
from parley.server import display_url, hypercorn_config  # noqa: E402

JSON_TYPE = "application/json; charset=utf-8"
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


class _Everything(BaseConverter):
    regex = ".*"
    part_isolating = False


def create_app() -> QuartTrio:
    app = QuartTrio("ceiling")
    app.config["MAX_CONTENT_LENGTH"] = None
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = 30
    app.url_map.converters["everything"] = _Everything
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    counter = itertools.count(1)

    async def entry(path: str = ""):
        chunks = [chunk async for chunk in request.body]
        raw = b"".join(chunks)
        body = orjson.loads(raw) if raw else None
        payload = orjson.dumps({"message": body, "cursor": next(counter)})
        return Response(payload, status=201, content_type=JSON_TYPE)

    app.add_url_rule("/", "root", entry, methods=ALL_METHODS)
    app.add_url_rule("/<everything:path>", "all", entry, methods=ALL_METHODS)
    return app


async def main() -> None:
    port = int(os.environ.get("PORT") or "0")
    host = os.environ.get("HOST") or "127.0.0.1"
    config = hypercorn_config(Settings(host=host, port=port))
    app = create_app()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, app, config)
        print(f"ceiling listening on {display_url(binds[0])}", flush=True)


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
