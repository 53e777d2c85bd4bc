"""A client process for the outbox crash tests (``python -m tests.reliability.outbox_child …``).

``drain PATH URL TOKEN [--hold before|after N]``: drains the outbox with
the blocking client and prints ``settled <state> <client_id>`` per settled
row and ``retry <error_code> <client_id>`` per transient failure. With
``--hold after N`` it stops dead right after the server answered the Nth
send, before the outbox records that answer, prints ``held`` and waits to be
killed (the window a crash must survive); ``--hold before N`` stops after the
Nth row is marked ``inflight``, before it is sent.

``enqueue PATH CHANNEL TAG N SHARED``: waits for ``go`` on stdin (so several
processes start together), opens the outbox, enqueues N messages ``TAG-i`` and one with the
shared msg_id ``SHARED``, prints ``id <client_id>`` per row and
``shared <outcome>``.
"""

from __future__ import annotations

import sys
import threading

import httpx

from parley.client import Outbox, Parley


class Holding(httpx.BaseTransport):
    """A real transport that blocks forever at the Nth POST (before sending it, or after its answer)."""

    def __init__(self, when: str, nth: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.when = when
        self.nth = nth
        self.seen = 0

    def _hold(self) -> None:
        print("held", flush=True)
        threading.Event().wait()  # until SIGKILL

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.seen += 1
            if self.seen == self.nth and self.when == "before":
                self._hold()
        response = self.inner.handle_request(request)
        if request.method == "POST" and self.seen == self.nth and self.when == "after":
            response.read()
            self._hold()
        return response


def drain(path: str, url: str, token: str, hold: list[str]) -> int:
    transport = Holding(hold[0], int(hold[1])) if hold else None
    with Outbox(path, patience=30) as box, Parley(url, token, transport=transport) as client:
        result = box.drain(
            client,
            on_settled=lambda row: print(f"settled {row.state} {row.client_id}", flush=True),
            on_retry=lambda row: print(f"retry {row.error_code} {row.client_id}", flush=True),
        )
    print(f"result delivered={len(result.delivered)} dead={len(result.dead)} pending={result.pending}", flush=True)
    return 0 if result.pending == 0 else 1


def enqueue(path: str, channel: str, tag: str, count: int, shared: str) -> int:
    assert sys.stdin.readline().strip() == "go"
    with Outbox(path) as box:  # opened (and maybe created) only once all are released
        for i in range(count):
            print(f"id {box.enqueue(channel, {'body': f'{tag}-{i}'})}", flush=True)
        print(f"shared {box.accept(channel, {'body': 'shared', 'msg_id': shared}).outcome}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "drain":
        hold = argv[5:7] if len(argv) > 4 and argv[4] == "--hold" else []
        return drain(argv[1], argv[2], argv[3], hold)
    return enqueue(argv[1], argv[2], argv[3], int(argv[4]), argv[5])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
