"""
The demo application ``python -m houweb`` serves when given no application of
its own: a few handlers that show what houweb does.
"""

from __future__ import annotations

import asyncio
import html
import json

from ._registry import urlHandler
from ._request import Request
from ._response import Response

_INDEX = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>houweb demo</title></head><body>
<h1>houweb is running</h1>
<ul>
<li><a href="/hello">/hello</a>: a URL handler</li>
<li><a href="/hello/you?greeting=Hi">/hello/you?greeting=Hi</a>: a prefix handler reading the query</li>
<li><a href="/request">/request</a>: what a handler sees of the request, as JSON</li>
<li><a href="/slow?seconds=0.5">/slow?seconds=0.5</a>: an <code>async def</code> handler</li>
</ul>
</body></html>
"""


def register() -> None:
    """Register the demo handlers in houweb's registry."""

    @urlHandler("/")
    def index(request: Request) -> Response:
        return Response(_INDEX)

    @urlHandler("/hello", is_prefix=True)
    def hello(request: Request) -> Response:
        who = request.path()[len("/hello/") :] or "world"
        greeting = request.GET().get("greeting", "Hello")
        return Response(f"{html.escape(greeting)} {html.escape(who)}", content_type="text/plain")

    @urlHandler("/request")
    def describe(request: Request) -> Response:
        seen = {
            "method": request.method(),
            "path": request.path(),
            "query": request.GET(),
            "headers": request.headers(),
            "client": list(request.clientAddress()),
        }
        return Response(json.dumps(seen, indent=2), content_type="application/json")

    @urlHandler("/slow")
    async def slow(request: Request) -> Response:
        seconds = min(float(request.GET().get("seconds", "0.5")), 5.0)
        await asyncio.sleep(seconds)
        return Response(f"waited {seconds}s without holding a thread", content_type="text/plain")
