"""houweb, as an application would use it: handlers in its pool, run() in the foreground."""

from __future__ import annotations

import houweb

from .common import HELLO, parse_args, static_path

options = parse_args(__doc__ or "")
FILE = static_path(options.files)


@houweb.urlHandler("/hello")
def hello(request: houweb.Request) -> houweb.Response:
    return houweb.Response(HELLO, content_type="text/plain")


@houweb.urlHandler("/file")
def file(request: houweb.Request) -> houweb.Response:
    return houweb.fileResponse(FILE)


@houweb.urlHandler("/upload")
def upload(request: houweb.Request) -> houweb.Response:
    return houweb.Response(str(request.files()["file"].size()), content_type="text/plain")


@houweb.apiFunction()
def add(request: houweb.Request, a: int, b: int) -> int:
    return a + b


houweb.registerStaticFilesDirectory(options.files, "/static")
houweb.run(port=options.port, max_num_threads=4, in_background=False, workers=options.workers)
