"""aiohttp's own server on asyncio (uvloop's loop when installed)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .common import HELLO, UploadCounter, call_api, parse_args, static_path

options = parse_args(__doc__ or "")
FILE = static_path(options.files)


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=HELLO, content_type="text/plain")


async def api(request: web.Request) -> web.Response:
    form = await request.post()
    return web.Response(body=call_api(str(form["json"])), content_type="application/json")


async def file(request: web.Request) -> web.FileResponse:
    return web.FileResponse(FILE)


async def upload(request: web.Request) -> web.Response:
    counter = UploadCounter(request.headers["Content-Type"])
    async for chunk in request.content.iter_chunked(1 << 16):
        counter.feed(chunk)
    return web.Response(text=str(counter.close()))


app = web.Application(client_max_size=4 << 30)
app.router.add_get("/hello", hello)
app.router.add_post("/api", api)
app.router.add_get("/file", file)
app.router.add_post("/upload", upload)
app.router.add_static("/static", options.files)
try:
    import uvloop

    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
except ImportError:  # pragma: no cover
    loop = asyncio.new_event_loop()
web.run_app(app, host="127.0.0.1", port=options.port, access_log=None, print=None, loop=loop)
