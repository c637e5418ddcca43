"""
:func:`write_now`: write to a plain TCP transport at once when nothing waits
in its buffer, instead of at the reactor's next turn.

Twisted's ``transport.write`` only buffers: it registers the socket for
writing, and the bytes go out at the next turn of the loop, which then
unregisters it. For a WebSocket echoing small messages that is a loop turn
and a writer added and removed per message (about a tenth of the reactor
thread). Sending at once what the socket takes, and buffering only the rest
through ``transport.write``, gives the client the same bytes in the same
order: the shortcut is taken only when Twisted has nothing buffered.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


def write_now(transport: Any, data: bytes, *more: bytes) -> None:
    """
    Write ``data`` (and ``more`` after it) to ``transport``: straight to its
    socket when it is plain TCP (not TLS), connected, and has nothing
    buffered, several buffers in one ``sendmsg`` without joining them; what
    the socket does not take (and everything otherwise) through
    ``transport.write``.

    Uses ``FileDescriptor``'s buffer attributes ``dataBuffer``, ``offset``
    and ``_tempDataLen`` (a private name).
    """
    if (
        isinstance(transport, tcp.Connection)
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    ):
        try:
            sent = transport.socket.sendmsg((data, *more)) if more else transport.socket.send(data)
        except OSError:  # EAGAIN, or an error Twisted reports when it writes
            sent = 0
        for buffer in (data, *more):
            if sent >= len(buffer):
                sent -= len(buffer)
                continue
            transport.write(buffer[sent:] if sent else buffer)  # type: ignore[no-untyped-call]
            sent = 0
        return
    for buffer in (data, *more):
        transport.write(buffer)
