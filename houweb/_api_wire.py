"""
The ``/api`` wire protocol: reading a call out of a request, and turning a
function's result into the response body. Parsing and encoding only; nothing
here calls a function.

A call arrives in one of three spellings (spec §13.3):

- style B: a form field ``json`` holding ``[name, args, kwargs]``;
- style A: a form field ``cmd_function`` naming the function, every other
  field a string keyword argument;
- a JSON body (``Content-Type: application/json``) holding the same array.

In a multipart body, each uploaded file becomes a keyword argument named
after its part.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from . import _json_pieces
from ._big_body import PiecedResponse
from ._forms import BodyError, check_size
from ._request import Request, body_size
from ._response import Response
from ._settings import DEFAULT_DATA_UPLOAD_MAX_MEMORY_SIZE

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
JSON_TYPE = "application/json"
OCTET_STREAM = "application/octet-stream"


class CallError(ValueError):
    """A request that does not spell a call; the message says what is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class APICall:
    """What the client asked for: a function name and its arguments."""

    name: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_call(
    request: Request, max_size: int | None = DEFAULT_DATA_UPLOAD_MAX_MEMORY_SIZE
) -> APICall:
    """
    :param max_size: ``DATA_UPLOAD_MAX_MEMORY_SIZE``: the largest JSON or
        url-encoded body decoded (``None``: no limit).
    :returns: the call a ``POST /api`` request spells.
    :raises CallError: (400) naming what is missing or malformed; (413) for
        a body above ``max_size``.
    """
    content_type = _media_type(request.contentType())
    if content_type == JSON_TYPE:
        try:
            check_size(body_size(request), max_size, "JSON body")
        except BodyError as exc:
            raise CallError(str(exc), exc.status) from None
        return _with_files(_from_json_body(request.body()), request)
    if content_type not in FORM_TYPES and body_size(request):
        raise CallError(f"unsupported Content-Type {content_type!r} for /api")
    try:
        form = request.POST()
    except BodyError as exc:
        raise CallError(str(exc), exc.status) from None
    if "json" in form:
        return _with_files(_from_json(form["json"], "form field 'json'"), request)
    if "cmd_function" in form:
        return _with_files(_from_fields(form), request)
    raise CallError("missing form field 'json' or 'cmd_function'")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _from_json_body(body: bytes) -> APICall:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CallError(f"request body could not be decoded: {exc}") from None
    return _from_json(text, "request body")


def _from_json(text: str, where: str) -> APICall:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CallError(f"{where} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CallError(f"{where} is nested too deeply to decode") from None
    if not (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and value[0]
        and isinstance(value[1], list)
        and isinstance(value[2], dict)
    ):
        raise CallError(f"{where} must be a JSON array [name, args, kwargs]")
    return APICall(value[0], value[1], value[2])


def _from_fields(form: dict[str, str]) -> APICall:
    name = form["cmd_function"]
    if not name:
        raise CallError("form field 'cmd_function' is empty")
    kwargs = {key: value for key, value in form.items() if key != "cmd_function"}
    return APICall(name, [], kwargs)


def _with_files(call: APICall, request: Request) -> APICall:
    """Add each uploaded file as a keyword argument named after its part."""
    files = request.files()
    if not files:
        return call
    clash = sorted(set(files) & set(call.kwargs))
    if clash:
        raise CallError(f"argument {clash[0]!r} is given both as a file and in the call")
    return APICall(call.name, call.args, {**call.kwargs, **files})


class ResultError(TypeError):
    """A function's result cannot be sent; the message names its type."""


def encode_result(
    result: object, name: str, return_binary: bool, large: _json_pieces.Pacing | None = None
) -> Response:
    """
    :param large: how the encoding of a large JSON result lets other
        threads run (the server's :meth:`~houweb._priority.SmallFirst.large_result`:
        it steps aside while other requests are in flight); see
        :func:`houweb._json_pieces.encode`.
    :returns: the 200 answer for ``result``: a Response as is (with
        ``return_binary``, as ``application/octet-stream`` whatever it said,
        so that clients read a ``fileResponse`` as binary), bytes as
        ``application/octet-stream``, anything else as JSON.
    :raises ResultError: for a result that cannot be sent.
    """
    if isinstance(result, Response):
        if return_binary:
            result.setHeader("Content-Type", OCTET_STREAM)
        return result
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result), content_type=OCTET_STREAM)
    if return_binary:
        if isinstance(result, str):
            return Response(result.encode("utf-8"), content_type=OCTET_STREAM)
        raise ResultError(
            f"result of {name} cannot be sent as binary: object of type {type(result).__name__}"
        )
    pieces = _json_text(result, name, large)
    if len(pieces) == 1:
        return Response(pieces[0], content_type=JSON_TYPE)
    return PiecedResponse(pieces, content_type=JSON_TYPE)


def _json_text(result: object, name: str, large: _json_pieces.Pacing | None) -> list[bytes]:
    """:returns: the JSON text of ``result``, in UTF-8 pieces. :raises ResultError: if it has none."""
    try:
        return _json_pieces.encode(result, allow_nan=False, default=_refuse, large=large)
    except _Unencodable as exc:
        reason = f"object of type {exc.args[0]}"
    except TypeError as exc:
        # JSON's own: a dict key of another type than str, int, float, bool or None.
        reason = str(exc)
    except RecursionError:
        reason = "it is nested too deeply"
    except ValueError as exc:
        if "circular" in str(exc).lower():
            reason = "it contains a circular reference (a list or dict inside itself)"
        else:
            non_finite = _non_finite(_json_pieces.failed_part(exc, result))
            reason = f"out of range float value {non_finite}" if non_finite else str(exc)
    raise ResultError(f"result of {name} is not JSON serializable: {reason}")


class _Unencodable(TypeError):
    pass


def _refuse(value: object) -> object:
    raise _Unencodable(type(value).__name__)


def _non_finite(value: object) -> str | None:
    """
    :returns: ``nan``, ``inf`` or ``-inf``: the first such float in
        ``value`` (``None`` if there is none); each container is looked into
        once, so a cycle ends.
    """
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return repr(item)
        if isinstance(item, (dict, list, tuple)):
            if id(item) in seen:
                continue
            seen.add(id(item))
        if isinstance(item, dict):
            stack.extend(reversed([*item.keys(), *item.values()]))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
    return None
