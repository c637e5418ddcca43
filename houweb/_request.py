"""
:class:`Request`: an immutable snapshot of one HTTP request.

The site builds it on the reactor thread from plain values; every method is
safe to call from any thread, and each returns a fresh value.
"""

from __future__ import annotations

import copy
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Callable, Union

from ._body import RequestBody
from ._forms import LazyForm

if TYPE_CHECKING:
    from ._response import Response
    from ._uploads import UploadedFile

#: What a Request's body is given as: bytes, a file (read under a lock), or
#: the :class:`RequestBody` houweb took from twisted.web, which the Request
#: then owns.
BodySource = Union[bytes, IO[bytes], RequestBody]


class HeaderDict(dict):  # type: ignore[type-arg]
    """
    A ``dict`` of headers whose lookups ignore case; keys keep their spelling.
    Lookups in another case go through an index of the lowercased names
    (one dict lookup), falling back on a scan only for keys added later.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._lower = {key.lower(): key for key in self if isinstance(key, str)}

    def _key(self, name: object) -> object:
        if isinstance(name, str) and not dict.__contains__(self, name):
            lower = name.lower()
            key = self._lower.get(lower)
            if key is not None and dict.__contains__(self, key):
                return key
            for key in self:
                if isinstance(key, str) and key.lower() == lower:
                    return key
        return name

    def __getitem__(self, name: object) -> str:
        return dict.__getitem__(self, self._key(name))  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, self._key(name))

    def get(self, name: object, default: object = None) -> object:
        return dict.get(self, self._key(name), default)


def header_index(lines: Sequence[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """
    :returns: each header by its lowercased name: ``(name as first spelled,
        every value joined by ", ")``, built in one pass over ``lines``.
    """
    spelled: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    for name, value in lines:
        lower = name.lower()
        spelled.setdefault(lower, name)
        values.setdefault(lower, []).append(value)
    return {lower: (spelled[lower], ", ".join(found)) for lower, found in values.items()}


def _last(lists: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return {name: values[-1] for name, values in lists.items()}


class Request:
    """
    One request, as a handler sees it. Made by houweb, never by handlers.
    """

    def __init__(
        self,
        *,
        method: str,
        path: str,
        target: str,
        header_lines: Sequence[tuple[str, str]],
        local_address: tuple[str, int],
        client_address: tuple[str, int],
        protocol: str = "HTTP/1.1",
        secure: bool = False,
        body: BodySource = b"",
        get_lists: Mapping[str, Sequence[str]] | None = None,
        post_lists: Mapping[str, Sequence[str]] | None = None,
        files: Mapping[str, UploadedFile] | None = None,
        sender: Callable[[Response], None] | None = None,
        form: LazyForm | None = None,
    ) -> None:
        self._method = method
        self._path = path
        self._target = target
        self._query = target.partition("?")[2]
        self._header_lines = tuple(header_lines)
        #: :func:`header_index` of the header lines, built on first use.
        self._header_index: dict[str, tuple[str, str]] | None = None
        self._local = local_address
        self._client = client_address
        self._protocol = protocol
        self._secure = secure
        self._body = body
        self._body_lock = threading.Lock()
        self._get_lists = dict(get_lists) if get_lists else {}
        self._post_lists = dict(post_lists) if post_lists else {}
        self._files = dict(files) if files else {}
        self._sender = sender
        #: An url-encoded body, parsed on first use (instead of post_lists).
        self._form = form

    def __repr__(self) -> str:
        return f"<Request {self._method} {self._target}>"

    def method(self) -> str:
        """:returns: the method as sent: ``"GET"``, ``"PATCH"``, ..."""
        return self._method

    def path(self) -> str:
        """:returns: the percent-decoded path, without the query string."""
        return self._path

    def queryString(self) -> str:
        """:returns: the raw query string without ``?``, ``""`` when none."""
        return self._query

    def pathWithQueryString(self) -> str:
        """:returns: the path followed by ``?`` and the raw query, when there is one."""
        return f"{self._path}?{self._query}" if self._query else self._path

    def absoluteURI(self, location: str | None = None) -> str:
        """
        :returns: the full URL of this request; with ``location``, that location
            resolved against it.
        """
        host = self.host() or _host_port(self._local)
        scheme = "https" if self._secure else "http"
        uri = f"{scheme}://{host}{self._target}"
        return urllib.parse.urljoin(uri, location) if location is not None else uri

    def isSecure(self) -> bool:
        """:returns: whether the request arrived over TLS."""
        return self._secure

    def headers(self) -> dict[str, str]:
        """
        :returns: the headers, names spelled as sent, looked up in any case;
            repeated headers joined by ``", "``.
        """
        return HeaderDict(self._headers_by_name().values())

    def header(self, name: str, default: str = "") -> str:
        """:returns: one header's value (any case), repeats joined."""
        found = self._headers_by_name().get(name.lower()) if isinstance(name, str) else None
        return str(default) if found is None else found[1]

    def _headers_by_name(self) -> dict[str, tuple[str, str]]:
        """
        The header index, built once per Request (a request with hundreds
        of headers must not cost hundreds of scans per lookup). Threads that
        race to build it build the same value; either one is kept.
        """
        index = self._header_index
        if index is None:
            index = self._header_index = header_index(self._header_lines)
        return index

    def cookies(self) -> dict[str, str]:
        """:returns: the cookies sent, by name (the last one of a name wins)."""
        cookies: dict[str, str] = {}
        for name, value in self._header_lines:
            if name.lower() != "cookie":
                continue
            for piece in value.split(";"):
                key, eq, val = piece.partition("=")
                if eq and key.strip():
                    cookies[key.strip()] = val.strip().strip('"')
        return cookies

    def GET(self) -> dict[str, str]:
        """:returns: the query fields (the last value of a repeated name wins)."""
        return _last(self._get_lists)

    def GETLists(self) -> dict[str, list[str]]:
        """:returns: every value of every query field, in order (extension)."""
        return {name: list(values) for name, values in self._get_lists.items()}

    def POST(self) -> dict[str, str]:
        """
        :returns: the form fields of an urlencoded or multipart body. An
            urlencoded body is parsed on the first call, in the calling thread.
        :raises BodyError: the form is larger than DATA_UPLOAD_MAX_MEMORY_SIZE
            (status 413), has more fields than DATA_UPLOAD_MAX_NUMBER_FIELDS or
            is not valid (400); uncaught, houweb answers with that status.
        """
        return _last(self._post())

    def POSTLists(self) -> dict[str, list[str]]:
        """:returns: every value of every form field, in order (extension); raises as POST()."""
        return {name: list(values) for name, values in self._post().items()}

    def _post(self) -> Mapping[str, Sequence[str]]:
        if self._form is None:
            return self._post_lists
        return self._form.fields(self.body)

    def files(self) -> dict[str, UploadedFile]:
        """:returns: the uploaded files, keyed by form field name."""
        return dict(self._files)

    def body(self) -> bytes:
        """
        :returns: the raw body, ``b""`` when there is none (loads it whole).
            It can be read for as long as the Request is referenced, also
            after the client left or the response was sent.
        """
        if isinstance(self._body, bytes):
            return self._body
        if isinstance(self._body, RequestBody):
            return self._body.read_all()
        with self._body_lock:
            self._body.seek(0)
            return self._body.read()

    def contentLength(self) -> int:
        """:returns: the Content-Length sent, ``0`` when absent."""
        value = self.header("Content-Length", "0")
        return int(value) if value.isdigit() else 0

    def contentType(self) -> str:
        """:returns: the Content-Type sent, parameters included; ``""`` when absent."""
        return self.header("Content-Type")

    def host(self) -> str:
        """:returns: the Host header as sent, ``""`` when absent."""
        return self.header("Host")

    def port(self) -> int:
        """:returns: the local port the request arrived on."""
        return self._local[1]

    def protocol(self) -> str:
        """:returns: ``"HTTP/1.1"`` or ``"HTTP/1.0"``."""
        return self._protocol

    def clientAddress(self) -> tuple[str, int]:
        """:returns: the client's IP address and port (extension)."""
        return self._client

    def serverAddress(self) -> tuple[str, int]:
        """
        :returns: the local IP address and port the request arrived on, in
            the shape of :meth:`clientAddress` (hwebserver).
        """
        return self._local

    def send(self, response: Response) -> None:
        """
        Answer now; only in ``AsyncURLHandler.handle``.

        :raises RuntimeError: anywhere else.
        """
        if self._sender is None:
            raise RuntimeError("Request.send() works only in AsyncURLHandler.handle()")
        self._sender(response)


def body_size(request: Request) -> int:
    """:returns: the size of ``request``'s body in bytes, without reading it."""
    body = request._body
    if isinstance(body, (bytes, RequestBody)):
        return len(body)
    with request._body_lock:
        return body.seek(0, 2)


def with_sender(request: Request, sender: Callable[[Response], None]) -> Request:
    """
    :returns: a copy of ``request`` whose :meth:`~Request.send` calls
        ``sender``, for the handlers that answer through it (``AsyncURLHandler``).
    """
    answering = copy.copy(request)
    answering._sender = sender
    return answering


def _host_port(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
