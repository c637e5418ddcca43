"""
What every benchmark server shares: its command line, the endpoints it
answers, the API function and the wire format of an API call, and a streaming
multipart counter for servers whose framework has no streaming form parser.

Endpoints (every server):

- ``GET /hello``: ``Hello world``.
- ``POST /api`` with the form field ``json=["add", [1, 2], {}]``: ``3`` as JSON.
- ``GET /static/1mib.bin``: a 1 MiB file from a static directory.
- ``GET /file``: the same file, answered by a handler (houweb's fileResponse).
- ``POST /upload``: a multipart/form-data upload; answers the size of its
  ``file`` field.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from typing import Any, Callable

import multipart

#: The file served by ``/static/...`` and ``/file``, inside ``--files``.
STATIC_NAME = "1mib.bin"
STATIC_SIZE = 1 << 20
HELLO = b"Hello world"


def add(a: int, b: int) -> int:
    """The API function every server exposes as ``add``."""
    return a + b


API_FUNCTIONS: dict[str, Callable[..., Any]] = {"add": add}


def call_api(payload: str) -> bytes:
    """
    :param payload: the ``json`` form field: ``["name", [args], {kwargs}]``.
    :returns: the function's result as JSON.
    """
    name, args, kwargs = json.loads(payload)
    return json.dumps(API_FUNCTIONS[name](*args, **kwargs)).encode("utf-8")


def parse_args(description: str) -> argparse.Namespace:
    """The command line every server takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--files", required=True, help="directory holding " + STATIC_NAME)
    parser.add_argument("--workers", type=int, default=1, help="processes (houweb only)")
    return parser.parse_args()


def static_path(files: str) -> str:
    """:returns: the path of the 1 MiB file below ``files``."""
    return os.path.join(files, STATIC_NAME)


class UploadCounter:
    """
    Streams a multipart/form-data body: the parts' contents go to a temporary
    file (never held in memory), and :meth:`close` tells how many bytes the
    ``file`` field held.
    """

    def __init__(self, content_type: str) -> None:
        _, options = multipart.parse_options_header(content_type)
        self._parser = multipart.PushMultipartParser(options["boundary"])
        self._spool = tempfile.TemporaryFile()
        self._in_file = False
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        """Parse one chunk of the body."""
        for event in self._parser.parse(chunk):
            if isinstance(event, multipart.MultipartSegment):
                self._in_file = event.name == "file"
            elif event is None:
                self._in_file = False
            elif self._in_file:
                self._spool.write(event)
                self.size += len(event)

    def close(self) -> int:
        """End the body; delete the spooled file. :returns: the ``file`` field's size."""
        self._parser.close()
        self._spool.close()
        return self.size
