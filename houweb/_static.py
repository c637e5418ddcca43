"""
Static directories: :func:`registerStaticFilesDirectory` registers one, and
its :meth:`StaticDirectory.answer` answers requests under its URL prefix
from disk.

Static files are answered on the reactor thread without a trip through the
handler pool (they are served while every pool thread is busy) and streamed
by twisted.web's static file machinery (see ``_render``): Range, HEAD,
Last-Modified / If-Modified-Since, ETag / If-None-Match. Nothing outside the
registered directory is ever served.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

from . import _registry
from ._errors import OperationFailed
from ._request import Request
from ._response import Response, errorResponse, guess_content_type, notFoundResponse
from ._site import Call
from ._target import Answer

PathLike = Union[str, "os.PathLike[str]"]

#: Methods a static directory answers; others get 405.
_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class StaticDirectory:
    """A directory registered with :func:`registerStaticFilesDirectory`."""

    #: Absolute, with symlinks resolved: what every served file must be inside.
    root: str

    def answer(self, call: Call) -> Answer:
        """Answer ``call``, routed here: see :func:`_answer_static`."""
        return _answer_static(call, self)


def registerStaticFilesDirectory(
    directory: PathLike, url_prefix: str = "/static", port: int | str = -1
) -> None:
    """
    Serve the files below ``directory`` under ``url_prefix``: with
    ``("static", "/static")``, ``GET /static/css/main.css`` answers with
    ``static/css/main.css``. No directory listings, no index files.

    :param directory: made absolute now; it must exist.
    :param url_prefix: a URL path, as for ``urlHandler``; a more specific URL
        handler below it wins.
    :param port: ``-1`` every listening port (the default), ``0`` the main
        port, a port number, or the name of a named port.
    :raises OperationFailed: if ``directory`` is missing or not a directory.
    """
    root = os.path.realpath(os.fspath(directory))
    if not os.path.isdir(root):
        raise OperationFailed(f"static files directory {os.fspath(directory)!r} does not exist")
    _registry.REGISTRY.add_path(_registry.STATIC, url_prefix, [port], StaticDirectory(root))


def resolve(root: str, relative: str) -> str | None:
    """
    :param relative: the decoded request path below the URL prefix, starting
        with ``/`` (or ``""`` for the prefix itself).
    :returns: the real path of the regular file it names inside ``root``, or
        ``None`` when it names nothing servable: a directory, a missing file,
        anything with a ``.``/``..``/empty segment, a backslash, NUL, a drive
        or absolute component, or a symlink leading outside ``root``.
    """
    segments = relative.split("/")[1:]
    if not segments or not all(safe_segment(s) for s in segments):
        return None
    real = os.path.realpath(os.path.join(root, *segments))
    if not real.startswith(root.rstrip(os.sep) + os.sep) or not os.path.isfile(real):
        return None
    return real


def safe_segment(segment: str) -> bool:
    return (
        segment not in ("", ".", "..")
        and "\\" not in segment
        and "\x00" not in segment
        and not os.path.isabs(segment)
        and not os.path.splitdrive(segment)[0]
    )


def below(request_path: str, prefix: str) -> str:
    """:returns: the part of ``request_path`` below the registered ``prefix``."""
    return request_path if prefix == "/" else request_path[len(prefix) :]


def method_not_allowed(request: Request) -> Response:
    response = errorResponse(request, f"method {request.method()} not allowed", 405)
    response.setHeader("Allow", ", ".join(_METHODS))
    return response


def _answer_static(call: Call, target: StaticDirectory) -> Response:
    """Answer from disk, on the reactor thread: the file, 404 or 405."""
    request = call.request
    if request.method() not in _METHODS:
        return method_not_allowed(request)
    relative = below(request.path(), call.match.path)
    path = resolve(target.root, relative)
    if path is None:
        return notFoundResponse(request)
    return Response(path, is_file_name=True, content_type=guess_content_type(relative))
