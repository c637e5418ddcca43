"""
houweb's own descriptions of the API functions visible on a port, each built
from :func:`~houweb._describe.describe`:

- ``GET /api/openapi.json``: the OpenAPI 3.1 document (``_openapi``);
  ``?dialect=json`` or ``?dialect=form`` lists one request body per
  operation, for generators that cannot handle two;
- ``GET /api/client.js``: an ES module calling them from a browser
  (``await api.geo.vector_length(1, 2, 3)``);
- ``GET /api/client.d.ts``: its TypeScript declarations (``_typescript``);
- ``GET /api/docs``: the explorer page, a form per function, built on
  ``client.js``.

They are on every port and list only what that port serves (its listen
addresses too, like ``/api``); the token and
the other request filters apply as to any request, and the settings name
``API_DOCS = False`` turns them (and ``houweb.functions``) off: 404, as if
they did not exist. No handler may take their paths (``check_handler_path``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Hashable
from importlib import resources
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from ._describe import Description, described
from ._openapi import DIALECTS, openapi_document
from ._response import Response, errorResponse, notFoundResponse
from ._typescript import declarations

if TYPE_CHECKING:  # for the hints: the registry's endpoints import this module
    from ._registry import APIViewEndpoint
    from ._site import Call

#: Where the package's web files are (package data).
_WEB = "_web"
#: Where ``client.js`` gets the functions' descriptions.
_FUNCTIONS_PLACEHOLDER = "/*HOUWEB_FUNCTIONS*/[]"


def answer_api_view(call: Call, target: APIViewEndpoint) -> Response | Deferred[Response]:
    """Answer ``GET /api/openapi.json``, ``/api/client.js``, ``/api/client.d.ts`` or ``/api/docs``."""
    request = call.request
    if not call.context.settings.api_docs:
        return notFoundResponse(request)
    if request.method() not in ("GET", "HEAD"):
        response = errorResponse(request, f"{request.path()} answers GET only", 405)
        response.setHeader("Allow", "GET, HEAD")
        return response
    view = target.view
    if view == "docs":
        page, policy = _explorer()
        response = Response(page, 200, "text/html; charset=utf-8")
        response.setHeader("Content-Security-Policy", policy)
        return _uncached(response)
    dialects: tuple[str, ...] = DIALECTS
    if view == "openapi":
        dialect = request.GET().get("dialect")
        if dialect is not None and dialect not in DIALECTS:
            message = f"dialect must be {' or '.join(DIALECTS)}, not {dialect!r}"
            return errorResponse(request, message, 400)
        dialects = DIALECTS if dialect is None else (dialect,)
    # What the port serves is read here, on the reactor; describing and
    # encoding it (a second or more for thousands of functions) is done in
    # the pool, so no other request waits for it.
    targets = visible_targets(call)
    token = call.context.config.token is not None
    context = call.context
    rendered: Deferred[str] = deferToThreadPool(
        context.reactor,
        context.pool,  # type: ignore[arg-type]
        _RENDERED.get,
        (view, token, dialects),
        targets,
        lambda: _render(view, [described(t) for t in targets], token, dialects),
    )
    answer = rendered.addCallback(_view_response, view)
    answer.addErrback(call.failed, "houweb's description of the API functions")
    return answer


def _explorer() -> tuple[str, str]:
    """
    :returns: the explorer page and its Content-Security-Policy, which lets
        only the page's own inline script and style run (by their hashes), so
        no string that reached the page's markup could run as a script.
    """
    page = _web_file("explorer.html")

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", page, re.S)
        return " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
            for b in blocks
        )

    policy = (
        f"default-src 'self'; script-src 'self' {hashes('script')}; connect-src 'self' blob:; "
        f"style-src 'self' {hashes('style')}; img-src 'self' blob: data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
    )
    return page, policy


def _render(view: str, descriptions: list[Description], token: bool, dialects: Any) -> str:
    if view == "openapi":
        document = openapi_document(descriptions, token=token, dialects=dialects)
        return json.dumps(document, indent=1)
    if view == "client":
        return client_module(descriptions)
    return declarations(descriptions)


def _view_response(body: str, view: str) -> Response:
    if view == "openapi":
        response = Response(body, 200, "application/json")
    elif view == "client":
        response = Response(body, 200, "text/javascript; charset=utf-8")
        response.setHeader("X-TypeScript-Types", "/api/client.d.ts")
    else:
        response = Response(body, 200, "application/typescript; charset=utf-8")
    return _uncached(response)


def _uncached(response: Response) -> Response:
    response.setHeader("Cache-Control", "no-store")
    response.setHeader("X-Content-Type-Options", "nosniff")
    return response


class _Rendered:
    """
    The last few views built, by what they were built from: the same
    functions (the same registrations) give the same text, so a view is
    rebuilt only after a registration changed what the port serves.
    """

    SIZE = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._texts: OrderedDict[Hashable, tuple[list[object], str]] = OrderedDict()

    def get(self, options: Hashable, targets: list[object], build: Any) -> str:
        # The targets themselves are kept with the text, so their ids (the
        # key) cannot be reused while the entry exists.
        key = (options, tuple(id(t) for t in targets))
        with self._lock:
            found = self._texts.get(key)
            if found is not None:
                self._texts.move_to_end(key)
                return found[1]
        text: str = build()
        with self._lock:
            self._texts[key] = (targets, text)
            while len(self._texts) > self.SIZE:
                self._texts.popitem(last=False)
        return text


_RENDERED = _Rendered()


def visible_targets(call: Call) -> list[object]:
    """:returns: the API functions this request's port serves (its listen addresses too), by name."""
    context = call.context
    visible = context.registry.functions(
        call.request.port(), context.main_port, context.main_aliases
    )
    return [visible[name] for name in sorted(visible)]


def client_module(descriptions: list[Description]) -> str:
    """:returns: ``client.js`` holding ``descriptions``."""
    functions = json.dumps([d.as_json() for d in descriptions], indent=1)
    # Inside a JS module, JSON is a valid expression; "</" is harmless there
    # but escaped anyway so the text can never close an inline <script>.
    functions = functions.replace("</", "<\\/")
    return _web_file("client.js").replace(_FUNCTIONS_PLACEHOLDER, functions, 1)


def _web_file(name: str) -> str:
    return resources.files(__package__).joinpath(_WEB, name).read_text(encoding="utf-8")
