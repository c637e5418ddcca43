"""
JSON text for large values, encoded a piece at a time.

``json.dumps`` runs in C and holds the GIL from start to end: on a 10 MB
result that is a few hundred milliseconds during which the reactor thread
cannot run at all, even though the encoding happens in a pool thread.
:func:`dumps` gives the same text, but encodes a large list or dict in
groups of items, one ``json.dumps`` call each, so that between the calls
the interpreter can hand the GIL to the reactor thread.
"""

from __future__ import annotations

import json
from typing import Any, Callable

#: Items of a list or dict encoded in one ``json.dumps`` call; a container
#: holding fewer is encoded whole. About a millisecond of work for items of
#: a few dozen bytes.
GROUP = 256
#: How deep large containers are opened (a container below is encoded whole).
MAX_DEPTH = 4


def dumps(value: object, *, allow_nan: bool, default: Callable[[Any], Any]) -> str:
    """
    :returns: ``json.dumps(value, allow_nan=allow_nan, default=default)``,
        the same text, encoded a group of items at a time when ``value`` is
        a large list, tuple or dict (with ``str`` keys). A value another
        thread changes meanwhile gives the JSON of what each container held
        when its turn came (not an error, nor broken JSON).
    :raises: what ``json.dumps`` raises for the same value.
    """
    if not _large(value):
        return json.dumps(value, allow_nan=allow_nan, default=default)
    encode = json.JSONEncoder(allow_nan=allow_nan, default=default).encode
    pieces: list[str] = []
    _pieces(value, pieces, encode, set(), 0)
    return "".join(pieces)


def _large(value: object) -> bool:
    """
    :returns: whether ``value`` is a container worth encoding in groups
        (a dict's keys are looked at once its items are taken, in
        :func:`_pieces`).
    """
    if type(value) in (list, tuple, dict):
        return len(value) > GROUP  # type: ignore[arg-type]
    return False


def _pieces(
    value: object,
    pieces: list[str],
    encode: Callable[[object], str],
    opened: set[int],
    depth: int,
) -> None:
    """Append the JSON text of ``value`` to ``pieces``, large containers a group at a time."""
    if depth >= MAX_DEPTH or not _large(value):
        pieces.append(encode(value))
        return
    if id(value) in opened:
        raise ValueError("Circular reference detected")  # json.dumps's message
    # Each container is taken (copied) in one C call before anything else
    # is done with it: between pieces another thread may change it, which
    # it could not during json.dumps; iterating over it here could fail
    # ("changed size during iteration"), or see a key added after it was
    # checked to be a str.
    if type(value) is dict:
        items = list(value.items())
        if not all(type(key) is str for key, _ in items):
            pieces.append(encode(dict(items)))  # json.dumps's own key conversion
            return
    opened.add(id(value))
    if type(value) is dict:
        pieces.append("{")
        for start in range(0, len(items), GROUP):
            if start:
                pieces.append(", ")
            group = items[start : start + GROUP]
            large = [(key, item) for key, item in group if _large(item)]
            if not large:
                pieces.append(encode(dict(group))[1:-1])
                continue
            for index, (key, item) in enumerate(group):
                if index:
                    pieces.append(", ")
                pieces.append(encode(key) + ": ")
                _pieces(item, pieces, encode, opened, depth + 1)
        pieces.append("}")
    else:
        items = list(value)  # type: ignore[call-overload]
        pieces.append("[")
        for start in range(0, len(items), GROUP):
            if start:
                pieces.append(", ")
            group = items[start : start + GROUP]
            if not any(_large(item) for item in group):
                pieces.append(encode(group)[1:-1])
                continue
            for index, item in enumerate(group):
                if index:
                    pieces.append(", ")
                _pieces(item, pieces, encode, opened, depth + 1)
        pieces.append("]")
    opened.discard(id(value))
