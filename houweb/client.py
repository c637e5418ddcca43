"""
Call API functions of a houweb (or Houdini) server from Python: houweb's
counterpart of SideFX's ``webapiclient.py``.

    from houweb.client import Service, APIError, File

    svc = Service("http://127.0.0.1:8008/api", timeout=10)
    svc.geo.vector_length(1, 2, 3)          # 3.7416573867739413
    svc.images.store(name="greeting", data=File("hello.txt"))

:class:`Service` uses only the standard library and needs no reactor, so it
works from any script. :class:`AsyncService` does the same on treq for
Twisted code; its calls return Deferreds. Both speak the wire protocol of
SideFX's reference client: style B form posts, file arguments as multipart
parts named after the keyword, an optional Bearer token, and only 200 counts
as success. Nothing here imports the server side of houweb.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any, Callable

__all__ = ["APIError", "AsyncService", "File", "Service"]

OCTET_STREAM = "application/octet-stream"
_CHUNK_SIZE = 64 * 1024


class APIError(Exception):
    """
    The server answered a call with a status other than 200.

    :ivar status_code: the HTTP status (422 for the function's own
        ``APIError``, 404 for an unknown function, 500 for a crash, ...).
    :ivar message: the ``"error"`` of a JSON error body, else the body text.
    :ivar traceback: the server's traceback (debug mode only), else ``None``.
    """

    def __init__(self, status_code: int, message: object, traceback: str | None = None) -> None:
        super().__init__(status_code, message)
        self.status_code = status_code
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.status_code}: {self.message}"


class File:
    """A local file to send as an argument: pass it by keyword."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"File({self.path!r})"

    @property
    def name(self) -> str:
        """The base name the server sees as the upload's ``name()``."""
        return os.path.basename(self.path)


class _Name:
    """``svc.geo.vector_length``: dotted names built by attribute access."""

    def __init__(
        self, send: Callable[[str, tuple[Any, ...], dict[str, Any]], Any], name: str
    ) -> None:
        self._send = send
        self._name = name

    def __getattr__(self, part: str) -> _Name:
        if part.startswith("_"):
            raise AttributeError(part)
        return _Name(self._send, f"{self._name}.{part}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._send(self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<API function {self._name}>"


class _Service:
    """What both services share: naming, encoding calls and decoding answers."""

    def __init__(self, url: str, timeout: float | None = None, token: str | None = None) -> None:
        self._url = url
        self._timeout = timeout
        self._token = token

    def __getattr__(self, name: str) -> _Name:
        # Only names not found otherwise get here: each starts a call's name.
        if name.startswith("_"):
            raise AttributeError(name)
        return _Name(self._call, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


def split_call(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, dict[str, File]]:
    """
    :returns: the ``json`` field's value, and the files to send as parts.
    :raises TypeError: for a :class:`File` passed positionally.
    """
    if any(isinstance(arg, File) for arg in args):
        raise TypeError(f"{name}: pass File arguments by keyword, so their part has a name")
    files = {key: value for key, value in kwargs.items() if isinstance(value, File)}
    plain = {key: value for key, value in kwargs.items() if key not in files}
    return json.dumps([name, list(args), plain]), files


def decode_answer(status: int, content_type: str, body: bytes) -> Any:
    """
    :returns: the result of a call: ``bytes`` for ``application/octet-stream``,
        else the decoded JSON.
    :raises APIError: for any status but 200.
    """
    if status != 200:
        raise _error(status, body)
    if content_type == OCTET_STREAM:
        return body
    return json.loads(body.decode("utf-8"))


def _error(status: int, body: bytes) -> APIError:
    text = body.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        return APIError(status, text)
    if isinstance(payload, dict) and "error" in payload:
        return APIError(status, payload["error"], payload.get("traceback"))
    return APIError(status, text)


class Service(_Service):
    """
    A synchronous client on the standard library.

    :param url: the server's API endpoint, ``/api`` included.
    :param timeout: seconds to wait for the server (``None``: the socket default).
    :param token: sent as ``Authorization: Bearer <token>`` when given.
    :raises APIError: from a call the server did not answer with 200;
        network failures raise ``urllib.error.URLError``/``OSError``.
    """

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        payload, files = split_call(name, args, kwargs)
        body: Iterator[bytes] | bytes
        if files:
            body, content_type, length = _multipart(payload, files)
        else:
            body = urllib.parse.urlencode({"json": payload}).encode("ascii")
            content_type, length = "application/x-www-form-urlencoded", len(body)
        headers = {**self._headers(), "Content-Type": content_type, "Content-Length": str(length)}
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return decode_answer(
                    response.status, response.headers.get("Content-Type", ""), response.read()
                )
        except urllib.error.HTTPError as exc:
            with exc:
                raise _error(exc.code, exc.read()) from None


def _multipart(payload: str, files: dict[str, File]) -> tuple[Iterator[bytes], str, int]:
    """
    :returns: a multipart body streamed from disk (the ``json`` field first,
        then one part per file), its Content-Type and its length.
    """
    boundary = f"houweb-{uuid.uuid4().hex}"
    head = _part_head(boundary, 'name="json"', "") + payload.encode("utf-8") + b"\r\n"
    heads = [
        _part_head(boundary, f'name="{_quote(key)}"; filename="{_quote(file.name)}"', OCTET_STREAM)
        for key, file in files.items()
    ]
    tail = f"--{boundary}--\r\n".encode("ascii")
    sizes = sum(os.path.getsize(file.path) for file in files.values())
    length = len(head) + sum(len(h) + 2 for h in heads) + sizes + len(tail)

    def body() -> Iterator[bytes]:
        yield head
        for part_head, file in zip(heads, files.values()):
            yield part_head
            with open(file.path, "rb") as stream:
                yield from iter(lambda: stream.read(_CHUNK_SIZE), b"")
            yield b"\r\n"
        yield tail

    return body(), f"multipart/form-data; boundary={boundary}", length


def _part_head(boundary: str, disposition: str, content_type: str) -> bytes:
    lines = [f"--{boundary}", f"Content-Disposition: form-data; {disposition}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")


class AsyncService(_Service):
    """
    The same client for Twisted code, on treq: calls return Deferreds (so
    ``await`` works in ``async def``) that fail with :class:`APIError`.
    """

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            import treq
        except ImportError:  # pragma: no cover - treq is a test dependency
            raise ImportError("AsyncService needs treq: pip install treq") from None
        from twisted.internet.defer import ensureDeferred

        payload, files = split_call(name, args, kwargs)
        return ensureDeferred(self._send(treq, payload, files))

    async def _send(self, treq: Any, payload: str, files: dict[str, File]) -> Any:
        streams = {key: open(file.path, "rb") for key, file in files.items()}
        try:
            response = await treq.post(
                self._url,
                data={"json": payload},
                files={
                    key: (files[key].name, OCTET_STREAM, stream) for key, stream in streams.items()
                }
                or None,
                headers=self._headers(),
                timeout=self._timeout,
            )
            body = await treq.content(response)
        finally:
            for stream in streams.values():
                stream.close()
        content_type = (response.headers.getRawHeaders("Content-Type") or [""])[0]
        return decode_answer(response.code, content_type, body)
