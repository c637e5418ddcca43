"""Starlette on uvicorn (uvloop and httptools when installed), no access log."""

from __future__ import annotations

from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .common import HELLO, UploadCounter, call_api, parse_args, static_path

options = parse_args(__doc__ or "")
FILE = static_path(options.files)


async def hello(request: Request) -> Response:
    return PlainTextResponse(HELLO)


async def api(request: Request) -> Response:
    # Starlette's request.form() needs python-multipart, which clashes with
    # the multipart package houweb uses: the urlencoded body is parsed here.
    form = parse_qs((await request.body()).decode("utf-8"))
    return Response(call_api(form["json"][0]), media_type="application/json")


async def file(request: Request) -> Response:
    return FileResponse(FILE)


async def upload(request: Request) -> Response:
    counter = UploadCounter(request.headers["content-type"])
    async for chunk in request.stream():
        if chunk:
            counter.feed(chunk)
    return PlainTextResponse(str(counter.close()))


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/api", api, methods=["POST"]),
        Route("/file", file),
        Route("/upload", upload, methods=["POST"]),
        Mount("/static", StaticFiles(directory=options.files)),
    ]
)
uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="warning", access_log=False)
