"""
HTTP status phrases: one table for the wire and for ``Response.statusLabel()``.

The phrases are Python 3.12's ``http.HTTPStatus`` ones, pinned so that a newer
Python (3.13 renamed several) does not change what houweb sends.
"""

from __future__ import annotations

from http import HTTPStatus

_PINNED = {
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    416: "Requested Range Not Satisfiable",
    422: "Unprocessable Entity",
}

PHRASES: dict[int, str] = {s.value: s.phrase for s in HTTPStatus}
PHRASES.update(_PINNED)


def phrase(status: int) -> str:
    """:returns: the reason phrase for ``status``, or ``"Unknown Status"``."""
    return PHRASES.get(status, "Unknown Status")


def label(status: int) -> str:
    """:returns: ``"422 Unprocessable Entity"`` for 422, and so on."""
    return f"{status} {phrase(status)}"
