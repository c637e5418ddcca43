"""
A live status page for the person running the server
(``run(..., status_page=True)``, ``--status-page``): what runs right now
(each call of user code with its function, request and how long it has run:
what shutdown names for handlers that will not return), the pool, the
connections and WebSockets, and the recent errors.

- ``/houweb/status``: the page; it opens a WebSocket and redraws itself with
  every snapshot.
- ``/houweb/status/live``: the WebSocket (houweb's own :class:`WebSocket`);
  a JSON snapshot every :data:`INTERVAL` seconds.
- ``/houweb/status.json``: one snapshot (``curl``, scripts).

Off by default. When on, a server with a ``token`` asks for it on these paths
as on every other; a server without one answers them only to clients on a
loopback address that came directly (no ``X-Forwarded-For`` or ``Forwarded``
header: a proxy on the same machine would otherwise make every client look
local) and that name a loopback host (``localhost``, a ``.localhost`` name or
a loopback address, or no ``Host`` at all): with ``ALLOWED_HOSTS = ["*"]`` a
DNS-rebinding page in a browser on the same machine also comes from loopback,
but under its own name. Everyone else gets 403.
"""

from __future__ import annotations

import collections
import ipaddress
import json
import os
import time
from typing import TYPE_CHECKING, Any

from twisted.internet.task import LoopingCall

from ._dispatch import describe
from ._guards import split_domain_port
from ._request import Request
from ._response import Response, errorResponse

if TYPE_CHECKING:
    from ._channel import HouwebRequest
    from ._site import HouwebSite, ServerContext
    from ._websocket import WebSocket

PAGE_PATH = "/houweb/status"
JSON_PATH = "/houweb/status.json"
LIVE_PATH = "/houweb/status/live"
#: Seconds between two snapshots sent to an open page.
INTERVAL = 0.5
#: How many recent errors (answers with status 500 and above) are kept.
RECENT_ERRORS = 20
FORBIDDEN = (
    "the status page answers only local clients that name a loopback host "
    "(http://localhost:PORT/houweb/status), or those with the server's token"
)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names_loopback(host: str | None) -> bool:
    """
    :returns: whether a ``Host`` header value names this machine's loopback
        (``localhost``, ``*.localhost``, a loopback address): a name a
        rebinding page cannot take. No ``Host`` at all (HTTP/1.0) is no
        browser's request.
    """
    if host is None:
        return True
    domain, _ = split_domain_port(host)
    if domain == "localhost" or domain.endswith(".localhost"):
        return True
    return _is_loopback(domain.strip("[]"))


class StatusPage:
    """The status page of one server: what it shows and who may see it."""

    def __init__(self, context: ServerContext, site: HouwebSite) -> None:
        self.context = context
        self.site = site
        self.started = time.time()
        self.errors: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_ERRORS)

    def allowed(self, request: Request) -> bool:
        """
        :returns: whether ``request`` may see the status: the server has a
            token (which the header guard checked), or the client is on
            loopback, did not come through a proxy and names a loopback host
            (a DNS-rebinding page's requests come from loopback too, under
            the attacker's name, when ``ALLOWED_HOSTS`` lets any in).
        """
        if self.context.config.token is not None:
            return True
        headers = request.headers()
        if "X-Forwarded-For" in headers or "Forwarded" in headers:
            return False
        host = headers.get("Host")
        return _is_loopback(request.clientAddress()[0]) and _names_loopback(
            host if isinstance(host, str) else None
        )

    def note_finished(self, web_request: HouwebRequest, seconds: float) -> None:
        """Keep answers with status 500 and above (a ``houweb_on_finish`` callback)."""
        if web_request.code >= 500:
            self.errors.appendleft(
                {
                    "at": time.time(),
                    "method": web_request.method.decode("latin-1"),
                    "target": web_request.uri.decode("latin-1"),
                    "status": web_request.code,
                    "seconds": round(seconds, 3),
                }
            )

    def snapshot(self) -> dict[str, Any]:
        """:returns: the state of the server now, as JSON-ready values."""
        now = time.monotonic()
        calls = []
        for call in self.context.running.snapshot():
            subject = call.subject
            calls.append(
                {
                    "function": describe(subject) if callable(subject) else str(subject),
                    "method": call.request.method(),
                    "path": call.request.path(),
                    "client": call.request.clientAddress()[0],
                    "seconds": round(now - (call.started or now), 3),
                }
            )
        pool = self.context.pool
        channels = list(self.site.houweb_connections)
        return {
            "time": time.time(),
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 1),
            "ports": [self.context.main_port, *sorted(self.context.main_aliases)],
            "calls": calls,
            "waiting": len(self.context.running) - len(calls),
            "pool": {"threads": pool.max, "busy": pool.busy(), "queued": pool.queued()},
            "connections": len(channels),
            "websockets": sum(
                1 for c in channels if getattr(c, "houweb_upgraded", None) is not None
            ),
            "requests_in_flight": self.site.in_flight(),
            "errors": list(self.errors),
        }

    def answer(self, request: Request) -> Response | None:
        """A request filter: the page and the JSON snapshot; ``None`` for other paths."""
        path = request.path()
        if path not in (PAGE_PATH, JSON_PATH) or request.method() not in ("GET", "HEAD"):
            return None
        if not self.allowed(request):
            return errorResponse(request, FORBIDDEN, 403)
        if path == JSON_PATH:
            response = Response(json.dumps(self.snapshot()), content_type="application/json")
        else:
            from importlib import resources  # on first use: cold start

            page = resources.files(__package__).joinpath("_web", "status.html")
            response = Response(
                page.read_text(encoding="utf-8"), content_type="text/html; charset=utf-8"
            )
            response.setHeader(
                "Content-Security-Policy",
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
            )
        response.setHeader("Cache-Control", "no-store")
        return response

    def live_socket(self) -> type[WebSocket]:
        """:returns: a :class:`WebSocket` class sending this page's snapshots."""
        # Imported here, when the page is on: autobahn costs start-up time.
        from ._websocket import WebSocket

        status = self

        class StatusSocket(WebSocket):
            """Sends a snapshot at once, then every :data:`INTERVAL` seconds."""

            _loop: LoopingCall | None = None

            async def connect(self, request: Request) -> None:
                if not status.allowed(request):
                    return  # refused: 403
                await self.accept()
                loop = LoopingCall(self._send_snapshot)
                loop.clock = status.context.reactor
                self._loop = loop
                loop.start(INTERVAL, now=True)

            def _send_snapshot(self) -> None:
                self.send(text_data=json.dumps(status.snapshot()))

            async def disconnect(self, code: int) -> None:
                if self._loop is not None and self._loop.running:
                    self._loop.stop()

        return StatusSocket


def install_status_page(context: ServerContext, site: HouwebSite) -> StatusPage | None:
    """
    Turn on the server's status page if its configuration asks for it.

    :returns: the status page, or ``None`` when it is off.
    """
    if not context.config.status_page:
        return None
    page = StatusPage(context, site)
    site.houweb_on_finish.append(page.note_finished)
    context.request_filters.append(page.answer)
    from ._websocket import WebSocketTarget  # with autobahn, only when the page is on

    context.own_targets[LIVE_PATH] = WebSocketTarget(page.live_socket())
    return page
