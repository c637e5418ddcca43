"""
The demo application ``python -m houweb`` serves when given no application of
its own: a few handlers that show what houweb does.
"""

from __future__ import annotations

import asyncio
import html
import json
import math

from ._api import APIError
from ._application import apiFunction, urlHandler
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
<p>An API function, <code>geo.vector_length</code>:</p>
<pre>curl -d 'json=["geo.vector_length", [1, 2, 3], {}]' http://127.0.0.1:8008/api
curl -d 'json=["houweb.functions", [], {}]' http://127.0.0.1:8008/api</pre>
<p>Every API function, described: <a href="/api/docs">/api/docs</a> (call them from the
browser), <a href="/api/openapi.json">/api/openapi.json</a> (OpenAPI 3.1) and
<a href="/api/client.js">/api/client.js</a> (<code>await api.geo.vector_length(1, 2, 3)</code>).</p>
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

    @apiFunction(namespace="geo", arg_types={"x": float, "y": float, "z": float})
    def vector_length(request: Request, x: float, y: float, z: float) -> float:
        """Return the length of the vector (x, y, z)."""
        if min(x, y, z) < 0:
            raise APIError("coordinates must not be negative")
        return math.hypot(x, y, z)
