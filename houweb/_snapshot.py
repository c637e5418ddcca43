"""
Turning a twisted.web request into a :class:`houweb.Request`, on the reactor
thread, before any handler sees it.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

from ._bindings import is_api_path
from ._forms import LazyForm, parse_form
from ._request import Request
from ._response import Response, errorResponse, json_error

if TYPE_CHECKING:  # for the hints: the twisted.web request houweb receives
    from ._channel import HouwebRequest

FORM_URLENCODED = "application/x-www-form-urlencoded"


class BadRequest(ValueError):
    """
    The request cannot be handled as sent; the message says why and
    :attr:`status` is the answer's status (400, 413 for oversized forms, 507
    for a body the full disk could not hold).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def response(self, request: Request) -> Response:
        """:returns: the error answer: always JSON on ``/api``, errorResponse style elsewhere."""
        if is_api_path(request.path()):
            return json_error(str(self), self.status)
        return errorResponse(request, str(self), self.status)


def decode_path(raw_target: bytes) -> str:
    """
    :returns: the percent-decoded (UTF-8) path of a raw origin-form request
        target (the channel reduced an absolute-form one to that).
    :raises BadRequest: for a target that does not start with ``/``, or on
        invalid percent-encoding or UTF-8.
    """
    raw_path = raw_target.split(b"?", 1)[0]
    if not raw_path.startswith(b"/"):
        raise BadRequest("the request target must be a path starting with '/'")
    try:
        text = raw_path.decode("ascii")
        if "%" in text:
            _check_escapes(text)
            text = urllib.parse.unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("invalid percent-encoding or UTF-8 in the request path") from None
    if "\x00" in text:
        raise BadRequest("invalid percent-encoding or UTF-8 in the request path")
    return text


def _check_escapes(text: str) -> None:
    pieces = text.split("%")
    for piece in pieces[1:]:
        if len(piece) < 2 or not all(c in "0123456789abcdefABCDEF" for c in piece[:2]):
            raise UnicodeDecodeError("ascii", b"", 0, 1, "bad escape")


def snapshot(
    web_request: HouwebRequest, path: str, parse: bool = True, settings: Any = None
) -> Request:
    """
    Build the Request a handler sees from the twisted.web request ``web_request``.
    An urlencoded body is not parsed here (on the reactor) but on first use,
    by whoever reads it (see ``_forms``).

    :param parse: decode the query string and form body (an error answer for
        a request that cannot be decoded does without them).
    :param settings: the server's :class:`~houweb._settings.Settings` (the
        form limits); Django's defaults when ``None``.
    :raises BadRequest: for a query string that is not valid percent-encoded
        UTF-8, or a body that could not be parsed (multipart) or stored (the
        disk full).
    """
    target = web_request.uri.decode("latin-1")
    header_lines = web_request.houweb_header_lines
    content = getattr(web_request, "houweb_body", None)
    get_lists: dict[str, list[str]] = {}
    post_lists: dict[str, list[str]] = {}
    files: dict[str, Any] = {}
    form = None
    if parse:
        get_lists, post_lists, files = _fields(web_request, target, header_lines)
        if (
            getattr(web_request, "houweb_form", None) is None
            and not getattr(web_request, "houweb_raw_body", False)  # a WSGI app decodes its own
            and web_request.houweb_media_type() == FORM_URLENCODED
        ):
            form = _lazy_form(web_request, settings)
    channel = web_request.channel
    host = getattr(channel, "houweb_local", None) or web_request.getHost()
    client = web_request.getClientAddress()
    return Request(
        method=web_request.method.decode("latin-1"),
        path=path,
        target=target,
        header_lines=header_lines,
        local_address=(getattr(host, "host", ""), getattr(host, "port", 0)),
        client_address=(getattr(client, "host", ""), getattr(client, "port", 0)),
        protocol=web_request.clientproto.decode("latin-1"),
        secure=bool(getattr(channel, "houweb_secure", False)),
        body=content if content is not None else b"",
        get_lists=get_lists,
        post_lists=post_lists,
        files=files,
        form=form,
    )


def _lazy_form(web_request: HouwebRequest, settings: Any) -> LazyForm:
    size = getattr(web_request, "houweb_received", 0)
    if settings is None:
        return LazyForm(size)
    return LazyForm(
        size, settings.data_upload_max_memory_size, settings.data_upload_max_number_fields
    )


def _fields(
    web_request: HouwebRequest, target: str, header_lines: list[tuple[str, str]]
) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, Any]]:
    """:returns: the query fields, the form fields and the uploaded files."""
    body_error = getattr(web_request, "houweb_body_error", None)
    if body_error is not None:
        raise BadRequest(str(body_error), body_error.status)
    query = target.partition("?")[2]
    try:
        get_lists = parse_form(query) if query else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"invalid percent-encoding or UTF-8 in the query: {exc}") from None
    form = getattr(web_request, "houweb_form", None)
    if form is not None:
        post_lists, files = form
        return get_lists, post_lists, files
    return get_lists, {}, {}
