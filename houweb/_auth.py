"""
The optional shared-secret token: when a server is given ``token``, every
request must carry ``Authorization: Bearer <token>`` (what SideFX's reference
API client sends) or it gets 401 as soon as its headers arrive: before its
body is read (no ``100 Continue``, nothing spooled to disk) and before any
handler, static file or API function sees it. This is how to expose houweb
beyond loopback safely (with TLS, so the token is not sent in the clear).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

MESSAGE = "this server requires an Authorization: Bearer token"
CHALLENGE = ("WWW-Authenticate", 'Bearer realm="houweb"')


class TokenCheck:
    """
    Checks the ``Authorization`` header against the token, in constant time;
    the scheme word ``Bearer`` in any case (RFC 9110 §11.1).
    """

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")

    def accepts(self, authorization: Sequence[bytes] | None) -> bool:
        """:returns: whether the ``Authorization`` header values carry the token."""
        if authorization is None or len(authorization) != 1:
            return False
        scheme, _, credentials = authorization[0].strip().partition(b" ")
        # compare_digest runs even for a wrong scheme, so timing tells nothing.
        same = hmac.compare_digest(credentials.strip(), self._token)
        return same and scheme.lower() == b"bearer"
