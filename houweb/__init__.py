"""
houweb: the API of Houdini's embedded web server (``hou.webServer``) as a
plain Python package, on Twisted.

    import houweb

    @houweb.urlHandler("/hello")
    def hello(request):
        return houweb.Response("Hello world")

    houweb.run(port=8008)
"""

from typing import TYPE_CHECKING, Any

from . import _reactor

_reactor.install()  # before Klein imports twisted.internet.reactor

from ._api import APIError, apiFunction
from ._errors import Error, OperationFailed
from ._handlers import AsyncURLHandler, URLHandler
from ._registry import urlHandler
from ._request import Request
from ._response import Response, errorResponse, fileResponse, notFoundResponse, redirect
from ._run import isInDebugMode, requestShutdown, run, serverPorts
from ._static import registerStaticFilesDirectory
from ._uploads import UploadedFile
from ._wsgi import registerWSGIApp

if TYPE_CHECKING:
    from ._websocket import WebSocket, webSocket

__all__ = [
    "APIError",
    "AsyncURLHandler",
    "Error",
    "OperationFailed",
    "Request",
    "Response",
    "URLHandler",
    "UploadedFile",
    "WebSocket",
    "apiFunction",
    "errorResponse",
    "fileResponse",
    "isInDebugMode",
    "notFoundResponse",
    "redirect",
    "registerStaticFilesDirectory",
    "registerWSGIApp",
    "requestShutdown",
    "run",
    "serverPorts",
    "urlHandler",
    "webSocket",
]


def __getattr__(name: str) -> Any:
    """
    ``WebSocket`` and ``webSocket``, imported on first use: they load autobahn,
    which a server without WebSockets need not pay for at start-up (PEP 562).
    """
    if name in ("WebSocket", "webSocket"):
        from . import _websocket

        value = getattr(_websocket, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
