"""
JSON for large values, encoded a piece at a time.

``json.dumps`` runs in C and holds the GIL from start to end: on a 10 MB
result that is a few hundred milliseconds during which the reactor thread
cannot run at all, even though the encoding happens in a pool thread.
:func:`encode` gives the same JSON, as UTF-8 bytes in pieces of about
:data:`PIECE_BYTES` (never joined into one 10 MB text, nor encoded from one:
each of those is one C call holding the GIL for milliseconds). It encodes a
large list or dict in groups of items, one ``json.dumps`` call each (sized
by how long the last group took), and a long string in parts; between them
it lets a thread waiting for the GIL (the reactor) run; see :class:`_Pieces`.
How long it lets others run is its caller's choice (``large``): on a server,
a large result steps aside while other requests are in flight
(:mod:`houweb._priority`).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable

#: What :func:`encode` is given to pace a large value's encoding: entered
#: for the encoding of a value that is encoded a piece at a time (not for a
#: small one), it gives what to call after each :data:`YIELD_EVERY` seconds
#: of work to let other threads run (see :meth:`_Pieces.let_others_run`).
Pacing = Callable[[], AbstractContextManager[Callable[[], None]]]

#: Items of a list or dict encoded in one ``json.dumps`` call at most; a
#: container holding fewer is encoded whole. About a quarter of a
#: millisecond of work for items of a few dozen bytes.
GROUP = 256
#: How deep large containers are opened (a container below is encoded whole).
MAX_DEPTH = 4
#: The size the encoded text is handed over in (a piece ends at the first
#: group boundary past it): small enough to write to a socket whole.
PIECE_BYTES = 64 * 1024
#: Seconds of encoding after which the encoding thread lets a thread
#: waiting for the GIL take it (see :meth:`_Pieces.let_others_run`): a small
#: request waits for the GIL behind at most this much encoding each time it
#: needs it (0.5 ms made hello's p99 3.5x its own while 10 MB results were
#: encoded, 0.25 ms 2.0-2.7x; see the commit that set it).
YIELD_EVERY = 0.00025
#: Seconds of work one ``json.dumps`` call of a group is sized for: the
#: number of items in a group follows how long the last group took (items
#: of a few kilobytes each, or slow to encode such as floats, make smaller
#: groups), from :data:`FIRST_GROUP` items up to :data:`GROUP`.
GROUP_SECONDS = 0.0002
FIRST_GROUP = 16
#: A string longer than this many characters is encoded a part at a time
#: (one ``json.dumps`` call of a 10 MB string holds the GIL for tens of
#: milliseconds), :data:`STRING_PART` characters per call: at most 12
#: bytes of JSON each, so a part never makes a piece much larger than
#: :data:`PIECE_BYTES`.
LONG_STRING = 16 * 1024
STRING_PART = 4096


def encode(
    value: object,
    *,
    allow_nan: bool,
    default: Callable[[Any], Any],
    large: Pacing | None = None,
) -> list[bytes]:
    """
    :param large: how a value encoded a piece at a time lets other threads
        run (see :data:`Pacing`); by default, with ``time.sleep(0)`` (the
        least that hands the GIL over) every :data:`YIELD_EVERY` seconds.
    :returns: ``json.dumps(value, allow_nan=allow_nan, default=default)``,
        the same JSON, as UTF-8 pieces of about :data:`PIECE_BYTES` (one
        piece for a value that neither is nor holds a large list, tuple or
        dict, or a long string; see :func:`_opens`). A value another thread changes meanwhile gives the
        JSON of what each container held when its turn came (not an error,
        nor broken JSON).
    :raises: what ``json.dumps`` raises for the same value.
    """
    if not _opens(value, 0):
        return [json.dumps(value, allow_nan=allow_nan, default=default).encode("utf-8")]
    encoder = _noting_failures(json.JSONEncoder(allow_nan=allow_nan, default=default).encode)
    with (large or _full_speed)() as step_aside:
        pieces = _Pieces(step_aside)
        _add(value, pieces, encoder, set(), 0)
        return pieces.close()


#: The attribute of a ``ValueError`` :func:`encode` raises (a float out of
#: range, say) that holds the part of the value whose ``json.dumps`` call
#: raised it: see :func:`failed_part`.
_FAILED_PART = "houweb_failed_part"


def _noting_failures(encode: Callable[[object], str]) -> Callable[[object], str]:
    """:returns: ``encode``, noting on a ``ValueError`` it raises what it encoded."""

    def encode_part(part: object) -> str:
        try:
            return encode(part)
        except ValueError as exc:
            setattr(exc, _FAILED_PART, part)
            raise

    return encode_part


def failed_part(exc: ValueError, value: object) -> object:
    """
    :returns: the part of ``value`` whose encoding raised ``exc`` (in
        :func:`encode`): a group of a large container's items, or ``value``
        itself when it was encoded in one call or the part is not known. What
        looks for the cause (the float out of range) looks there, not through
        the whole value: a large result's encoding is paced, a walk through
        all of it after would not be.
    """
    return getattr(exc, _FAILED_PART, value)


def _sleep_0() -> None:
    time.sleep(0)


@contextmanager
def _full_speed() -> Iterator[Callable[[], None]]:
    """The default :data:`Pacing`: ``time.sleep(0)`` every :data:`YIELD_EVERY` seconds."""
    yield _sleep_0


class _Pieces:
    """
    The JSON text so far: short strings, turned into UTF-8 pieces of about
    :data:`PIECE_BYTES` as they come (each a small C call).

    :meth:`let_others_run` is how the GIL changes hands. A thread that wants
    the GIL (the reactor, after each ``epoll_wait``, ``recv`` or ``send``:
    several times per request) waits for up to ``sys.getswitchinterval()``
    (5 ms) before the interpreter makes the running thread give it up: a
    thread encoding flat out costs each of the reactor's system calls up to
    that. Giving the GIL up for a moment does not help: the encoding thread
    takes it back before the waiting one is awake (which then waits another
    interval), and ``os.sched_yield`` only helps when both threads share one
    CPU. ``time.sleep(0)`` does: the encoding thread really sleeps (tens of
    microseconds, a timer's slack), and a waiting thread takes the GIL
    meanwhile. Nothing process-wide (``sys.setswitchinterval``) is changed.

    :param step_aside: called every :data:`YIELD_EVERY` seconds of encoding:
        sleeps for ``0`` seconds (the default) or longer (see :data:`Pacing`).
    """

    def __init__(self, step_aside: Callable[[], None] = _sleep_0) -> None:
        self._step_aside = step_aside
        self._done: list[bytes] = []
        self._texts: list[str] = []
        self._size = 0
        self._ran_since = time.perf_counter()
        #: Items in the next group (see :meth:`encode_group`).
        self.group = FIRST_GROUP

    def encode_group(self, encode: Callable[[object], str], group: Any, count: int) -> str:
        """
        :returns: ``encode(group)``, a group of ``count`` items; the next
            group is sized from how long this one took, for about
            :data:`GROUP_SECONDS` of work (at most :data:`GROUP` items).
        """
        started = time.perf_counter()
        text = encode(group)
        took = time.perf_counter() - started
        if took > 0:
            self.group = max(1, min(GROUP, int(count * GROUP_SECONDS / took)))
        else:
            self.group = GROUP
        return text

    def add(self, text: str) -> None:
        """
        Append ``text`` (what one ``json.dumps`` call gave); hand a piece
        over once there is enough; let other threads run if it is time.
        """
        self._texts.append(text)
        self._size += len(text)
        if self._size >= PIECE_BYTES:
            self._done.append("".join(self._texts).encode("utf-8"))
            self._texts.clear()
            self._size = 0
        self.let_others_run()

    def let_others_run(self) -> None:
        """
        After :data:`YIELD_EVERY` seconds of encoding, let a thread waiting
        for the GIL take it (see the class's docstring), by stepping aside.
        """
        if time.perf_counter() - self._ran_since >= YIELD_EVERY:
            self._step_aside()
            self._ran_since = time.perf_counter()

    def close(self) -> list[bytes]:
        """:returns: every piece, the last one included."""
        if self._texts:
            self._done.append("".join(self._texts).encode("utf-8"))
            self._texts.clear()
        return self._done


def _large(value: object) -> bool:
    """
    :returns: whether ``value`` is a container worth encoding in groups,
        or a string worth encoding in parts.
    """
    kind = type(value)
    if kind in (list, tuple, dict):
        return len(value) > GROUP  # type: ignore[arg-type]
    return kind is str and len(value) > LONG_STRING  # type: ignore[arg-type]


#: Items looked at most, below a small container, for a large container or
#: a long string (past that, the value is big enough to be opened anyway:
#: 1024 small containers of 256 floats each, encoded in one call, would
#: hold the GIL for tens of milliseconds).
LOOK_AHEAD = 4096


def _opens(value: object, depth: int) -> bool:
    """
    :returns: whether ``value``, at ``depth``, is encoded a piece at a time:
        a long string or a large container (see :func:`_large`), or a
        small container holding one within :data:`MAX_DEPTH` levels, such
        as the list in ``{"rows": [...], "count": 132000}``, looked for
        through at most :data:`LOOK_AHEAD` items (more than that in small
        containers is opened too). Items of a large container are
        only checked for being large themselves (:func:`_add`), not looked
        into: that would cost a look at every item.
    """
    kind = type(value)
    if kind is str:
        return len(value) > LONG_STRING  # type: ignore[arg-type]
    if depth >= MAX_DEPTH or kind not in (list, tuple, dict):
        return False
    return _large(value) or _holds_large(value, depth, [LOOK_AHEAD])


def _holds_large(value: Any, depth: int, budget: list[int]) -> bool:
    """
    :returns: whether the small container ``value`` holds one :func:`_opens`
        opens, or a long string, or more items than ``budget`` has left.
    """
    # Taken in one C call: another thread may be changing it.
    items = list(value.values()) if type(value) is dict else list(value)
    budget[0] -= len(items)
    if budget[0] < 0:
        return True
    for item in items:
        kind = type(item)
        if kind is str:
            if len(item) > LONG_STRING:
                return True
        elif kind in (list, tuple, dict) and depth + 1 < MAX_DEPTH:
            if _large(item) or _holds_large(item, depth + 1, budget):
                return True
    return False


def _add(
    value: object,
    pieces: _Pieces,
    encode: Callable[[object], str],
    opened: set[int],
    depth: int,
) -> None:
    """Add the JSON text of ``value`` to ``pieces``, large containers a group at a time."""
    if not _opens(value, depth):
        pieces.add(encode(value))
        return
    if type(value) is str:
        # JSON escapes each character on its own (non-ASCII ones as \\uXXXX,
        # those past U+FFFF as a surrogate pair): the parts' texts, joined,
        # are the whole string's.
        pieces.add('"')
        for start in range(0, len(value), STRING_PART):
            pieces.add(encode(value[start : start + STRING_PART])[1:-1])
        pieces.add('"')
        return
    if id(value) in opened:
        raise ValueError("Circular reference detected")  # json.dumps's message
    # Each container is taken (copied) in one C call before anything else
    # is done with it: between pieces another thread may change it, which
    # it could not during json.dumps; iterating over it here could fail
    # ("changed size during iteration").
    if type(value) is dict:
        items = list(value.items())
    else:
        items = list(value)  # type: ignore[call-overload]
    # The items of a large container are only checked for being large
    # themselves (looking into each would cost a look at every item); those
    # of a small one (a few, reached by looking ahead) are looked into.
    worth_opening: Callable[[object], bool] = (
        _large if len(items) > GROUP else functools.partial(_opens, depth=depth + 1)
    )
    opened.add(id(value))
    is_dict = type(value) is dict
    pieces.add("{" if is_dict else "[")
    start = 0
    while start < len(items):
        if start:
            pieces.add(", ")
        group = items[start : start + pieces.group]
        start += len(group)
        values = [item for _, item in group] if is_dict else group
        if not any(worth_opening(item) for item in values):
            whole = dict(group) if is_dict else group
            pieces.add(pieces.encode_group(encode, whole, len(group))[1:-1])
            continue
        for index, entry in enumerate(group):
            if index:
                pieces.add(", ")
            if is_dict:
                key, entry = entry
                pieces.add(_key_text(key, encode) + ": ")
            _add(entry, pieces, encode, opened, depth + 1)
    pieces.add("}" if is_dict else "]")
    opened.discard(id(value))


def _key_text(key: object, encode: Callable[[object], str]) -> str:
    """
    :returns: the JSON text of the dict key ``key``, as ``json.dumps``
        converts it (an int, float, bool or None key becomes a string).
    :raises: what ``json.dumps`` raises for such a key (a ``TypeError``
        for a tuple).
    """
    if type(key) is str:
        return encode(key)
    return encode({key: None})[1:-7]  # '{"1": null}' -> '"1"'
