"""
The exceptions of ``hou`` that houweb raises: :class:`Error` and
:class:`OperationFailed`.
"""

from __future__ import annotations


class Error(Exception):
    """
    The base of houweb's errors, like ``hou.Error``.

    ``str(exc)`` is the message given to the constructor.
    """

    _description = "houweb error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self._message = message

    def description(self) -> str:
        """:returns: a fixed description of this kind of error."""
        return self._description

    def exceptionTypeName(self) -> str:
        """:returns: the class name, e.g. ``"OperationFailed"``."""
        return type(self).__name__

    def instanceMessage(self) -> str:
        """:returns: the message this error was raised with."""
        return self._message

    def __str__(self) -> str:
        return self._message


class OperationFailed(Error):
    """
    Something in the environment failed: a port could not be bound, a file or
    settings file could not be read, the server is already running.
    """

    _description = "The requested operation failed."
