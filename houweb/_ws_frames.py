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


def unmask_in_place(
    buffer: bytearray, start: int, mask: bytes | bytearray | memoryview, end: int | None = None
) -> None:
    """XOR ``buffer[start:end]`` with the 4-byte ``mask`` repeated, in place (XOR again undoes it)."""
    if end is None:
        end = len(buffer)
    size = end - start
    if size <= 0:
        return
    if _lib is None:  # pragma: no cover - autobahn built without NVX
        buffer[start:end] = unmask(memoryview(buffer)[start:end], mask)
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


#: The least room a frame being gathered starts with (see :class:`Gathering`):
#: what a connection reserves for a frame whose first read brought only its
#: header, say (times the connections that may each do so).
GATHER_FIRST = 4 * 1024
#: The least length of a buffer kept for the next frames, and the least size
#: of a frame given one (see :class:`SpareBuffers`).
SPARE_LEAST = 64 * 1024
#: The most bytes of gathering buffers kept for the next frames, per
#: reactor (see :class:`SpareBuffers`).
SPARE_BYTES = 8 * 1024 * 1024


class SpareBuffers:
    """
    The buffers of large frames gathered and delivered, kept (up to
    :data:`SPARE_BYTES` in all) for the next large frames to be gathered in.

    A fresh buffer for every large frame costs more than copying the frame
    into it: its pages are zeroed, and the allocator, having given the last
    one back to the system, faults them in again (a fifth of the reactor
    thread's time for 1 MiB messages). One set per reactor, used on its
    thread only, emptied when its last WebSocket closes (a server stopped,
    or idle, keeps none).

    Only buffers of at least ``least`` bytes (:data:`SPARE_LEAST`) are kept,
    and only frames that large are given one: so at most ``keep // least``
    buffers (128), searched whole by :meth:`take`. A small frame split
    between reads (any frame may be) is cheap to gather in a buffer of its
    own; kept, the buffers of such frames would number in the hundreds of
    thousands (each some 60 bytes of object beyond its length), every
    large frame's :meth:`take` scanning them all.
    """

    __slots__ = ("_buffers", "_held", "_keep", "_least")

    def __init__(self, keep: int = SPARE_BYTES, least: int = SPARE_LEAST) -> None:
        self._buffers: list[bytearray] = []
        self._held = 0
        self._keep = keep
        self._least = least

    def take(self, size: int) -> bytearray | None:
        """
        :returns: the smallest spare buffer of at least ``size`` bytes (no
            longer a spare), or ``None`` (none fits, or ``size`` is under
            the least kept: the frame is small).
        """
        if size < self._least:
            return None
        best = -1
        buffers = self._buffers
        for index, buffer in enumerate(buffers):
            if len(buffer) >= size and (best < 0 or len(buffer) < len(buffers[best])):
                best = index
        if best < 0:
            return None
        buffer = buffers.pop(best)
        self._held -= len(buffer)
        return buffer

    def give(self, buffer: bytearray) -> None:
        """
        Keep ``buffer`` (nothing else may use it any more) if it is large
        enough to be worth keeping and there is room for it.
        """
        if len(buffer) >= self._least and self._held + len(buffer) <= self._keep:
            self._buffers.append(buffer)
            self._held += len(buffer)

    def clear(self) -> None:
        """Keep nothing (no connection is left to use the buffers)."""
        self._buffers.clear()
        self._held = 0

    @property
    def held(self) -> int:
        """How many bytes the spare buffers hold."""
        return self._held


class Gathering:
    """
    A plain frame (header and payload) whose first bytes came and whose size
    is known, gathered into one buffer until it is whole: the reads that
    follow are copied in (:meth:`add`), or made straight into it
    (:meth:`room`, :meth:`received`: ``recv_into``, no copy at all).

    The buffer is a spare one (:class:`SpareBuffers`) when one is large
    enough; else a new one, which never grows by appending (a ``bytearray``
    grown read by read is reallocated, and copied, every few reads): it
    starts with room for four times the bytes that came first, at least
    :data:`GATHER_FIRST`, never more than the frame, and doubles when that
    is full. So a client does not make the server reserve its frame's
    announced size with a few bytes (16 MiB for a 14-byte header): it
    reserves at most four times what it sent, or :data:`GATHER_FIRST` (4
    KiB) if more; a spare it is given was reserved already.
    """

    __slots__ = ("buffer", "filled", "size")

    def __init__(
        self, first: bytes | bytearray | memoryview, size: int, spare: bytearray | None = None
    ) -> None:
        have = len(first)
        #: The frame's bytes so far (``filled`` of them) and room for more
        #: (a spare buffer may be longer than the frame).
        self.buffer = (
            spare if spare is not None else bytearray(min(size, max(GATHER_FIRST, 4 * have)))
        )
        self.buffer[:have] = first
        self.filled = have
        #: The frame's size, header included.
        self.size = size

    def _make_room(self, end: int) -> None:
        """Grow the buffer (doubling, up to the frame's size) to hold ``end`` bytes."""
        buffer = self.buffer
        if end > len(buffer):
            grown = bytearray(min(self.size, max(2 * len(buffer), end)))
            grown[: self.filled] = memoryview(buffer)[: self.filled]
            self.buffer = grown

    def add(self, data: bytes | bytearray) -> int:
        """
        Copy the start of ``data`` that belongs to the frame in.

        :returns: how many bytes of ``data`` were taken (the rest is what
            follows the frame).
        """
        filled = self.filled
        take = min(self.size - filled, len(data))
        end = filled + take
        self._make_room(end)
        self.buffer[filled:end] = memoryview(data)[:take] if take < len(data) else data
        self.filled = end
        return take

    def room(self) -> memoryview:
        """
        :returns: where the next read goes: the buffer's free part (grown
            first if full), never past the frame's end. Release the view,
            then say how many bytes came (:meth:`received`).
        """
        if self.filled == len(self.buffer):
            self._make_room(self.filled + 1)
        return memoryview(self.buffer)[self.filled : min(len(self.buffer), self.size)]

    def received(self, count: int) -> None:
        """``count`` bytes were read into :meth:`room`."""
        self.filled += count

    @property
    def whole(self) -> bool:
        """Whether all of the frame came (the first ``size`` bytes of ``buffer``)."""
        return self.filled == self.size
