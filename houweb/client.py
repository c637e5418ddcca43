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

import http.client
import io
import json
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any, Callable

__all__ = ["APIError", "AsyncService", "File", "ResponseFile", "Service"]

OCTET_STREAM = "application/octet-stream"
JSON_TYPE = "application/json"
_CHUNK_SIZE = 64 * 1024
#: How often a call answered 429 is tried again, by default.
RETRIES = 3
#: The first wait before trying a 429 again (doubled each time) and the longest.
BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: A binary result AsyncService receives stays in memory up to this size,
#: and is spooled to a temp file beyond it.
SPOOL_SIZE = 1024 * 1024


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
    """What both services share: naming, encoding calls, decoding answers, retrying."""

    def __init__(
        self,
        url: str,
        timeout: float | None = None,
        token: str | None = None,
        retries: int = RETRIES,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._token = token
        self._retries = retries

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

    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _wait_before_retry(
        self, attempt: int, error: APIError, retry_after: str | None, deadline: float | None
    ) -> float:
        """
        :returns: the seconds to wait before trying a call answered 429 again:
            ``Retry-After`` when it gives seconds, else an exponential backoff.
        :raises APIError: ``error``, when the retries are used up or the wait
            would pass the call's deadline.
        """
        if attempt >= self._retries:
            raise error
        wait: float = BACKOFF * 2.0**attempt
        if retry_after is not None and retry_after.strip().isdigit():
            wait = float(retry_after.strip())
        wait = min(wait, MAX_BACKOFF)
        if deadline is not None and time.monotonic() + wait >= deadline:
            raise error
        return wait


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


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_binary(status: int, content_type: str) -> bool:
    """:returns: whether an answer is a binary result (200 ``application/octet-stream``)."""
    return status == 200 and _media_type(content_type) == OCTET_STREAM


def decode_answer(status: int, content_type: str, body: bytes, location: str | None = None) -> Any:
    """
    :returns: the result of a call: ``bytes`` for ``application/octet-stream``,
        the decoded JSON for ``application/json``.
    :raises APIError: for any status but 200 (a redirect included: it is
        never followed, so a token never goes to another server), and for a
        200 that is neither JSON nor binary (a proxy's HTML page, say).
    """
    if status != 200:
        error = _error(status, body)
        if 300 <= status < 400:
            error.message = f"redirected to {location or '(no Location)'}; not followed"
        raise error
    kind = _media_type(content_type)
    if kind == OCTET_STREAM:
        return body
    text = body.decode("utf-8", "replace")
    if kind != JSON_TYPE:
        raise APIError(
            status, f"expected a JSON answer, got {kind or 'no Content-Type'}: {text[:200]}"
        )
    try:
        return json.loads(text)
    except ValueError as exc:
        raise APIError(status, f"the answer is not valid JSON ({exc}): {text[:200]}") from None


def _error(status: int, body: bytes) -> APIError:
    text = body.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        return APIError(status, text)
    if isinstance(payload, dict) and "error" in payload:
        return APIError(status, payload["error"], payload.get("traceback"))
    return APIError(status, text)


class ResponseFile(io.RawIOBase):
    """
    A binary result, read from the connection as the caller asks (like
    SideFX's ``ResponseFile``): ``read()``, ``read(n)``, iteration in lines,
    ``with``. Close it (or leave the ``with``) to free the connection. Each
    read waits at most the service's ``timeout`` for the next bytes.

    :param response: the answer, its headers read.
    :param connection: the connection it came on, closed with this file.
    """

    def __init__(self, response: http.client.HTTPResponse, connection: Any) -> None:
        super().__init__()
        self._response = response
        self._connection = connection
        length = response.getheader("Content-Length")
        #: The size the server announced, ``None`` when it did not.
        self.size: int | None = int(length) if length and length.isdigit() else None
        self._received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        """
        :raises http.client.IncompleteRead: when the connection ends before the
            announced size (``read1`` would simply return ``b""``, so a cut
            download would pass for a complete, shorter one).
        """
        if self.closed:
            raise ValueError("read of a closed ResponseFile")
        data = self._response.read1(len(buffer))
        if not data and len(buffer) and self.size is not None and self._received < self.size:
            raise http.client.IncompleteRead(b"", self.size - self._received)
        self._received += len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._response.close()
            self._connection.close()
        super().close()


class _Watchdog:
    """
    Ends a call that is not over by its deadline, whatever it is waiting for
    (a connection, headers, a body trickling in a byte at a time), by shutting
    its socket down from a timer thread.
    """

    def __init__(self, connection: Any, deadline: float | None) -> None:
        self.fired = False
        self._connection = connection
        self._timer: threading.Timer | None = None
        if deadline is not None:
            self._timer = threading.Timer(max(deadline - time.monotonic(), 0), self._fire)
            self._timer.daemon = True

    def start(self) -> None:
        if self._timer is not None:
            self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        self.fired = True
        sock = self._connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Service(_Service):
    """
    A synchronous client on the standard library.

    :param url: the server's API endpoint, ``/api`` included.
    :param timeout: the most seconds a call may take, from connecting to the
        last byte of its answer (``None``: no limit, the socket default);
        for a binary result, until its headers, then per read.
    :param token: sent as ``Authorization: Bearer <token>`` when given.
    :param retries: how often a call answered ``429 Too Many Requests`` is
        tried again, after ``Retry-After`` seconds or an exponential backoff.
    :raises APIError: from a call the server did not answer with 200, and for
        an answer that is neither JSON nor binary; a binary result is a
        :class:`ResponseFile`. Network failures raise ``urllib.error.URLError``
        (``OSError``), and a call past its timeout ``TimeoutError``.
    """

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        payload, files = split_call(name, args, kwargs)
        deadline = self._deadline()
        attempt = 0
        while True:
            status, headers, result = self._attempt(payload, files, deadline)
            if status != 429:
                return result
            wait = self._wait_before_retry(attempt, result, headers.get("Retry-After"), deadline)
            time.sleep(wait)
            attempt += 1

    def _attempt(
        self, payload: str, files: dict[str, File], deadline: float | None
    ) -> tuple[int, Any, Any]:
        """
        One try of a call. :returns: the status, the headers, and the result
            (for a 429, the :class:`APIError` to raise if no retry is left).
        """
        body: Iterator[bytes] | bytes
        if files:
            body, content_type, length = _multipart(payload, files)
        else:
            body = urllib.parse.urlencode({"json": payload}).encode("ascii")
            content_type, length = "application/x-www-form-urlencoded", len(body)
        headers = {**self._headers(), "Content-Type": content_type, "Content-Length": str(length)}
        # Connecting may take what is left of the call's time, no more (a retry
        # comes late in it); each read of the answer then the whole timeout.
        left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
        connection, target = _connection(self._url, self._timeout if left is None else left)
        watchdog = _Watchdog(connection, deadline)
        try:
            try:
                connection.connect()
            except socket.timeout:
                raise TimeoutError(f"no answer within {self._timeout:g} seconds") from None
            except OSError as exc:
                raise urllib.error.URLError(exc) from None
            if connection.sock is not None:
                connection.sock.settimeout(self._timeout)
            watchdog.start()
            try:
                connection.request("POST", target, body=body, headers=headers)
            except OSError as exc:
                # The server may answer before the whole body is sent (413 for
                # a body over its limit) and close: its answer says why.
                response = _early_answer(connection, exc)
            else:
                response = connection.getresponse()
            answer_type = response.getheader("Content-Type", "")
            if is_binary(response.status, answer_type):
                watchdog.stop()
                if watchdog.fired:
                    raise TimeoutError(f"no answer within {self._timeout:g} seconds")
                return response.status, response.headers, ResponseFile(response, connection)
            data = response.read()
            watchdog.stop()
        except Exception:
            watchdog.stop()
            connection.close()
            if watchdog.fired:
                raise TimeoutError(f"no complete answer within {self._timeout:g} seconds") from None
            raise
        connection.close()
        if watchdog.fired:
            raise TimeoutError(f"no complete answer within {self._timeout:g} seconds")
        try:
            result = decode_answer(
                response.status, answer_type, data, response.getheader("Location")
            )
        except APIError as exc:
            if response.status != 429:
                raise
            result = exc
        return response.status, response.headers, result


def _early_answer(connection: Any, send_error: OSError) -> http.client.HTTPResponse:
    """
    :returns: the answer a server sent before it stopped reading the body.
    :raises OSError: ``send_error``, when there is none to read.
    """
    try:
        response: http.client.HTTPResponse = connection.getresponse()
        return response
    except (OSError, http.client.HTTPException):
        raise send_error from None


def _connection(url: str, timeout: float | None) -> tuple[Any, str]:
    """:returns: an unconnected HTTP(S) connection to ``url``'s server, and the target to post to."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    arguments: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    connection = kind(parts.hostname, parts.port, **arguments)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return connection, target


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
    ``await`` works in ``async def``) that fail with :class:`APIError`. The
    same ``timeout`` (the whole call), ``retries`` on 429, no redirects; a
    binary result is a file object (a ``SpooledTemporaryFile`` at its start:
    in memory up to :data:`SPOOL_SIZE`, on disk beyond), never held whole in
    memory.
    """

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            import treq
        except ImportError:  # pragma: no cover - treq is a test dependency
            raise ImportError("AsyncService needs treq: pip install treq") from None
        from twisted.internet import reactor
        from twisted.internet.defer import ensureDeferred

        payload, files = split_call(name, args, kwargs)
        d = ensureDeferred(self._send(treq, reactor, payload, files))
        if self._timeout is not None:
            timeout = self._timeout

            def timed_out(result: Any, seconds: float) -> Any:
                raise TimeoutError(f"no complete answer within {timeout:g} seconds")

            d.addTimeout(timeout, reactor, onTimeoutCancel=timed_out)
        return d

    async def _send(self, treq: Any, reactor: Any, payload: str, files: dict[str, File]) -> Any:
        from twisted.internet.task import deferLater

        deadline = self._deadline()
        attempt = 0
        while True:
            status, retry_after, result = await self._attempt(treq, payload, files)
            if status != 429:
                return result
            wait = self._wait_before_retry(attempt, result, retry_after, deadline)
            await deferLater(reactor, wait, lambda: None)
            attempt += 1

    async def _attempt(
        self, treq: Any, payload: str, files: dict[str, File]
    ) -> tuple[int, Any, Any]:
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
                allow_redirects=False,
            )
            content_type = (response.headers.getRawHeaders("Content-Type") or [""])[0]
            if is_binary(response.code, content_type):
                spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE)
                try:
                    await treq.collect(response, spool.write)
                except BaseException:
                    spool.close()
                    raise
                spool.seek(0)
                return response.code, None, spool
            body = await treq.content(response)
        finally:
            for stream in streams.values():
                stream.close()
        location = (response.headers.getRawHeaders("Location") or [None])[0]
        retry_after = (response.headers.getRawHeaders("Retry-After") or [None])[0]
        try:
            return (
                response.code,
                retry_after,
                decode_answer(response.code, content_type, body, location),
            )
        except APIError as exc:
            if response.code != 429:
                raise
            return response.code, retry_after, exc
