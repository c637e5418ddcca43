"""
:class:`Response` and the functions that build common responses
(:func:`errorResponse`, :func:`notFoundResponse`, :func:`redirect`,
:func:`fileResponse`).

A Response is plain data, built by handlers on any thread; turning it into
bytes on the wire is the site's job.
"""

from __future__ import annotations

import datetime
import email.utils
import html
import json
import mimetypes
import os
import re
import urllib.parse
from typing import TYPE_CHECKING, Union

from ._status import label

if TYPE_CHECKING:
    from ._request import Request

Body = Union[str, bytes, bytearray]
PathLike = Union[str, "os.PathLike[str]"]

#: What a header value cannot hold: the control characters but HTAB (RFC 9110
#: 5.5). CR and LF would split the answer; NUL, VT, DEL... make it one that
#: strict clients (and browsers) refuse.
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: Matched whole (``fullmatch``: a ``$`` would also match before a final newline).
_COOKIE_OCTETS = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SAME_SITE = ("Strict", "Lax", "None", None)


class Response:
    """
    What a handler answers: a body (or a file to stream), a status and headers.

    :param data: the body, ``str`` (sent as UTF-8) or bytes; with
        ``is_file_name=True``, the path of a file streamed when sent.
    :param status: the HTTP status, 100 to 599.
    :param content_type: sent exactly as given.
    :param is_file_name: ``data`` names a file instead of holding the body.
    :param delete_file: delete that file once it was sent (or the client left).
    """

    def __init__(
        self,
        data: Body | PathLike,
        status: int = 200,
        content_type: str = "text/html",
        is_file_name: bool = False,
        delete_file: bool = False,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(f"status must be an int, not {type(status).__name__}")
        if not 100 <= status <= 599:
            raise ValueError(f"status must be between 100 and 599, not {status}")
        self._status = status
        self._headers: list[tuple[str, str]] = []
        self._file_path: str | None = None
        self._delete_file = False
        self._body = b""
        if is_file_name:
            if not isinstance(data, (str, os.PathLike)):
                raise TypeError("with is_file_name=True, data must be a path")
            self._file_path = os.fspath(data)
            self._delete_file = bool(delete_file)
        else:
            self._body = _encode_body(data)
        self.setHeader("Content-Type", content_type)

    def __repr__(self) -> str:
        what = self._file_path if self._file_path else f"{len(self._body)} bytes"
        return f"<Response {self.statusLabel()} {what}>"

    def status(self) -> int:
        """:returns: the HTTP status code."""
        return self._status

    def statusLabel(self) -> str:
        """:returns: the status line text, such as ``"200 OK"``."""
        return label(self._status)

    def setHeader(self, name: str, value: object) -> None:
        """
        Set header ``name``, replacing every header of that name (compared
        case-insensitively).
        """
        name, text = _checked_header(name, value)
        lower = name.lower()
        self._headers = [(n, v) for n, v in self._headers if n.lower() != lower]
        self._headers.append((name, text))

    def addHeader(self, name: str, value: object) -> None:
        """Add one more line of a repeatable header (extension)."""
        self._headers.append(_checked_header(name, value))

    def headers(self) -> dict[str, str]:
        """
        :returns: a fresh dict of the headers set, Content-Type included;
            repeated names appear once, their values joined by ``", "``.
        """
        result: dict[str, str] = {}
        spelled: dict[str, str] = {}
        for name, value in self._headers:
            key = spelled.setdefault(name.lower(), name)
            result[key] = f"{result[key]}, {value}" if key in result else value
        return result

    def headerLines(self) -> list[tuple[str, str]]:
        """:returns: every header line as ``(name, value)``, in order."""
        return list(self._headers)

    def header(self, name: str) -> str:
        """:returns: the last value set for header ``name`` (any case), or ``""``."""
        lower = name.lower()
        for key, value in reversed(self._headers):
            if key.lower() == lower:
                return value
        return ""

    def contentType(self) -> str:
        """:returns: the Content-Type header's value."""
        return self.header("Content-Type")

    def body(self) -> bytes:
        """:returns: a copy of the body; ``b""`` for a file response."""
        return bytes(self._body)

    def setBody(self, body: Body, content_type: str = "text/html") -> None:
        """Replace the body and the Content-Type; the response is no longer a file."""
        self._body = _encode_body(body)
        self._file_path = None
        self._delete_file = False
        self.setHeader("Content-Type", content_type)

    def contentLength(self) -> int:
        """:returns: the body's length, or for a file its current size (0 if missing)."""
        if self._file_path is None:
            return len(self._body)
        try:
            return os.path.getsize(self._file_path)
        except OSError:
            return 0

    def isChunked(self) -> bool:
        """:returns: whether ``Transfer-Encoding: chunked`` was set."""
        return self.header("Transfer-Encoding").strip().lower() == "chunked"

    def filePath(self) -> str | None:
        """:returns: the path of the file to stream, or ``None``."""
        return self._file_path

    def deletesFile(self) -> bool:
        """:returns: whether the file is deleted once sent."""
        return self._delete_file

    def setCookie(
        self,
        name: str,
        value: str,
        max_age: int | None = None,
        expires: datetime.datetime | float | str | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        http_only: bool = True,
        same_site: str | None = "Lax",
    ) -> None:
        """Add one ``Set-Cookie`` header (extension); see the README for the format."""
        self.addHeader(
            "Set-Cookie",
            _cookie(name, value, max_age, expires, path, domain, secure, http_only, same_site),
        )


def _encode_body(data: object) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"Response data must be str or bytes, not {type(data).__name__}")


