"""Helpers of the outbox tests: the child client process, handshakes, and the exactly-once read-back."""

from __future__ import annotations

import signal
import subprocess
import sys

from parley.client import Outbox, Parley
from tests.support.process import ROOT, clean_env

FAST = {"PARLEY_MAX_POSTS_PER_MINUTE": "10000", "PARLEY_GLOBAL_MAX_POSTS_PER_MINUTE": "10000"}
CHANNELS = ("alpha", "beta")


def outbox_child(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.outbox_child", *args],
        cwd=ROOT,
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen, wanted, limit: int = 1000) -> list[str]:
    lines = []
    for _ in range(limit):
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child exited early: {lines}; stderr: {proc.stderr.read()[-2000:]}")
        lines.append(line.strip())
        if wanted(lines):
            return lines
    raise AssertionError(f"no handshake in {lines}")


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()


def stored_ids(url: str, channel: str) -> list[str]:
    with Parley(url, "tok-a") as client:
        return [m["msg_id"] for page in client.read_all(channel) for m in page["messages"]]


def fill(url: str, box: Outbox, per_channel: int) -> dict[str, list[str]]:
    with Parley(url, "tok-a") as client:
        for channel in CHANNELS:
            client.create_channel(channel)
    expected: dict[str, list[str]] = {c: [] for c in CHANNELS}
    for i in range(per_channel):
        for channel in CHANNELS:
            expected[channel].append(box.enqueue(channel, {"body": f"{channel} {i}"}))
    return expected


def assert_exactly_once_in_order(url: str, expected: dict[str, list[str]]) -> None:
    for channel, ids in expected.items():
        assert stored_ids(url, channel) == ids
