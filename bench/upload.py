"""A client that streams a large multipart upload without holding it in memory."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator

BOUNDARY = "houweb-bench-boundary"
_CHUNK = b"\0" * (1 << 20)


def _body(size: int) -> tuple[int, Iterator[bytes]]:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode("ascii")
    tail = f"\r\n--{BOUNDARY}--\r\n".encode("ascii")

    def chunks() -> Iterator[bytes]:
        yield head
        left = size
        while left > 0:
            piece = _CHUNK if left >= len(_CHUNK) else _CHUNK[:left]
            left -= len(piece)
            yield piece
        yield tail

    return len(head) + size + len(tail), chunks()


def stream_upload(port: int, size: int, timeout: float = 600.0) -> float:
    """
    POST ``size`` bytes as the ``file`` field of a multipart form to
    ``/upload``, one MiB at a time.

    :returns: seconds until the whole answer arrived.
    :raises RuntimeError: unless the server answered 200 with the size.
    """
    length, chunks = _body(size)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.perf_counter()
    try:
        conn.putrequest("POST", "/upload")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        for chunk in chunks:
            conn.send(chunk)
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    elapsed = time.perf_counter() - started
    if response.status != 200 or answer.strip() != str(size).encode("ascii"):
        raise RuntimeError(f"upload answered {response.status}: {answer[:200]!r}")
    return elapsed
