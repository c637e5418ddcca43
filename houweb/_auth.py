"""
The optional shared-secret token: when a server is given ``token``, every
request must carry ``Authorization: Bearer <token>`` (what SideFX's reference
API client sends) or it gets 401 before any handler, static file or API
function sees it. This is how to expose houweb beyond loopback safely (with
TLS, so the token is not sent in the clear).
"""

from __future__ import annotations

import hmac
from typing import Callable

from ._registry import is_api_path
from ._request import Request
from ._response import Response, errorResponse, json_error

_MESSAGE = "this server requires an Authorization: Bearer token"


def token_filter(token: str) -> Callable[[Request], Response | None]:
    """
    :returns: a request filter that answers 401 unless the request carries
        the token; compared in constant time.
    """
    expected = f"Bearer {token}".encode()

    def check(request: Request) -> Response | None:
        supplied = request.header("Authorization").strip().encode()
        if hmac.compare_digest(supplied, expected):
            return None
        if is_api_path(request.path()):
            response = json_error(_MESSAGE, 401)
        else:
            response = errorResponse(request, _MESSAGE, 401)
        response.setHeader("WWW-Authenticate", 'Bearer realm="houweb"')
        return response

    return check
