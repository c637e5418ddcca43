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

They are on every port and list only what that port serves; the token and
the other request filters apply as to any request, and the settings name
``API_DOCS = False`` turns them (and ``houweb.functions``) off: 404, as if
they did not exist. No handler may take their paths (``check_handler_path``).
"""

from __future__ import annotations

import json
from importlib import resources

from ._describe import Description, describe
from ._openapi import DIALECTS, openapi_document
from ._registry import APIViewEndpoint
from ._response import Response, errorResponse, notFoundResponse
from ._site import Call, responder
from ._typescript import declarations

#: Where the package's web files are (package data).
_WEB = "_web"
#: Where ``client.js`` gets the functions' descriptions.
_FUNCTIONS_PLACEHOLDER = "/*HOUWEB_FUNCTIONS*/[]"


@responder(APIViewEndpoint)
def answer_api_view(call: Call) -> Response:
    """Answer ``GET /api/openapi.json``, ``/api/client.js``, ``/api/client.d.ts`` or ``/api/docs``."""
    request = call.request
    if not call.context.settings.api_docs:
        return notFoundResponse(request)
    if request.method() not in ("GET", "HEAD"):
        response = errorResponse(request, f"{request.path()} answers GET only", 405)
        response.setHeader("Allow", "GET, HEAD")
        return response
    view = call.match.target.view  # type: ignore[attr-defined]
    descriptions = visible_descriptions(call)
    if view == "openapi":
        dialect = request.GET().get("dialect")
        if dialect is not None and dialect not in DIALECTS:
            message = f"dialect must be {' or '.join(DIALECTS)}, not {dialect!r}"
            return errorResponse(request, message, 400)
        document = openapi_document(
            descriptions,
            token=call.context.config.token is not None,
            dialects=DIALECTS if dialect is None else (dialect,),
        )
        response = Response(json.dumps(document, indent=1), 200, "application/json")
    elif view == "client":
        response = Response(client_module(descriptions), 200, "text/javascript; charset=utf-8")
        response.setHeader("X-TypeScript-Types", "/api/client.d.ts")
    elif view == "types":
        response = Response(
            declarations(descriptions), 200, "application/typescript; charset=utf-8"
        )
    else:
        response = Response(_web_file("explorer.html"), 200, "text/html; charset=utf-8")
        response.setHeader(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self' 'unsafe-inline'; connect-src 'self' blob:; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'self'",
        )
    response.setHeader("Cache-Control", "no-store")
    response.setHeader("X-Content-Type-Options", "nosniff")
    return response


def visible_descriptions(call: Call) -> list[Description]:
    """:returns: the descriptions of the API functions this request's port serves, by name."""
    context = call.context
    visible = context.registry.functions(call.request.port(), context.main_port)
    return [describe(visible[name]) for name in sorted(visible)]


def client_module(descriptions: list[Description]) -> str:
    """:returns: ``client.js`` holding ``descriptions``."""
    functions = json.dumps([d.as_json() for d in descriptions], indent=1)
    # Inside a JS module, JSON is a valid expression; "</" is harmless there
    # but escaped anyway so the text can never close an inline <script>.
    functions = functions.replace("</", "<\\/")
    return _web_file("client.js").replace(_FUNCTIONS_PLACEHOLDER, functions, 1)


def _web_file(name: str) -> str:
    return resources.files(__package__).joinpath(_WEB, name).read_text(encoding="utf-8")
