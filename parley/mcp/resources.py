"""Channels as MCP resources: ``parley://channel/<name>`` (home and joined channels).

``resources/read`` gives the descriptor and the latest page of messages;
``resources/subscribe`` starts one SSE tail (the SDK's) whose every frame
sends ``notifications/resources/updated`` for that URI, until
``resources/unsubscribe`` or the end of the MCP session.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mcp_types as types
import trio
from mcp.shared.exceptions import MCPError

from ..client import ParleyError
from . import sanitize
from .agent import Agent

PREFIX = "parley://channel/"
RECENT = 50
log = logging.getLogger("parley.mcp")


def uri_of(channel: str) -> str:
    return PREFIX + channel


def _channel(agent: Agent, uri: str) -> str:
    uri = str(uri)
    channel = uri[len(PREFIX) :] if uri.startswith(PREFIX) else None
    if not channel or channel not in agent.watched():
        raise MCPError(types.INVALID_PARAMS, "Unknown resource: only parley://channel/<home or joined> exists")
    return channel


async def _watch(agent: Agent, session: Any, channel: str, scope: trio.CancelScope) -> None:
    with scope:
        try:
            async with agent.client.tail(channel) as tail:
                async for _item in tail:
                    await session.send_resource_updated(uri_of(channel))
        except ParleyError as error:
            log.warning("resource subscription to %s ended: %s", channel, error.code)


def handlers(agent_for: Any) -> dict[str, Any]:
    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        agent = await agent_for(ctx)
        return types.ListResourcesResult(
            resources=[
                types.Resource(uri=uri_of(c), name=c, description=f"parley channel {c}", mime_type="application/json")
                for c in agent.watched()
            ]
        )

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        agent = await agent_for(ctx)
        channel = _channel(agent, params.uri)
        try:
            descriptor = await agent.client.describe(channel)
            page = await agent.client.read(channel, max(0, int(descriptor.get("head") or 0) - RECENT))
        except ParleyError as error:
            raise MCPError(types.INTERNAL_ERROR, error.message) from None
        body = {
            "channel": sanitize.descriptor(descriptor),
            "cursor": page["cursor"],
            "messages": [sanitize.message(m) for m in page["messages"]],
        }
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=params.uri, mime_type="application/json", text=text)]
        )

    async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        agent = await agent_for(ctx)
        channel = _channel(agent, params.uri)
        uri = uri_of(channel)
        if agent.task_group is None:
            raise MCPError(types.INVALID_REQUEST, "resource subscriptions are not available on this transport")
        if uri not in agent.watchers:
            scope = trio.CancelScope()
            agent.watchers[uri] = scope
            agent.task_group.start_soon(_watch, agent, ctx.session, channel, scope)
        return types.EmptyResult()

    async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        agent = await agent_for(ctx)
        scope = agent.watchers.pop(str(params.uri), None)
        if scope is not None:
            scope.cancel()
        return types.EmptyResult()

    return {
        "on_list_resources": list_resources,
        "on_read_resource": read_resource,
        "on_subscribe_resource": subscribe,
        "on_unsubscribe_resource": unsubscribe,
    }