def _checked_header(name: str, value: object) -> tuple[str, str]:
    text = str(value)
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    if _CTL.search(text):
        raise ValueError(f"header {name} must not contain control characters (CR, LF, NUL...)")
    return name, text


def _cookie(
    name: str,
    value: str,
    max_age: int | None,
    expires: datetime.datetime | float | str | None,
    path: str | None,
    domain: str | None,
    secure: bool,
    http_only: bool,
    same_site: str | None,
) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid cookie name {name!r}")
    if not _COOKIE_OCTETS.fullmatch(value):
        raise ValueError(f"cookie value {value!r} has characters a cookie cannot hold")
    if same_site not in _SAME_SITE:
        raise ValueError("same_site must be 'Strict', 'Lax', 'None' or None")
    if same_site == "None" and not secure:
        raise ValueError("same_site='None' requires secure=True")
    parts = [f"{name}={value}"]
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    if expires is not None:
        parts.append(f"Expires={_http_date(expires)}")
    for attribute, setting in (("Path", path), ("Domain", domain)):
        if setting is not None:
            _checked_header(attribute, setting)
            if ";" in setting:
                raise ValueError(f"cookie {attribute} must not contain ';'")
            parts.append(f"{attribute}={setting}")
    parts += [flag for flag, on in (("Secure", secure), ("HttpOnly", http_only)) if on]
    if same_site is not None:
        parts.append(f"SameSite={same_site}")
    return "; ".join(parts)


def _http_date(when: datetime.datetime | float | str) -> str:
    if isinstance(when, str):
        return when
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        when = when.timestamp()
    return email.utils.formatdate(float(when), usegmt=True)


def _accepts_json(request: Request) -> bool:
    accept = request.header("Accept")
    return any(
        part.split(";", 1)[0].strip().lower() == "application/json" for part in accept.split(",")
    )


_PAGE = (
    '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>'
    "<body>{content}</body></html>\n"
)


def html_page(title: str, content: str) -> str:
    """:returns: houweb's minimal HTML page around already escaped ``content``."""
    return _PAGE.format(title=html.escape(title), content=content)


def json_body(value: object) -> str:
    """:returns: ``value`` as houweb's JSON (no NaN), or its ``str`` as a JSON string."""
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(str(value))


def errorResponse(
    request: Request,
    error_message: object,
    status: int = 500,
    use_heading: bool = True,
) -> Response:
    """
    An error answer the client can read: JSON ``{"error": ...}`` when it accepts
    JSON, an HTML page otherwise.

    :param error_message: a string, or for JSON any JSON-encodable value.
    :param use_heading: in HTML, put the message in ``<h1>`` (else ``<p>``).
    """
    if _accepts_json(request):
        return json_error(error_message, status)
    tag = "h1" if use_heading else "p"
    content = f"<{tag}>{html.escape(str(error_message))}</{tag}>"
    return Response(html_page(label(status), content), status, "text/html")


def json_error(error_message: object, status: int, **extra: object) -> Response:
    """:returns: a JSON ``{"error": ...}`` response, as ``/api`` always answers."""
    payload = {"error": error_message, **extra}
    try:
        text = json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps({"error": str(error_message), **extra})
    return Response(text, status, "application/json")


def notFoundResponse(request: Request) -> Response:
    """A 404 error response naming the requested path."""
    return errorResponse(request, "Not found: " + request.path(), 404)


def redirect(request: Request, path: str, permanent: bool = False) -> Response:
    """
    A redirect to ``path``: 301 when ``permanent``, else 302. A relative path is
    made absolute against the request's URL.
    """
    status = 301 if permanent else 302
    location = _quote_location(path)
    if not urllib.parse.urlsplit(location).scheme and request.host():
        location = request.absoluteURI(location)
    link = html.escape(location)
    content = f'<p>Redirecting to <a href="{link}">{link}</a></p>'
    response = Response(html_page(label(status), content), status, "text/html")
    response.setHeader("Location", location)
    return response


def _quote_location(path: str) -> str:
    return urllib.parse.quote(path, safe="%/:=&?~#+!$,;'@()*[]")


def guess_content_type(file_name: str) -> str:
    """
    :returns: the MIME type for ``file_name``'s extension; octet-stream when
        unknown or when the extension names a compression (``.gz``), since
        houweb never sends a Content-Encoding for files.
    """
    content_type, encoding = mimetypes.guess_type(file_name, strict=False)
    if content_type is None or encoding is not None:
        return "application/octet-stream"
    return content_type


def content_disposition(file_name: str) -> str:
    """:returns: an RFC 6266 ``attachment`` Content-Disposition for ``file_name``."""
    fallback = (
        "".join(c if 0x20 <= ord(c) < 0x7F else "_" for c in file_name)
        .replace("\\", "\\\\")
        .replace('"', '\\"')
    )
    value = f'attachment; filename="{fallback}"'
    if not file_name.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in file_name):
        value += "; filename*=UTF-8''" + urllib.parse.quote(file_name, safe="")
    return value


def fileResponse(
    file_path: PathLike,
    content_type: str | None = None,
    delete_file: bool = False,
    download_as_filename: str | None = None,
) -> Response:
    """
    A response that streams a file from disk when it is sent.

    :param content_type: guessed from the extension when ``None``.
    :param delete_file: delete the file after the transfer (also when the
        client disconnects).
    :param download_as_filename: ask the browser to save it under this name.
    """
    path = os.fspath(file_path)
    if content_type is None:
        content_type = guess_content_type(path)
    response = Response(path, 200, content_type, is_file_name=True, delete_file=delete_file)
    if download_as_filename is not None:
        response.setHeader("Content-Disposition", content_disposition(download_as_filename))
    return response
