"""What one 500-message read page costs outside the web stack (ADR-0041).

    python benchmarks/page_encode_bench.py

Prints, for 500 messages shaped like ``http_bench``'s (``note()`` plus the
server's ``v``/``ts``/``agent_id``/``owner``): the page encoded with
``orjson.dumps`` (the old route), the page assembled from ``EncodedLog``'s
cached bytes (the new route; both are asserted byte-identical), and, for
scale, one blocking ``sendall`` of a page-sized buffer over loopback TCP with
a reader thread. Best of 5 repeats; also the load average (a busy machine
slows every figure, the first two alike).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import orjson  # noqa: E402

import http_bench as hb  # noqa: E402
from _harness import load_average  # noqa: E402
from parley.actors.encoded_log import EncodedBudget, EncodedLog  # noqa: E402
from parley.http.channels import page_body  # noqa: E402

PAGE = 500
NUMBER = 2_000


def messages() -> list[dict]:
    out = []
    for n in range(PAGE):
        m = hb.note("seed", n)
        m.update(v=1, ts="2026-12-02T01:00:00.000Z#%012d" % n, agent_id=f"agent-{n % 64}", owner="owner")
        out.append(m)
    return out


def loopback_send_ms(size: int, count: int = 2_000) -> float:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    data = b"x" * size

    def reader() -> None:
        got = 0
        while got < count * size:
            got += len(client.recv(262_144))

    thread = threading.Thread(target=reader)
    thread.start()
    t0 = time.perf_counter()
    for _ in range(count):
        server.sendall(data)
    thread.join()
    elapsed = time.perf_counter() - t0
    for s in (client, server, listener):
        s.close()
    return elapsed / count * 1000


def main() -> int:
    msgs = messages()
    log = EncodedLog(msgs, EncodedBudget())
    body = page_body(log.raw(0, PAGE), PAGE)
    assert body == orjson.dumps({"messages": msgs, "cursor": PAGE})
    encode = min(timeit.repeat(lambda: orjson.dumps({"messages": msgs[0:PAGE], "cursor": PAGE}), number=NUMBER, repeat=5)) / NUMBER
    join = min(timeit.repeat(lambda: page_body(log.raw(0, PAGE), PAGE), number=NUMBER, repeat=5)) / NUMBER
    send = loopback_send_ms(len(body))
    print(f"load average {load_average()}")
    print(f"{PAGE}-message page, {len(body):,} bytes")
    print(f"  orjson.dumps of the page        {encode * 1e6:8.1f} us")
    print(f"  joined from cached bytes        {join * 1e6:8.1f} us   ({join / encode:.2f}x)")
    print(f"  loopback sendall of its size    {send * 1e3:8.1f} us   (for scale)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
