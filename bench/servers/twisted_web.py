"""Plain twisted.web resources on the default reactor, answering on the reactor thread."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.web import resource, server, static

from .common import HELLO, call_api, parse_args, static_path
from .twisted_common import StreamingUploadRequest, upload_size

reactor: Any = _reactor  # the module-level reactor, untyped
options = parse_args(__doc__ or "")


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        return HELLO


class Api(resource.Resource):
    isLeaf = True

    def render_POST(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return call_api(request.args[b"json"][0].decode("utf-8"))


class Upload(resource.Resource):
    isLeaf = True

    def render_POST(self, request: Any) -> bytes:
        return upload_size(request)


children: dict[bytes, Any] = {
    b"hello": Hello(),
    b"api": Api(),
    b"file": static.File(static_path(options.files)),
    b"upload": Upload(),
    b"static": static.File(options.files),
}
root = resource.Resource()
for name, child in children.items():
    root.putChild(name, child)
site = server.Site(root, requestFactory=StreamingUploadRequest)
site.noisy = False
reactor.listenTCP(options.port, site, interface="127.0.0.1")
reactor.run()
