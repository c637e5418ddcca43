"""
houweb: the API of Houdini's embedded web server (``hou.webServer``) as a
plain Python package, on Twisted.

    import houweb

    @houweb.urlHandler("/hello")
    def hello(request):
        return houweb.Response("Hello world")

    houweb.run(port=8008)
"""

from . import _reactor

_reactor.install()  # before Klein imports twisted.internet.reactor

from ._api import APIError, apiFunction
from ._errors import Error, OperationFailed
from ._registry import urlHandler
from ._request import Request
from ._response import Response, errorResponse, fileResponse, notFoundResponse, redirect
from ._run import isInDebugMode, requestShutdown, run, serverPorts
from ._static import registerStaticFilesDirectory
from ._uploads import UploadedFile

__all__ = [
    "APIError",
    "Error",
    "OperationFailed",
    "Request",
    "Response",
    "UploadedFile",
    "apiFunction",
    "errorResponse",
    "fileResponse",
    "isInDebugMode",
    "notFoundResponse",
    "redirect",
    "registerStaticFilesDirectory",
    "requestShutdown",
    "run",
    "serverPorts",
    "urlHandler",
]
