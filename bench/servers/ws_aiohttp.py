"""aiohttp's WebSocket echo at ``/ws`` on its own server (uvloop), and ``/hello``."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from .common import HELLO, parse_args
from .ws_common import MAX_MESSAGE, WS_PATH

options = parse_args(__doc__ or "")


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=HELLO, content_type="text/plain")


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, compress=False)
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


app = web.Application()
app.router.add_get("/hello", hello)
app.router.add_get(WS_PATH, echo)
try:
    import uvloop

    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
except ImportError:  # pragma: no cover
    loop = asyncio.new_event_loop()
web.run_app(app, host="127.0.0.1", port=options.port, access_log=None, print=None, loop=loop)
