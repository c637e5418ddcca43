"""
``registerWSGIApp`` (hwebserver): a WSGI application mounted on a path
prefix, run by twisted.web's WSGI container in houweb's thread pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred
from twisted.web.wsgi import WSGIResource

from . import _registry
from ._registry import PREFIX, Ports, check_handler_path
from ._response import Response
from ._site import Call
from ._target import Answer

WSGIApplication = Callable[..., Any]


@dataclass(frozen=True)
class WSGITarget:
    """A WSGI application registered with ``registerWSGIApp``."""

    application: WSGIApplication
    path: str
    #: The app reads the body itself (``wsgi.input``): houweb stores a
    #: multipart body as sent instead of parsing it into fields and files.
    wants_raw_body: ClassVar[bool] = True

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`_answer_wsgi`."""
        return _answer_wsgi(call, self)


def register_wsgi_app(
    registry: _registry.Registry, application: WSGIApplication, path: str, ports: Ports = []
) -> None:
    """
    Register ``application`` into ``registry``: see
    :func:`houweb.registerWSGIApp`, which is this on the default server's
    registry.
    """
    if not callable(application):
        raise TypeError("registerWSGIApp takes a WSGI application (a callable)")
    norm = check_handler_path(path)
    registry.add_path(PREFIX, path, ports, WSGITarget(application, norm))


def _answer_wsgi(call: Call, target: WSGITarget) -> Response | Deferred[Response]:
    web_request = call.web_request
    mounted = len([s for s in target.path.split("/") if s])
    segments = [unquote_to_bytes(s) for s in web_request.path[1:].split(b"/")]
    web_request.prepath, web_request.postpath = segments[:mounted], segments[mounted:]
    context = call.context
    WSGIResource(context.reactor, context.pool, target.application).render(web_request)
    # The WSGI container writes the answer itself; the router forgets this
    # Deferred once the request is finished.
    return Deferred()
