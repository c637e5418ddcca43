"""
Large /api results encoded a piece at a time (houweb/_json_pieces.py): the
same text as ``json.dumps``, the same errors, and other threads run while a
large result is encoded (``json.dumps`` holds the GIL throughout).
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from houweb import _api_wire, _json_pieces

ROWS = [{"id": i, "name": f"item {i}", "value": i * 0.25, "tags": ["a", "é"]} for i in range(600)]


def pieces(value: object) -> str:
    return _json_pieces.dumps(value, allow_nan=False, default=_api_wire._refuse)


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
