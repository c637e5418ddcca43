"""
The Date header of houweb's answers is the current time's HTTP date, in the
bytes twisted.web's ``datetimeToString`` makes, formatted once a second by
the site (``houweb/_date.py``) rather than for every request.
"""

from __future__ import annotations

import time

import pytest_twisted
from twisted.web.http import datetimeToString

import houweb
from houweb import _date
from houweb._date import HttpDate

from .support import raw_request

#: RFC 9110's example date: Sun, 06 Nov 1994 08:49:37 GMT.
EXAMPLE = 784111777

HELLO = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def _date_of(answer: bytes) -> bytes:
    [line] = [line for line in answer.split(b"\r\n") if line.startswith(b"Date: ")]
    return line[len(b"Date: ") :]


def test_the_date_is_the_clocks_second_and_changes_when_the_second_changes():
    now = [EXAMPLE + 0.0]
    date = HttpDate(lambda: now[0])
    assert date.now() == b"Sun, 06 Nov 1994 08:49:37 GMT"
    now[0] = EXAMPLE + 0.999  # the same second
    assert date.now() == b"Sun, 06 Nov 1994 08:49:37 GMT"
    now[0] = EXAMPLE + 1.0
    assert date.now() == b"Sun, 06 Nov 1994 08:49:38 GMT"
    now[0] = EXAMPLE + 86400 * 31  # a month later
    assert date.now() == b"Wed, 07 Dec 1994 08:49:37 GMT"


def test_every_weekday_and_month_is_spelled_as_twisted_web_spells_it():
    now = [0.0]
    date = HttpDate(lambda: now[0])
    # 400 days in steps of a day and an hour and a second: every weekday,
    # every month, the turn of a year, single- and double-digit days.
    for step in range(400):
        now[0] = EXAMPLE + step * 90061 + 0.5
        assert date.now() == datetimeToString(int(now[0]))


def test_the_date_is_formatted_once_a_second(monkeypatch):
    formatted: list[int] = []

    def counted(seconds: int) -> bytes:
        formatted.append(seconds)
        return datetimeToString(seconds)

    monkeypatch.setattr(_date, "datetimeToString", counted)
    now = [EXAMPLE + 0.1]
    date = HttpDate(lambda: now[0])
    for _ in range(100):
        date.now()
        now[0] += 0.005  # 100 calls within half a second
    assert formatted == [EXAMPLE]
    now[0] = EXAMPLE + 1.2
    date.now()
    assert formatted == [EXAMPLE, EXAMPLE + 1]


@pytest_twisted.ensureDeferred
async def test_an_answer_carries_the_current_times_http_date(serve):
    houweb.urlHandler("/hello")(lambda request: houweb.Response("hi", content_type="text/plain"))
    port = (await serve()).port_numbers()[0]
    before = time.time()
    answer = await raw_request(port, HELLO)
    after = time.time()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    seconds = range(int(before), int(after) + 1)
    assert _date_of(answer) in [datetimeToString(second) for second in seconds]


@pytest_twisted.ensureDeferred
async def test_the_servers_answers_follow_its_clock_from_one_second_to_the_next(serve):
    houweb.urlHandler("/hello")(lambda request: houweb.Response("hi", content_type="text/plain"))
    server = await serve()
    now = [EXAMPLE + 0.5]
    server.site.houweb_date = HttpDate(lambda: now[0])
    port = server.port_numbers()[0]
    assert _date_of(await raw_request(port, HELLO)) == b"Sun, 06 Nov 1994 08:49:37 GMT"
    now[0] = EXAMPLE + 1.0
    assert _date_of(await raw_request(port, HELLO)) == b"Sun, 06 Nov 1994 08:49:38 GMT"
