"""
Large /api results encoded a piece at a time (houweb/_json_pieces.py): the
same text as ``json.dumps``, the same errors, and other threads run while a
large result is encoded (``json.dumps`` holds the GIL throughout).
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from typing import Any

import pytest

from houweb import _api_wire, _json_pieces

ROWS = [{"id": i, "name": f"item {i}", "value": i * 0.25, "tags": ["a", "é"]} for i in range(600)]


def pieces(value: object) -> str:
    """:returns: the JSON text of ``value``, encoded in pieces and joined."""
    encoded = _json_pieces.encode(value, allow_nan=False, default=_api_wire._refuse)
    return b"".join(encoded).decode("utf-8")


def reference(value: object) -> str:
    return json.dumps(value, allow_nan=False, default=_api_wire._refuse)


@pytest.mark.parametrize(
    "value",
    [
        ROWS,
        tuple(ROWS),
        {"rows": ROWS, "count": 600, "more": {str(i): [i, None, True] for i in range(700)}},
        [ROWS[:300], 1, "x\u2028\U0001f600", ROWS[:10], list(range(1000))],
        {str(i): i for i in range(1000)},
        {i: i for i in range(1000)},  # non-str keys: json.dumps's own conversion
        [[[[[list(range(300))] * 300] * 300]]],  # deeper than MAX_DEPTH opens
        {"data": {"rows": ROWS, "count": 600}, "ok": True},  # a large list in small dicts
        [[[[[list(range(300))]]]]],  # small lists down to below MAX_DEPTH
        {"rows": ROWS, 1: 2},  # a small dict with a non-str key holding a large list
        list(range(257)),
        [],
        {},
        3,
        "text",
    ],
)
def test_a_result_encodes_to_the_text_json_dumps_gives(value):
    assert pieces(value) == reference(value)


def circular_list() -> list:
    inner: list = []
    outer = list(range(300)) + [inner]
    inner.append(outer)
    return outer


def self_containing_dict() -> dict:
    value: dict = {str(i): i for i in range(300)}
    value["me"] = value
    return value


@pytest.mark.parametrize(
    "make",
    [
        circular_list,
        self_containing_dict,
        lambda: list(range(300)) + [float("nan")],
        lambda: {str(i): i for i in range(300)} | {"x": object()},
    ],
)
def test_a_result_json_cannot_encode_raises_what_json_dumps_raises(make):
    with pytest.raises(Exception) as expected:
        reference(make())
    with pytest.raises(type(expected.value)) as raised:
        pieces(make())
    assert str(raised.value) == str(expected.value)


def test_a_large_result_lets_other_threads_run_while_it_is_encoded():
    # json.dumps of a result this size is one C call holding the GIL for
    # tens of milliseconds: a thread wanting the GIL (the reactor) waits all
    # of it. Encoded in pieces, the other thread runs between them.
    big = [{"id": i, "name": f"item {i}", "value": i * 0.25} for i in range(200_000)]
    ticks: list[float] = []
    encoding: list[float] = []
    done = threading.Event()

    def encode() -> None:
        encoding.append(time.perf_counter())
        _api_wire.encode_result(big, "f.big", False)
        encoding.append(time.perf_counter())
        done.set()

    worker = threading.Thread(target=encode)
    worker.start()
    for _ in range(100_000):  # bounded: the encoding ends well before
        if done.is_set():
            break
        ticks.append(time.perf_counter())
        time.sleep(0.0005)
    worker.join(60)
    start, end = encoding
    during = [t for t in ticks if start < t < end]
    assert len(during) >= 5, f"the other thread ran {len(during)} times in {end - start:.3f} s"


def test_a_thread_waiting_for_the_gil_gets_it_soon_while_a_large_result_is_encoded():
    # The reactor gives the GIL up at each system call (epoll_wait, recv,
    # send) and then waits to get it back. With a thread encoding flat out,
    # that wait lasts the interpreter's switch interval (5 ms by default;
    # 100 ms here so that such waits cannot be missed), several times per
    # request. The encoding thread lets a waiting thread take it every
    # YIELD_EVERY seconds instead.
    big = [{"id": i, "name": f"item {i}", "value": i * 0.25} for i in range(200_000)]
    waits: list[float] = []
    encoding: list[float] = []
    started, done = threading.Event(), threading.Event()

    def encode() -> None:
        started.set()
        encoding.append(time.perf_counter())
        _json_pieces.encode(big, allow_nan=False, default=_api_wire._refuse)
        encoding.append(time.perf_counter())
        done.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.1)
    try:
        worker = threading.Thread(target=encode)
        worker.start()
        started.wait(10)
        for _ in range(100_000):  # bounded: the encoding ends well before
            if done.is_set():
                break
            before = time.perf_counter()
            time.sleep(0.0002)  # gives the GIL up, then waits for it
            waits.append(time.perf_counter() - before - 0.0002)
        worker.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert len(encoding) == 2
    assert len(waits) >= 10, f"{len(waits)} turns in {encoding[1] - encoding[0]:.3f} s"
    assert statistics.median(waits) < 0.02, f"waits of {sorted(waits)[len(waits) // 2]:.4f} s"


def test_a_large_result_is_encoded_to_bytes_pieces_of_bounded_size():
    value = ROWS * 300 + [list(range(100_000))]
    encoded = _json_pieces.encode(value, allow_nan=False, default=_api_wire._refuse)
    assert b"".join(encoded) == reference(value).encode()
    assert len(encoded) > 10 and all(type(piece) is bytes for piece in encoded)
    # A piece ends at the first group boundary past PIECE_BYTES.
    assert max(len(piece) for piece in encoded) < 2 * _json_pieces.PIECE_BYTES


@pytest.mark.parametrize(
    "wrap",
    [
        lambda rows: {"rows": rows, "count": len(rows)},
        lambda rows: {"data": {"rows": rows}, "ok": True},
        lambda rows: [rows, rows[:10]],
    ],
)
def test_a_large_list_inside_small_containers_is_encoded_in_pieces_too(wrap):
    # The usual shape of a large API result: a list under a small dict.
    # Encoded whole, it would hold the GIL for the whole json.dumps call.
    value = wrap(ROWS * 300)
    encoded = _json_pieces.encode(value, allow_nan=False, default=_api_wire._refuse)
    assert b"".join(encoded) == reference(value).encode()
    assert len(encoded) > 10
    assert max(len(piece) for piece in encoded) < 2 * _json_pieces.PIECE_BYTES


def test_looking_for_a_large_container_stops_after_a_bounded_number_of_small_ones():
    # 64 x 64 x 8 small lists: no large one, but too many to look through
    # them all: such a value is encoded in pieces anyway.
    value = [[[[1, 2]] * 8] * 64] * 64
    encoded = _json_pieces.encode(value, allow_nan=False, default=_api_wire._refuse)
    assert b"".join(encoded) == reference(value).encode()
    assert not _json_pieces._opens([[[1, 2]] * 8] * 8, 0)


def test_a_small_result_is_one_piece():
    assert _json_pieces.encode([1, "é"], allow_nan=False, default=_api_wire._refuse) == [
        b'[1, "\\u00e9"]'
    ]


def encode_mutated_at(value: Any, mutate: Any, call: int) -> str:
    """
    :returns: ``pieces(value)``, with ``mutate()`` run once just before the
        ``call``-th call (or generator step) during the encoding: where another
        thread may take the GIL and change the value, as it may between
        any two pieces.
    """
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1
            if calls == call:
                mutate()

    sys.setprofile(profile)
    try:
        return pieces(value)
    finally:
        sys.setprofile(None)


def test_a_dict_changed_by_another_thread_while_encoded_still_gives_json():
    # json.dumps holds the GIL from start to end: another thread cannot
    # change a (plain) dict during it. Between pieces it can: what comes out
    # must still be JSON, of the dict as it was or as it is after the change,
    # and no error json.dumps would not raise (a RuntimeError for a dict
    # changing size while its keys are looked at). Tried at each point.
    def make() -> tuple[dict, dict]:
        rows: dict = {str(i): i for i in range(300)}
        value: dict = {str(i): [i] for i in range(300)}
        value["rows"] = rows
        return value, rows

    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event in ("call", "c_call")

    sys.setprofile(count)
    try:
        pieces(make()[0])
    finally:
        sys.setprofile(None)
    assert calls > 300
    for call in range(1, calls + 1):
        value, rows = make()
        before = reference(value)

        def mutate(rows: dict = rows) -> None:
            rows[1] = "an int key"  # json.dumps writes it as "1"
            del rows["5"]

        text = encode_mutated_at(value, mutate, call)
        assert text in (before, reference(value)), call
        json.loads(text)


#: Longer than LONG_STRING, with what JSON escapes (non-ASCII, a character
#: past U+FFFF, a lone surrogate, and a surrogate pair of two code points
#: straddling a part's end).
LONG = (
    "a" * (_json_pieces.STRING_PART - 1)
    + "\ud83d\ude00"
    + 'é\u2028\U0001f600\ud800"\\\n' * 5_000
    + "z" * 200_000
)


@pytest.mark.parametrize(
    "value",
    [
        LONG,
        {"image": LONG, "width": 1},  # a base64 image in a small dict
        [LONG, 1, LONG],
        [LONG[:20_000]] * 300,  # a large list of long strings
        {"rows": [{"text": LONG}], "count": 1},
        {str(i): LONG[:20_000] for i in range(300)},
    ],
)
def test_a_long_string_is_encoded_a_part_at_a_time(value):
    # json.dumps of one 10 MB string is one C call holding the GIL for tens
    # of milliseconds (and one 10 MB piece): a long string is encoded in
    # parts, none giving more than about a piece of JSON.
    encoded = _json_pieces.encode(value, allow_nan=False, default=_api_wire._refuse)
    assert b"".join(encoded) == reference(value).encode()
    assert max(len(piece) for piece in encoded) < 2 * _json_pieces.PIECE_BYTES


def test_small_containers_holding_many_items_in_all_are_encoded_in_pieces():
    # 200 lists of 4 lists of 200 floats: fewer than a thousand small
    # containers, but 160,000 floats (tens of milliseconds in one call).
    value = [[[i + 0.5] * 200] * 4 for i in range(200)]
    encoded = _json_pieces.encode(value, allow_nan=False, default=_api_wire._refuse)
    assert b"".join(encoded) == reference(value).encode()
    assert max(len(piece) for piece in encoded) < 2 * _json_pieces.PIECE_BYTES


@pytest.mark.parametrize("per_item, then", [(0.001, 1), (0.000001, 200)])
def test_a_group_is_sized_by_how_long_the_last_one_took(monkeypatch, per_item, then):
    # Items of a few kilobytes, or slow to encode (floats), would make a
    # group of GROUP items one call of many milliseconds: the next group is
    # sized for GROUP_SECONDS of work. The clock is faked: per_item seconds
    # per item encoded.
    now = [0.0]
    monkeypatch.setattr(_json_pieces.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(_json_pieces.time, "sleep", lambda seconds: None)
    sizes: list[int] = []

    def encode(value: Any) -> str:
        if isinstance(value, list):
            sizes.append(len(value))
            now[0] += per_item * len(value)
        return json.dumps(value)

    value = [[i, 1.5] for i in range(2000)]
    pieces = _json_pieces._Pieces()
    _json_pieces._add(value, pieces, encode, set(), 0)
    assert b"".join(pieces.close()) == json.dumps(value).encode()
    assert sizes[0] == _json_pieces.FIRST_GROUP
    assert all(0.9 * then <= size <= then for size in sizes[1:-1]), sizes  # float rounding


@pytest.mark.parametrize(
    "value",
    [
        {i: {"id": i, "tags": ["a"]} for i in range(3000)},  # {id: record}
        {i * 0.5: [i] for i in range(10_000)},
        {True: ROWS, None: 1, 2.5: ROWS, 7: "x", "s": ROWS},  # each key json.dumps converts
        [{i: i for i in range(300)}] * 20,
    ],
)
def test_a_large_dict_with_keys_json_converts_is_encoded_in_pieces(value):
    # Such a dict (ids as int keys) was encoded whole: one json.dumps call
    # and one piece for all of it.
    encoded = _json_pieces.encode(value, allow_nan=False, default=_api_wire._refuse)
    assert b"".join(encoded) == reference(value).encode()
    assert len(encoded) > 1
    assert max(len(piece) for piece in encoded) < 2 * _json_pieces.PIECE_BYTES


@pytest.mark.parametrize(
    "value",
    [
        {str(i): i for i in range(300)} | {(1, 2): 3},
        {"a": ROWS, (1, 2): ROWS},
        {1: ROWS, float("nan"): 1},
        {1.5: 1, **{str(i): i for i in range(300)}, "x": object()},
    ],
)
def test_a_dict_key_json_refuses_raises_what_json_dumps_raises(value):
    with pytest.raises(Exception) as expected:
        reference(value)
    with pytest.raises(type(expected.value)) as raised:
        pieces(value)
    assert str(raised.value) == str(expected.value)
