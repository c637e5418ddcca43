"""
Writing to a plain TCP socket at once: :func:`write_now` for HTTP responses
and WebSocket frames, and :func:`buffer_empty`, which ``os.sendfile`` also
asks before it writes.

Twisted's ``transport.write`` only buffers: it registers the socket for
writing, and the bytes go out at the next turn of the loop, which then
unregisters it: two ``epoll_ctl`` calls and a loop turn per response or per
WebSocket message (about a tenth of the reactor thread). Sending at once
what the socket takes, and buffering only the rest through the transport,
gives the client the same bytes in the same order: the shortcut is taken
only when Twisted has nothing buffered.

Uses ``FileDescriptor``'s buffer attributes ``dataBuffer``, ``offset`` and
the private ``_tempDataLen`` and ``_writeDisconnected``, and ``Connection``'s
private ``_aborting`` (listed in tests/test_private_names.py): after
``abortConnection`` nothing more may reach the client.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


def buffer_empty(transport: Any) -> bool:
    """:returns: whether ``transport`` (a ``FileDescriptor``) has sent everything written to it."""
    return transport.offset == len(transport.dataBuffer) and not transport._tempDataLen


def write_now(transport: Any, *pieces: bytes) -> None:
    """
    Write ``pieces`` to ``transport``, in order: straight to its socket, in
    one ``sendmsg`` without joining them, when it is plain TCP (not TLS),
    connected, still writable (neither closing nor aborted) and holds
    nothing (one piece with ``send``); what the socket does not take (and everything otherwise)
    through ``transport.writeSequence``.
    An error (``EAGAIN``, a reset) leaves the bytes to the transport, which
    then finds the error itself and reports it as it always does; a send
    that took bytes marks the transport ``houweb_sent`` (a socket holding an
    error takes none: see ``HouwebReactor._readOrWrite``).
    """
    if not all(pieces):
        pieces = tuple(piece for piece in pieces if piece)
        if not pieces:
            return
    if (
        isinstance(transport, tcp.Connection)
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
        and not transport._aborting
        and not transport.TLS
        and transport.offset == len(transport.dataBuffer)  # buffer_empty, inlined
        and not transport._tempDataLen
    ):
        try:
            sock = transport.socket
            # one piece: send (sendmsg's iovec set-up costs some 0.3 us more)
            sent = sock.send(pieces[0]) if len(pieces) == 1 else sock.sendmsg(pieces)
        except OSError:
            sent = 0
        else:
            # The socket holds no error: the reactor need not ask after a read.
            transport.houweb_sent = True  # type: ignore[attr-defined]  # houweb's mark
        for index, piece in enumerate(pieces):
            size = len(piece)
            if sent < size:
                transport.writeSequence((piece[sent:] if sent else piece, *pieces[index + 1 :]))
                return
            sent -= size
        return
    transport.writeSequence(pieces)
