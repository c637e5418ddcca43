"""The body houweb takes from twisted.web (houweb/_body.py) and its readers."""

from __future__ import annotations

import io
import tempfile

import pytest

from houweb._body import RequestBody


def _stored(kind: str, data: bytes) -> io.BytesIO | tempfile.SpooledTemporaryFile[bytes]:
    if kind == "memory":
        return io.BytesIO(data)
    stored = tempfile.TemporaryFile()
    stored.write(data)
    return stored  # type: ignore[return-value]


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_each_reader_has_its_own_position_and_outlives_close(kind):
    body = RequestBody(_stored(kind, b"hello world"))
    first, second = body.reader(), body.reader()
    assert first.read(5) == b"hello"
    first.close()  # twisted.web closes its reader when the response is finished
    assert first.read() == b" world"
    assert first.seek(0) == 0 and first.read(5) == b"hello"
    assert second.read() == b"hello world"
    assert body.read_all() == b"hello world" and len(body) == 11
