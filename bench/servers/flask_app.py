"""Flask on Werkzeug's threaded development server (a thread per connection)."""

from __future__ import annotations

import logging

from flask import Flask, Response, request, send_file

from .common import HELLO, call_api, parse_args, static_path

options = parse_args(__doc__ or "")
FILE = static_path(options.files)
app = Flask(__name__, static_folder=options.files, static_url_path="/static")
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log


@app.get("/hello")
def hello() -> Response:
    return Response(HELLO, content_type="text/plain")


@app.post("/api")
def api() -> Response:
    return Response(call_api(request.form["json"]), content_type="application/json")


@app.get("/file")
def file() -> Response:
    return send_file(FILE)


@app.post("/upload")
def upload() -> str:
    # Werkzeug streams file parts into temporary files.
    stream = request.files["file"].stream
    stream.seek(0, 2)
    return str(stream.tell())


app.run(host="127.0.0.1", port=options.port, threaded=True)
