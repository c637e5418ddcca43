"""
Form and JSON bodies (houweb/_forms.py, /api in houweb/_api.py): parsed only
when a target reads them, in the pool, within Django's DATA_UPLOAD_* limits;
/api results encoded in the pool, a result JSON cannot encode a 500 naming why.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest_twisted
from twisted.python import threadable

import houweb
from houweb import _api_wire, _forms

from .children import Child, app
from .support import raw_request

FORM = "application/x-www-form-urlencoded"


def post(path: str, body: bytes, content_type: str = FORM) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def body_of(reply: bytes) -> bytes:
    return reply.split(b"\r\n\r\n", 1)[1]


def spy(monkeypatch, module, name: str) -> list[bool]:
    """Record, for each call of ``module.name``, whether it ran on the reactor thread."""
    on_reactor: list[bool] = []
    real = getattr(module, name)

    def recording(*args, **kwargs):
        on_reactor.append(threadable.isInIOThread())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return on_reactor


@pytest_twisted.ensureDeferred
async def test_a_form_is_parsed_only_when_read_and_then_in_the_handlers_thread(serve, monkeypatch):
    parsed = spy(monkeypatch, _forms, "parse_form")
    seen: list[str] = []
    houweb.urlHandler("/ignores")(lambda request: "ignored")

    @houweb.urlHandler("/reads")
    def reads(request: houweb.Request) -> str:
        seen.append(request.POST()["a"])
        seen.append(request.POSTLists()["a"][0])  # parsed once, kept
        return "read"

    port = (await serve()).port_numbers()[0]
    huge = b"&".join(b"f%d=1" % i for i in range(200_000))  # ~1.8 MB
    assert status(await raw_request(port, post("/nope", huge))) == 404
    assert status(await raw_request(port, post("/ignores", huge))) == 200
    assert status(await raw_request(port, post("/ignores", b"a=%ff"))) == 200  # never decoded
    assert parsed == []
    assert status(await raw_request(port, post("/reads", b"a=1&a=2"))) == 200
    assert seen == ["2", "1"]
    assert parsed == [False]  # one parse, in a pool thread


@pytest_twisted.ensureDeferred
async def test_form_limits_answer_413_or_400_naming_the_setting(serve):
    reached: list[str] = []

    @houweb.urlHandler("/form")
    def form(request: houweb.Request) -> str:
        reached.append("in")
        fields = request.POST()
        reached.append("parsed")
        return str(len(fields))

    @houweb.urlHandler("/careful")
    def careful(request: houweb.Request) -> str:
        try:
            return str(len(request.POST()))
        except ValueError as exc:  # BodyError is a ValueError
            return f"handled: {exc}"

    settings = {"DATA_UPLOAD_MAX_MEMORY_SIZE": 100, "DATA_UPLOAD_MAX_NUMBER_FIELDS": 5}
    port = (await serve(settings=settings)).port_numbers()[0]
    big = await raw_request(port, post("/form", b"a=" + b"x" * 200))
    assert status(big) == 413 and b"DATA_UPLOAD_MAX_MEMORY_SIZE (100 bytes)" in big
    many = await raw_request(port, post("/form", b"a=1&b=2&c=3&d=4&e=5&f=6"))
    assert status(many) == 400 and b"DATA_UPLOAD_MAX_NUMBER_FIELDS (5)" in many
    bad = await raw_request(port, post("/form", b"a=%ff"))
    assert status(bad) == 400 and b"invalid percent-encoding" in bad
    assert reached == ["in", "in", "in"]
    assert body_of(await raw_request(port, post("/form", b"a=1&b=2&c=3&d=4&e=5"))) == b"5"
    handled = await raw_request(port, post("/careful", b"a=" + b"x" * 200))
    assert status(handled) == 200 and body_of(handled).startswith(b"handled: form body of 202")


@pytest_twisted.ensureDeferred
async def test_no_limit_when_the_settings_say_none(serve):
    houweb.urlHandler("/form")(lambda request: str(len(request.POST())))
    settings = {"DATA_UPLOAD_MAX_MEMORY_SIZE": None, "DATA_UPLOAD_MAX_NUMBER_FIELDS": None}
    port = (await serve(settings=settings)).port_numbers()[0]
    body = b"&".join(b"f%d=1" % i for i in range(3000))
    assert body_of(await raw_request(port, post("/form", body))) == b"3000"


@pytest_twisted.ensureDeferred
async def test_api_bodies_are_capped_and_run_nothing_when_refused(serve):
    ran: list[str] = []

    @houweb.apiFunction("f")
    def echo(request: houweb.Request, text: str) -> str:
        ran.append(text)
        return text

    settings = {"DATA_UPLOAD_MAX_MEMORY_SIZE": 200, "DATA_UPLOAD_MAX_NUMBER_FIELDS": 3}
    port = (await serve(settings=settings)).port_numbers()[0]
    call = json.dumps(["f.echo", ["x" * 300], {}]).encode()
    reply = await raw_request(port, post("/api", call, "application/json"))
    assert status(reply) == 413
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in json.loads(body_of(reply))["error"]
    reply = await raw_request(port, post("/api", b"json=" + call))
    assert status(reply) == 413 and b"application/json" in reply
    reply = await raw_request(port, post("/api", b"cmd_function=f.echo&text=a&b=1&c=2"))
    assert status(reply) == 400
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in json.loads(body_of(reply))["error"]
    assert ran == []
    ok = await raw_request(
        port, post("/api", json.dumps(["f.echo", ["hi"], {}]).encode(), "application/json")
    )
    assert json.loads(body_of(ok)) == "hi" and ran == ["hi"]


@pytest_twisted.ensureDeferred
async def test_api_json_is_decoded_and_encoded_in_the_pool(serve, monkeypatch):
    decoded = spy(monkeypatch, _api_wire, "_from_json")
    encoded = spy(monkeypatch, _api_wire, "_json_text")

    @houweb.apiFunction("f")
    def plain(request: houweb.Request) -> list[int]:
        return [1, 2]

    @houweb.apiFunction("f")
    async def coroutine(request: houweb.Request) -> list[int]:
        return [3]

    port = (await serve()).port_numbers()[0]
    for name, expected in (("f.plain", [1, 2]), ("f.coroutine", [3])):
        call = json.dumps([name, [], {}]).encode()
        reply = await raw_request(port, post("/api", call, "application/json"))
        assert json.loads(body_of(reply)) == expected
        reply = await raw_request(port, post("/api", b"json=" + call))
        assert json.loads(body_of(reply)) == expected
    assert decoded == [False] * 4
    assert encoded == [False] * 4


def call_api(port: int, name: str) -> tuple[int, dict | str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api",
        data=json.dumps([name, [], {}]).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_unencodable_results_are_a_500_naming_the_problem_and_the_server_goes_on():
    # In a child process: before the fix, a cyclic result hung the reactor for good.
    with Child.houweb(f"--app={app('results_app.py')}", "--port=0") as child:
        port = child.port()
        code, body = call_api(port, "results.cyclic")
        assert code == 500 and "circular reference" in body["error"]
        assert "results.cyclic" in body["error"]
        code, body = call_api(port, "results.cyclic_dict")
        assert code == 500 and "not JSON serializable" in body["error"]
        code, body = call_api(port, "results.deep")
        assert code == 500 and "nested too deeply" in body["error"]
        assert call_api(port, "results.ping") == (200, "pong")


@pytest_twisted.ensureDeferred
async def test_api_json_nested_too_deeply_is_a_400_and_runs_nothing(serve):
    # json.loads raises RecursionError (not a ValueError) on deep nesting: it
    # was a bare 500 "Internal server error" and a logged traceback.
    ran: list[object] = []

    @houweb.apiFunction("f")
    def echo(request: houweb.Request, value: object) -> str:
        ran.append(value)
        return "ran"

    port = (await serve()).port_numbers()[0]
    deep = b"[" * 100_000 + b"]" * 100_000
    for body, content_type in (
        (b'["f.echo", [' + deep + b"], {}]", "application/json"),
        (b"json=" + b'["f.echo", [' + deep + b"], {}]", FORM),
    ):
        reply = await raw_request(port, post("/api", body, content_type))
        assert status(reply) == 400, reply[:200]
        assert "nested too deeply" in json.loads(body_of(reply))["error"]
    assert ran == []


def test_a_result_error_that_is_no_float_is_named_as_it_is():
    # An int too long to write out (sys.get_int_max_str_digits) was reported
    # as "out of range float value nan".
    try:
        _api_wire.encode_result(10**5000, "f.big", False)
    except _api_wire.ResultError as exc:
        message = str(exc)
    assert "nan" not in message and "digits" in message, message


@pytest_twisted.ensureDeferred
async def test_a_form_is_known_by_its_media_type_whatever_its_case_and_parameters(serve):
    seen: list[dict[str, str]] = []

    @houweb.urlHandler("/form")
    def form(request: houweb.Request) -> str:
        seen.append(request.POST())
        return "ok"

    port = (await serve()).port_numbers()[0]
    for content_type in [
        FORM,
        "Application/X-WWW-Form-URLEncoded ; charset=UTF-8",
        "text/plain",
        "application/x-www-form-urlencodedX",
    ]:
        assert status(await raw_request(port, post("/form", b"a=1", content_type))) == 200
    assert seen == [{"a": "1"}, {"a": "1"}, {}, {}]


def test_a_requests_media_type_is_read_from_its_headers_once():
    # The channel asks when the headers are in, the body's reader and the
    # snapshot later: the headers are not read again.
    from twisted.internet.testing import StringTransport
    from twisted.web import http

    from houweb._channel import HouwebRequest

    channel = http.HTTPChannel()
    channel.makeConnection(StringTransport())
    request = HouwebRequest(channel)
    request.requestHeaders.setRawHeaders(b"content-type", [b"Multipart/Form-Data; boundary=b"])
    assert request.houweb_media_type() == "multipart/form-data"
    request.requestHeaders.setRawHeaders(b"content-type", [b"text/plain"])
    assert request.houweb_media_type() == "multipart/form-data"
