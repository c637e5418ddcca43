"""
The bare design houweb is built on: Klein routes on Twisted's asyncio reactor
(on uvloop's loop, as houweb), each handler run in a 4-thread pool with
deferToThreadPool. Static files are served by twisted.web's static.File.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import asyncioreactor

from .common import call_api, parse_args

try:
    import uvloop

    asyncioreactor.install(uvloop.new_event_loop())
except ImportError:  # pragma: no cover - houweb falls back the same way
    asyncioreactor.install()

from klein import Klein  # noqa: E402 - after the reactor is installed
from twisted.internet import reactor as _reactor  # noqa: E402
from twisted.internet.threads import deferToThreadPool  # noqa: E402
from twisted.python.threadpool import ThreadPool  # noqa: E402
from twisted.web import server, static  # noqa: E402

from .common import HELLO, static_path  # noqa: E402
from .twisted_common import StreamingUploadRequest, upload_size  # noqa: E402

reactor: Any = _reactor  # the module-level reactor, untyped
options = parse_args(__doc__ or "")
FILE = static_path(options.files)
pool = ThreadPool(minthreads=0, maxthreads=4, name="handlers")
app = Klein()


def in_pool(function: Any, *args: Any) -> Any:
    return deferToThreadPool(reactor, pool, function, *args)


@app.route("/hello")
def hello(request: Any) -> Any:
    def answer() -> bytes:
        return HELLO

    request.setHeader(b"content-type", b"text/plain")
    return in_pool(answer)


@app.route("/api", methods=["POST"])
def api(request: Any) -> Any:
    payload = request.args[b"json"][0].decode("utf-8")
    request.setHeader(b"content-type", b"application/json")
    return in_pool(call_api, payload)


@app.route("/file")
def file(request: Any) -> Any:
    return in_pool(static.File, FILE)


@app.route("/upload", methods=["POST"])
def upload(request: Any) -> Any:
    return in_pool(upload_size, request)


@app.route("/static/", branch=True)
def files(request: Any) -> Any:
    return static.File(options.files)


pool.start()
reactor.addSystemEventTrigger("before", "shutdown", pool.stop)
site = server.Site(app.resource(), requestFactory=StreamingUploadRequest)
site.noisy = False
reactor.listenTCP(options.port, site, interface="127.0.0.1")
reactor.run()
