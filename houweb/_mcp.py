"""
MCP tools (``run(mcp=True)``, ``--mcp``): every API function a port shows is
also a tool at ``/mcp``, over MCP's Streamable HTTP transport.

The protocol is the official MCP Python SDK's (``mcp`` on PyPI): its
low-level ``Server`` answers ``initialize``, ``tools/list`` and
``tools/call``, and its ``StreamableHTTPSessionManager`` (an ASGI app) the
transport: sessions, SSE streams, JSON-RPC framing. houweb supplies only the
tools: ``tools/list`` from the same describer as ``/api/openapi.json``
(:func:`houweb._describe.describe`: its ``parameters`` are the input
schema), ``tools/call`` through the same dispatch as ``/api``
(:func:`houweb._api.call_function`: pool or reactor, ``arg_types``, result
encoding; an :class:`~houweb.APIError` or bad arguments become a tool error).
The answer becomes the tool's result in a pool thread too (joining a pieced
JSON result, decoding it, base64 for a binary one): nothing on the reactor
thread grows with the result but the SDK's own framing of its message.

The app is mounted with houweb's ASGI support on every port of the server
(one of its own paths, as the status page's), so the
header-time guard (Host allow-list, Origin check, token) runs before the
SDK sees a request, and a port lists only the functions it serves. The
SDK's own DNS-rebinding check is left off: houweb's guard is that check,
configured once for the whole server.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import TYPE_CHECKING, Any

from mcp import types
from mcp.server.lowlevel import Server as MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool

from ._api import call_function, visible_function
from ._asgi import ASGITarget
from ._coroutines import event_loop
from ._describe import Description, describe
from ._response import Response
from ._site import Call

if TYPE_CHECKING:
    from ._server import RunningServer

#: Where the tools are served.
MCP_PATH = "/mcp"


class MCPTools:
    """
    The MCP endpoint of one server: mounts :func:`mcp_app` at ``/mcp`` and
    runs the SDK's session manager from the server's start to its stop.
    """

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self._reactor = server.reactor
        self.manager: StreamableHTTPSessionManager | None = None
        self._ready: asyncio.Future[None] | None = None
        self._stop: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        server.context.extensions["mcp"] = self
        # This server's own path, not the (shared) registry's: another server
        # made from the same registry later, without mcp=True, has no /mcp.
        server.context.own_targets[MCP_PATH] = ASGITarget(mcp_app, MCP_PATH)

    def start(self) -> None:
        loop = event_loop(self._reactor)
        protocol = MCPServer(
            "houweb",
            instructions="The API functions of this houweb server, as tools.",
            on_list_tools=_list_tools,
            on_call_tool=_call_tool,
        )
        self.manager = StreamableHTTPSessionManager(app=protocol, security_settings=None)
        self._ready = loop.create_future()
        self._stop = loop.create_future()
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        assert self.manager is not None and self._ready is not None and self._stop is not None
        try:
            async with self.manager.run():
                self._ready.set_result(None)
                await self._stop
        finally:
            if not self._ready.done():
                self._ready.set_result(None)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer one HTTP request for ``/mcp`` with the SDK's transport."""
        assert self._ready is not None and self.manager is not None
        await asyncio.shield(self._ready)
        await self.manager.handle_request(scope, receive, send)

    def stop(self) -> Deferred[Any]:
        if self._task is None or self._stop is None:
            return succeed(None)
        if not self._stop.done():
            self._stop.set_result(None)
        return Deferred.fromFuture(self._task)


async def mcp_app(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI app mounted at ``/mcp``: the running server's :class:`MCPTools`."""
    if scope["type"] == "lifespan":
        raise RuntimeError("houweb's MCP tools live with the server, not an ASGI lifespan")
    tools: MCPTools = scope["extensions"]["houweb"]["context"].extensions["mcp"]
    if scope["type"] != "http":
        await send({"type": "websocket.close", "code": 1003})
        return
    await tools.handle(scope, receive, send)


def _call_of(ctx: Any) -> Call:
    """:returns: the houweb call of the HTTP request that carried an MCP message."""
    return ctx.request.scope["extensions"]["houweb"]["call"]  # type: ignore[no-any-return]


def _tool(description: Description) -> types.Tool:
    text = "\n\n".join(part for part in (description.summary, description.doc) if part)
    return types.Tool(
        name=description.name,
        description=text or f"houweb API function {description.name}{description.signature}",
        input_schema=description.parameters,
    )


async def _list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    call = _call_of(ctx)
    context = call.context
    visible = context.registry.functions(
        call.request.port(), context.main_port, context.main_aliases
    )
    return types.ListToolsResult(tools=[_tool(describe(visible[name])) for name in sorted(visible)])


async def _call_tool(ctx: Any, params: Any) -> types.CallToolResult:
    call = _call_of(ctx)
    target = visible_function(call, params.name)
    if target is None:
        return _error(f"unknown tool {params.name!r}")
    arguments = dict(params.arguments or {})
    args, kwargs = _split(describe(target), arguments)
    loop = asyncio.get_running_loop()
    response = await call_function(call, target, args, kwargs).asFuture(loop)
    context = call.context
    result: Deferred[types.CallToolResult] = deferToThreadPool(
        context.reactor,
        context.pool,  # type: ignore[arg-type]
        _tool_result,
        response,
        target.name,
    )
    return await result.asFuture(loop)


def _tool_result(response: Response, name: str) -> types.CallToolResult:
    """
    :returns: the tool's result for ``/api``'s answer ``response``: its text
        (JSON), a resource (a binary answer, base64) or its error. Run in a
        pool thread: it joins, decodes and encodes the whole body.
    """
    body = response.body()
    if response.status() != 200:
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace")
        text = message if isinstance(message, str) else json.dumps(message)
        return _error(text)
    media_type = response.header("Content-Type").split(";")[0].strip()
    if media_type == "application/json":
        return types.CallToolResult(content=[types.TextContent(type="text", text=body.decode())])
    blob = types.BlobResourceContents(
        uri=f"houweb:/api/{name}", mime_type=media_type, blob=base64.b64encode(body).decode()
    )
    return types.CallToolResult(content=[types.EmbeddedResource(type="resource", resource=blob)])


def _split(description: Description, arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """
    :returns: the positional and keyword arguments a tool's named arguments
        mean: positional-only parameters, and ``*args`` (an array), go by
        position; the rest by name.
    """
    args: list[Any] = []
    for name in description.positional_only:
        if name not in arguments:
            break
        args.append(arguments.pop(name))
    if description.var_positional and description.var_positional in arguments:
        extra = arguments.pop(description.var_positional)
        named = [n for n in description.order if n not in description.positional_only]
        named = [
            n
            for n in named
            if n not in description.keyword_only and n != description.var_positional
        ]
        args += [arguments.pop(n) for n in named if n in arguments]
        args += list(extra) if isinstance(extra, list) else [extra]
    return args, arguments


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
