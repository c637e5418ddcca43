"""
houweb: the API of Houdini's embedded web server (``hou.webServer``) as a
plain Python package, on Twisted.

    import houweb

    @houweb.urlHandler("/hello")
    def hello(request):
        return houweb.Response("Hello world")

    houweb.run(port=8008)
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._import_gc import collector_paused

with collector_paused():  # loading Twisted and Klein: see _import_gc
    from . import _reactor

    _reactor.install()  # before Klein imports twisted.internet.reactor
    from . import _application  # noqa: F401 - nearly all of houweb, loaded while paused

from ._api import APIError
from ._application import (
    Server,
    apiFunction,
    isInDebugMode,
    registerArchiveFile,
    registerASGIApp,
    registerOpdefPath,
    registerStaticFilesDirectory,
    registerWSGIApp,
    requestShutdown,
    run,
    serverPorts,
    setCORSWhitelist,
    setSettingsForPort,
    urlHandler,
    webSocket,
)
from ._errors import Error, OperationFailed
from ._port_settings import (
    CriticalSeverity,
    DebugSeverity,
    ErrorSeverity,
    InfoSeverity,
    MessageSeverity,
    WarningSeverity,
)
from ._request import Request
from ._response import Response, errorResponse, fileResponse, notFoundResponse, redirect
from ._uploads import UploadedFile
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from ._handlers import AsyncURLHandler, URLHandler
    from ._websocket import WebSocket

__all__ = [
    "APIError",
    "AsyncURLHandler",
    "CriticalSeverity",
    "DebugSeverity",
    "Error",
    "ErrorSeverity",
    "InfoSeverity",
    "MessageSeverity",
    "OperationFailed",
    "Request",
    "Response",
    "Server",
    "URLHandler",
    "UploadedFile",
    "WarningSeverity",
    "WebSocket",
    "apiFunction",
    "errorResponse",
    "fileResponse",
    "isInDebugMode",
    "notFoundResponse",
    "redirect",
    "registerASGIApp",
    "registerArchiveFile",
    "registerOpdefPath",
    "registerStaticFilesDirectory",
    "registerWSGIApp",
    "requestShutdown",
    "run",
    "serverPorts",
    "setCORSWhitelist",
    "setSettingsForPort",
    "urlHandler",
    "webSocket",
]


#: Public names imported on first use (PEP 562), with their modules: a server
#: that uses none of them does not pay for loading them (autobahn for
#: WebSockets) at start-up; the registration functions (``webSocket``...)
#: import their module when called. Registration does not need
#: them: each kind of target answers for itself (``Target.answer``), so the
#: site routes to it whatever was imported; they are kept for cold start.
_ON_FIRST_USE = {
    "AsyncURLHandler": "._handlers",
    "URLHandler": "._handlers",
    "WebSocket": "._websocket",
}


def __getattr__(name: str) -> Any:
    """:returns: a name of :data:`_ON_FIRST_USE`, imported now."""
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
