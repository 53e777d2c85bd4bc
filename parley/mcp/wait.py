"""``parley_wait`` (contracts/mcp.md §8.1): block until a message lands, woken by the commit.

One pass reads each watched channel from its wait cursor (so nothing
committed before the call is missed). If nothing deliverable is there, one
SSE tail per channel (``/channels/:c/stream?since=<cursor>``, the SDK's
:meth:`~parley.client.AsyncParley.tail`) is opened and the first deliverable
frame wakes the call and is its result (whatever else landed meanwhile comes
with the next call's first read). No polling loop: the server pushes the frame
after its commit. Own posts advance the cursor but never wake or appear.
Cursors are committed only when the call returns, so a cancelled wait
advances nothing.
"""

from __future__ import annotations

from typing import Any

import trio

from . import sanitize
from .agent import Agent, ToolError

MAX_ITEMS = 100
PROGRESS_EVERY = 10.0
STREAM_ENDED = "The backbone closed the stream (restarting?); call parley_wait again."


async def _collect(
    agent: Agent, channels: list[str], start: dict[str, int]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Deliverable items after ``start`` (at most :data:`MAX_ITEMS`) and the cursors past them."""
    items: list[dict[str, Any]] = []
    cursors = dict(start)
    for channel in channels:
        while len(items) < MAX_ITEMS:
            page = await agent.client.read(channel, cursors[channel], MAX_ITEMS - len(items))
            if not page["messages"]:
                break
            position = cursors[channel]
            for message in page["messages"]:
                position += 1
                if message.get("msg_id") not in agent.written:
                    items.append({"channel": channel, "cursor": position, "message": sanitize.message(message)})
            cursors[channel] = page["cursor"]
            if len(items) >= MAX_ITEMS:
                cursors[channel] = items[-1]["cursor"]
    return items, cursors


async def _first_frame(
    agent: Agent, channels: list[str], start: dict[str, int]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Tail every channel; return with the first frame that is not one of our own posts.

    The frame itself is the result (no second read): own posts before it only
    advance that channel's cursor.
    """
    found: list[dict[str, Any]] = []
    cursors = dict(start)
    async with trio.open_nursery() as nursery:

        async def watch(channel: str) -> None:
            async with agent.client.tail(channel, since=start[channel]) as tail:
                async for item in tail:
                    if found:
                        return
                    message = item["message"]
                    cursors[channel] = item["cursor"]
                    if message.get("msg_id") not in agent.written:
                        found.append({"channel": channel, "cursor": item["cursor"], "message": sanitize.message(message)})
                        nursery.cancel_scope.cancel()
                        return

        for channel in channels:
            nursery.start_soon(watch, channel)
    if not found:  # every tail ended without a frame: the backbone is going away
        raise ToolError(STREAM_ENDED)
    return found, cursors


async def _progress(ctx: Any, timeout: float) -> None:
    elapsed = 0.0
    while True:
        await trio.sleep(PROGRESS_EVERY)
        elapsed += PROGRESS_EVERY
        await ctx.progress(elapsed, float(timeout))


async def wait_tool(agent: Agent, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    channel = args.get("channel")
    channels = agent.watched() if channel is None else [agent.guard(channel)]
    timeout = args.get("timeout", 30)
    cursors = {c: agent.wait_cursors.get(c, 0) for c in channels}
    items, cursors = await _collect(agent, channels, cursors)
    timed_out = False
    if not items and timeout > 0:
        with trio.move_on_after(timeout) as scope:
            async with trio.open_nursery() as nursery:
                if ctx is not None and getattr(ctx, "progress", None) is not None:
                    nursery.start_soon(_progress, ctx, timeout)
                items, cursors = await _first_frame(agent, channels, cursors)
                nursery.cancel_scope.cancel()
        timed_out = scope.cancelled_caught and not items
    elif not items:
        timed_out = True
    agent.wait_cursors.update(cursors)
    return {"messages": items, "cursors": dict(cursors), "timed_out": timed_out}
