"""
The common WebSocket frame, read without autobahn's frame parser: a whole,
unfragmented, masked text or binary frame from a client, with no reserved
bit set (no extension negotiated).

autobahn reads every frame through its pure-Python parser: a frame header
object, a masker object per frame, a list of fragments joined at the end, a
txaio Deferred fired per message. For the frames almost every client sends,
:func:`read_frames` does the same checks (the ones such a frame can fail:
minimal length encoding, the size limit, UTF-8 for text) and unmasks with one
C call; it stops at the first frame that is anything else (a control frame,
a fragment, reserved bits, an unmasked frame, a bad length, invalid UTF-8, a
frame over the limit), which the caller hands, with everything after it, to
autobahn unchanged, so that autobahn answers it exactly as it always did.
"""

from __future__ import annotations

from typing import Any, Callable

try:  # autobahn's C masker (NVX, a CFFI module its wheels ship built)
    from _nvx_xormasker import ffi as _ffi
    from _nvx_xormasker import lib as _lib
except ImportError:  # pragma: no cover - autobahn built without NVX
    _ffi = _lib = None

#: The first byte of a whole text frame and of a whole binary frame: FIN, no
#: reserved bits, opcode 1 or 2.
TEXT, BINARY = 0x81, 0x82
#: Payloads from this size on are unmasked by autobahn's C masker; smaller
#: ones as one big integer (cheaper than the C call's set-up).
C_MASK_FROM = 2048

#: ``deliver(text, data, size)``: one message, ``text`` (a ``str``) for a
#: text message, else ``data`` (``bytes``); ``size`` its length in bytes.
Deliver = Callable[[Any, Any, int], None]


def unmask(payload: bytes | bytearray | memoryview, mask: bytes | bytearray | memoryview) -> bytes:
    """
    :returns: ``payload`` XOR-ed with the 4-byte ``mask`` repeated (RFC
        6455 section 5.3), as new bytes.
    """
    size = len(payload)
    if not size:
        return b""
    if size >= C_MASK_FROM and _lib is not None:
        buffer = bytearray(payload)
        unmask_in_place(buffer, 0, mask)
        return bytes(buffer)
    key = int.from_bytes(bytes(mask) * ((size >> 2) + 1), "little") & ((1 << (size << 3)) - 1)
    return (int.from_bytes(payload, "little") ^ key).to_bytes(size, "little")


def unmask_in_place(buffer: bytearray, start: int, mask: bytes | bytearray | memoryview) -> None:
    """XOR ``buffer[start:]`` with the 4-byte ``mask`` repeated, in place (XOR again undoes it)."""
    size = len(buffer) - start
    if not size:
        return
    if _lib is None:  # pragma: no cover - autobahn built without NVX
        buffer[start:] = unmask(memoryview(buffer)[start:], mask)
        return
    masker = _lib.nvx_xormask_new(_ffi.from_buffer(bytes(mask)))
    try:
        _lib.nvx_xormask_process(masker, _ffi.from_buffer(buffer) + start, size)
    finally:
        _lib.nvx_xormask_free(masker)


def frame_size(data: bytes | bytearray, pos: int, limit: int) -> tuple[int, int]:
    """
    Read the header of the frame at ``data[pos:]``.

    :returns: where its payload starts and where it ends (both offsets
        into ``data``; the end may lie beyond ``data``: the frame is not all
        here yet), or ``(0, 0)`` when the frame is not a whole masked text or
        binary frame with a minimally encoded length within ``limit`` (0: no
        limit (autobahn's parser takes it), or its header is not all here
        (see :func:`header_incomplete`).
    """
    available = len(data) - pos
    if available < 6:
        return 0, 0
    first = data[pos]
    second = data[pos + 1]
    if (first != TEXT and first != BINARY) or second < 0x80:
        return 0, 0
    length = second & 0x7F
    if length < 126:
        start = pos + 6
    elif length == 126:
        if available < 8:
            return 0, 0
        start = pos + 8
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 126:
            return 0, 0
    else:
        if available < 14:
            return 0, 0
        start = pos + 14
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        if length < 0x10000 or length >> 63:
            return 0, 0
    if 0 < limit < length:
        return 0, 0
    return start, start + length


def header_incomplete(data: bytes | bytearray, pos: int) -> bool:
    """
    :returns: whether ``data[pos:]`` is the start of a masked text or binary
        frame's header, not all of it (read more before deciding who reads
        the frame: handing the start to autobahn would leave it the rest).
    """
    available = len(data) - pos
    if available < 1 or (data[pos] != TEXT and data[pos] != BINARY):
        return False
    if available < 2:
        return True
    second = data[pos + 1]
    if second < 0x80:
        return False
    length = second & 0x7F
    return available < (6 if length < 126 else 8 if length == 126 else 14)


def read_frames(data: bytes | bytearray, limit: int, deliver: Deliver) -> tuple[int, int, int, int]:
    """
    Deliver the whole frames at the start of ``data`` (see the module's
    docstring) one message each, in order.

    :param limit: the largest payload accepted (0: no limit).
    :returns: where reading stopped (the frames from there on are for
        autobahn), where the frame found there ends if it is one of these
        frames and only its payload is not all here yet (else 0), how many
        messages and how many payload bytes were delivered.
    """
    pos = 0
    size = len(data)
    messages = delivered = 0
    while pos < size:
        start, end = frame_size(data, pos, limit)
        if not start:
            return pos, 0, messages, delivered
        if end > size:
            return pos, end, messages, delivered
        length = end - start
        if length > 64:
            payload = unmask(memoryview(data)[start:end], data[start - 4 : start])
        else:
            payload = unmask(data[start:end], data[start - 4 : start])
        if data[pos] == TEXT:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                return pos, 0, messages, delivered
            deliver(text, None, length)
        else:
            deliver(None, payload, length)
        messages += 1
        delivered += length
        pos = end
    return pos, 0, messages, delivered
