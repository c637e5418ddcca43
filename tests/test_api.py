"""API functions over real HTTP: the /api wire protocol and its answers (spec §13)."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

import houweb
from houweb import _json_pieces

from .conftest import messages
from .support import raw_request

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def register_vector_length(**options):
    @houweb.apiFunction(namespace="geo", **options)
    def vector_length(request, x, y, z):
        """Return the length of the vector (x, y, z)."""
        if z is not None and z < 0:
            raise houweb.APIError("z must be positive")
        return (x * x + y * y + z * z) ** 0.5

    return vector_length


async def call(client, port, name, *args, **kwargs):
    """POST ``[name, args, kwargs]`` as style B, the way houweb.client does."""
    body = urllib.parse.urlencode({"json": json.dumps([name, list(args), kwargs])})
    return await client.post(port, "/api", data=body.encode(), headers=FORM)


async def main_port(serve, **arguments):
    return (await serve(**arguments)).port_numbers()[0]


def error_of(reply) -> object:
    assert reply.header("Content-Type") == "application/json"
    return json.loads(reply.body)["error"]


# The worked example of spec §13.4, byte for byte.


def http_post(port: int, content_type: str, body: bytes) -> bytes:
    return (
        b"POST /api HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
    ) % (port, content_type.encode(), len(body), body)


def split_reply(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], headers, body


@pytest_twisted.ensureDeferred
async def test_style_b_request_of_the_spec_gets_the_exact_answer(serve):
    register_vector_length(arg_types={"x": float, "y": float, "z": float})
    port = await main_port(serve)
    body = b"json=%5B%22geo.vector_length%22%2C+%5B1%2C+2%2C+3%5D%2C+%7B%7D%5D"
    assert len(body) == 65
    status, headers, answer = split_reply(
        await raw_request(port, http_post(port, "application/x-www-form-urlencoded", body))
    )
    assert status == "HTTP/1.1 200 OK"
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == "18"
    assert answer == b"3.7416573867739413"


@pytest_twisted.ensureDeferred
async def test_style_a_with_arg_types_gives_the_same_answer(serve):
    register_vector_length(arg_types={"x": float, "y": float, "z": float})
    port = await main_port(serve)
    body = b"cmd_function=geo.vector_length&x=1&y=2&z=3"
    _, headers, answer = split_reply(
        await raw_request(port, http_post(port, "application/x-www-form-urlencoded", body))
    )
    assert answer == b"3.7416573867739413" and headers["Content-Length"] == "18"


@pytest_twisted.ensureDeferred
async def test_style_a_without_arg_types_passes_strings(serve, client):
    seen = []

    @houweb.apiFunction()
    def echo(request, x):
        seen.append(x)
        return x

    port = await main_port(serve)
    reply = await client.post(port, "/api", data={"cmd_function": "echo", "x": "1"})
    assert reply.status == 200 and json.loads(reply.body) == "1" and seen == ["1"]


@pytest_twisted.ensureDeferred
async def test_json_body_extension_gives_the_same_answer(serve):
    register_vector_length()
    port = await main_port(serve)
    body = b'["geo.vector_length", [1, 2, 3], {}]'
    assert len(body) == 36
    _, headers, answer = split_reply(
        await raw_request(port, http_post(port, "application/json; charset=utf-8", body))
    )
    assert answer == b"3.7416573867739413" and headers["Content-Type"] == "application/json"


@pytest_twisted.ensureDeferred
async def test_api_error_is_a_422_with_the_exact_body(serve):
    register_vector_length()
    port = await main_port(serve)
    raw = await raw_request(
        port,
        http_post(
            port,
            "application/x-www-form-urlencoded",
            b"json=" + b'["geo.vector_length", [1, 2, -3], {}]',
        ),
    )
    status, headers, body = split_reply(raw)
    assert status == "HTTP/1.1 422 Unprocessable Entity"
    assert headers["Content-Type"] == "application/json" and headers["Content-Length"] == "31"
    assert body == b'{"error": "z must be positive"}'


@pytest_twisted.ensureDeferred
async def test_missing_argument_and_unknown_name_have_the_exact_bodies(serve, client):
    register_vector_length()
    port = await main_port(serve)
    missing = await call(client, port, "geo.vector_length", 1, 2)
    assert missing.status == 422
    assert missing.body == b'{"error": "geo.vector_length: missing a required argument: \'z\'"}'
    assert len(missing.body) == 64
    unknown = await call(client, port, "geo.vector_lenght", 1, 2, 3)
    assert unknown.status == 404
    assert unknown.body == b'{"error": "unknown API function \'geo.vector_lenght\'"}'
    assert len(unknown.body) == 53


@pytest_twisted.ensureDeferred
async def test_file_part_of_the_spec_arrives_as_an_uploaded_file(serve):
    received = {}

    @houweb.apiFunction("images")
    def store(request, name, data):
        received.update(name=name, file=data.name(), size=data.size(), content=data.read())
        return "stored"

    port = await main_port(serve)
    body = (
        b"--houweb-7d4a\r\n"
        b'Content-Disposition: form-data; name="json"\r\n\r\n'
        b'["images.store", [], {"name": "greeting"}]\r\n'
        b"--houweb-7d4a\r\n"
        b'Content-Disposition: form-data; name="data"; filename="hello.txt"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        b"hello\r\n"
        b"--houweb-7d4a--\r\n"
    )
    assert len(body) == 254
    raw = await raw_request(
        port, http_post(port, "multipart/form-data; boundary=houweb-7d4a", body)
    )
    assert split_reply(raw)[2] == b'"stored"'
    assert received == {"name": "greeting", "file": "hello.txt", "size": 5, "content": b"hello"}


# Calls and results.


@pytest_twisted.ensureDeferred
async def test_the_request_comes_first_and_json_types_arrive_intact(serve, client):
    seen = {}

    @houweb.apiFunction()
    def f(request, a, b=None):
        seen.update(request=request, a=a, b=b)
        return None

    port = await main_port(serve)
    reply = await call(client, port, "f", [1, 2.5, None], b={"k": True})
    assert reply.status == 200 and reply.body == b"null"
    assert isinstance(seen["request"], houweb.Request) and seen["request"].path() == "/api"
    assert seen["a"] == [1, 2.5, None] and seen["b"] == {"k": True}


@pytest_twisted.ensureDeferred
async def test_a_namespaced_function_is_not_found_by_its_bare_name(serve, client):
    register_vector_length()
    port = await main_port(serve)
    reply = await call(client, port, "vector_length", 1, 2, 3)
    assert reply.status == 404 and "unknown API function" in error_of(reply)


@pytest.mark.parametrize(
    ("result", "body"),
    [
        (None, b"null"),
        ({"a": [1, None, True]}, b'{"a": [1, null, true]}'),
        ("pong", b'"pong"'),
        ([], b"[]"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_results_are_sent_as_json(serve, client, result, body):
    houweb.apiFunction()(lambda request: result)
    port = await main_port(serve)
    reply = await call(client, port, "<lambda>")
    assert reply.status == 200 and reply.body == body
    assert reply.header("Content-Type") == "application/json"


@pytest.mark.parametrize("result", [b"\x00\x01", bytearray(b"\x00\x01"), memoryview(b"\x00\x01")])
@pytest_twisted.ensureDeferred
async def test_bytes_results_are_sent_as_octet_stream(serve, client, result):
    houweb.apiFunction()(lambda request: result)
    port = await main_port(serve)
    reply = await call(client, port, "<lambda>")
    assert reply.body == b"\x00\x01"
    assert reply.header("Content-Type") == "application/octet-stream"


@pytest_twisted.ensureDeferred
async def test_return_binary_sends_a_str_as_utf8_bytes(serve, client):
    @houweb.apiFunction(return_binary=True)
    def text(request):
        return "xyzé"

    port = await main_port(serve)
    reply = await call(client, port, "text")
    assert reply.body == "xyzé".encode()
    assert reply.header("Content-Type") == "application/octet-stream"


@pytest_twisted.ensureDeferred
async def test_return_binary_refuses_other_results_naming_the_type(serve, client):
    @houweb.apiFunction("geo", return_binary=True)
    def f(request):
        return 42

    port = await main_port(serve)
    reply = await call(client, port, "geo.f")
    assert reply.status == 500
    assert error_of(reply) == "result of geo.f cannot be sent as binary: object of type int"


@pytest_twisted.ensureDeferred
async def test_a_returned_response_passes_through(serve, client):
    @houweb.apiFunction()
    def page(request):
        response = houweb.Response("<b>hi</b>", 201)
        response.setHeader("X-Made", "by hand")
        return response

    port = await main_port(serve)
    reply = await call(client, port, "page")
    assert reply.status == 201 and reply.body == b"<b>hi</b>"
    assert reply.header("X-Made") == "by hand" and reply.header("Content-Type") == "text/html"


@pytest_twisted.ensureDeferred
async def test_a_file_response_is_streamed_from_an_api_function(serve, client, tmp_path):
    path = tmp_path / "result.bin"
    path.write_bytes(b"r" * 100_000)

    @houweb.apiFunction()
    def download(request):
        return houweb.fileResponse(str(path), download_as_filename="result.bin")

    port = await main_port(serve)
    reply = await call(client, port, "download")
    assert reply.status == 200 and reply.body == b"r" * 100_000
    assert "result.bin" in reply.header("Content-Disposition")


# Errors.


@pytest_twisted.ensureDeferred
async def test_api_error_is_json_even_when_html_is_asked_for(serve, client):
    @houweb.apiFunction()
    def bad(request):
        raise houweb.APIError("bad")

    port = await main_port(serve)
    body = urllib.parse.urlencode({"json": '["bad", [], {}]'}).encode()
    reply = await client.post(port, "/api", data=body, headers={**FORM, "Accept": "text/html"})
    assert reply.status == 422 and reply.body == b'{"error": "bad"}'


@pytest_twisted.ensureDeferred
async def test_an_api_error_with_an_object_stays_an_object(serve, client):
    @houweb.apiFunction()
    def bad(request):
        raise houweb.APIError({"field": "x"})

    port = await main_port(serve)
    reply = await call(client, port, "bad")
    assert reply.status == 422 and json.loads(reply.body) == {"error": {"field": "x"}}


@pytest_twisted.ensureDeferred
async def test_an_api_error_that_cannot_be_encoded_is_sent_as_its_str(serve, client):
    @houweb.apiFunction()
    def bad(request):
        raise houweb.APIError({1, 2})

    port = await main_port(serve)
    reply = await call(client, port, "bad")
    assert reply.status == 422 and error_of(reply) == "{1, 2}"


@pytest_twisted.ensureDeferred
async def test_an_unexpected_keyword_is_a_422(serve, client):
    register_vector_length()
    port = await main_port(serve)
    reply = await call(client, port, "geo.vector_length", 1, 2, 3, w=4)
    assert reply.status == 422
    assert error_of(reply) == "geo.vector_length: got an unexpected keyword argument 'w'"


@pytest_twisted.ensureDeferred
async def test_a_failed_arg_types_conversion_is_a_422_naming_the_argument(serve, client):
    called = []

    @houweb.apiFunction(arg_types={"x": int})
    def f(request, x):
        called.append(x)

    port = await main_port(serve)
    reply = await call(client, port, "f", "abc")
    assert reply.status == 422
    assert error_of(reply) == "argument 'x': cannot convert 'abc' with int"
    assert called == []


@pytest_twisted.ensureDeferred
async def test_arg_types_convert_positional_keyword_and_extra_keyword_arguments(serve, client):
    seen = []

    @houweb.apiFunction(arg_types={"a": float, "b": float, "c": int, "missing": int})
    def f(request, a, b=1, missing=None, **rest):
        seen.append((a, b, missing, rest))
        return "ok"

    port = await main_port(serve)
    await call(client, port, "f", "1.5", b="2", c="3")
    assert seen == [(1.5, 2.0, None, {"c": 3})]


@pytest_twisted.ensureDeferred
async def test_arg_types_run_off_the_reactor_thread(serve, client):
    threads = []

    def record(value):
        threads.append(threading.current_thread())
        return value

    houweb.apiFunction(arg_types={"x": record})(lambda request, x: x)
    port = await main_port(serve)
    await call(client, port, "<lambda>", 1)
    assert threads and threads[0] is not threading.current_thread()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "missing form field 'json' or 'cmd_function'"),
        (b"other=1", "missing form field 'json' or 'cmd_function'"),
        (
            b"json=nope",
            "form field 'json' is not valid JSON: Expecting value: line 1 column 1 (char 0)",
        ),
        (
            b"json=%5B%22f%22%2C+%5B%5D%5D",
            "form field 'json' must be a JSON array [name, args, kwargs]",
        ),
        (
            b"json=%5B%22%22%2C+%5B%5D%2C+%7B%7D%5D",
            "form field 'json' must be a JSON array [name, args, kwargs]",
        ),
        (b"json=%7B%7D", "form field 'json' must be a JSON array [name, args, kwargs]"),
        (b"cmd_function=", "form field 'cmd_function' is empty"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_calls_are_400_saying_what_is_wrong(serve, client, body, error):
    houweb.apiFunction()(lambda request: "ok")
    port = await main_port(serve)
    reply = await client.post(port, "/api", data=body, headers=FORM)
    assert reply.status == 400 and error_of(reply) == error
    assert (await call(client, port, "<lambda>")).status == 200


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"[", "request body is not valid JSON: Expecting value: line 1 column 2 (char 1)"),
        (b'["f", [], []]', "request body must be a JSON array [name, args, kwargs]"),
        (b'"\xff"', "request body could not be decoded: "),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_json_bodies_are_400(serve, client, body, error):
    port = await main_port(serve)
    reply = await client.post(port, "/api", data=body, headers={"Content-Type": "application/json"})
    assert reply.status == 400 and error_of(reply).startswith(error)


@pytest_twisted.ensureDeferred
async def test_an_unsupported_content_type_is_a_400_naming_it(serve, client):
    port = await main_port(serve)
    reply = await client.post(port, "/api", data=b"hello", headers={"Content-Type": "text/plain"})
    assert reply.status == 400
    assert error_of(reply) == "unsupported Content-Type 'text/plain' for /api"


@pytest_twisted.ensureDeferred
async def test_a_file_named_like_a_keyword_argument_is_a_400(serve, client):
    houweb.apiFunction()(lambda request, data: "ok")
    port = await main_port(serve)
    reply = await client.post(
        port,
        "/api",
        data={"json": '["<lambda>", [], {"data": 1}]'},
        files={"data": ("a.txt", "text/plain", b"abc")},
    )
    assert reply.status == 400 and "'data'" in error_of(reply)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest_twisted.ensureDeferred
async def test_other_methods_are_405_allowing_post(serve, client, method):
    port = await main_port(serve)
    reply = await client.request(method, port, "/api/")
    assert reply.status == 405 and reply.header("Allow") == "POST"
    assert error_of(reply) == "API functions must be called with POST"


@pytest_twisted.ensureDeferred
async def test_an_exception_is_a_500_without_details_outside_debug(serve, client, logged):
    @houweb.apiFunction()
    def boom(request):
        raise ValueError("boom")

    port = await main_port(serve)
    reply = await call(client, port, "boom")
    assert reply.status == 500 and reply.body == b'{"error": "Internal server error"}'
    assert "ValueError: boom" in messages(logged) or any(
        "boom" in str(event.get("log_failure", "")) for event in logged
    )


@pytest_twisted.ensureDeferred
async def test_an_exception_in_debug_mode_gives_its_message_and_traceback(serve, client):
    @houweb.apiFunction()
    def boom(request):
        raise ValueError("boom")

    @houweb.apiFunction()
    def silent(request):
        raise RuntimeError()

    port = await main_port(serve, debug=True)
    reply = json.loads((await call(client, port, "boom")).body)
    assert reply["error"] == "ValueError: boom"
    assert reply["traceback"].startswith("Traceback (most recent call last):\n")
    assert "in boom" in reply["traceback"]
    assert json.loads((await call(client, port, "silent")).body)["error"] == "RuntimeError"


@pytest_twisted.ensureDeferred
async def test_unencodable_results_are_500_naming_the_reason_and_the_server_goes_on(serve, client):
    values = iter(
        [
            {1, 2},
            float("nan"),
            [1, {"x": float("-inf")}],
            {(1, 2): 3},
            {"rows": [{"id": i} for i in range(300)], (1,): 2},  # encoded in pieces
            "fine",
        ]
    )

    @houweb.apiFunction("geo")
    def f(request):
        return next(values)

    port = await main_port(serve)
    errors = [error_of(await call(client, port, "geo.f")) for _ in range(5)]
    keys = "keys must be str, int, float, bool or None, not tuple"
    assert errors == [
        "result of geo.f is not JSON serializable: object of type set",
        "result of geo.f is not JSON serializable: out of range float value nan",
        "result of geo.f is not JSON serializable: out of range float value -inf",
        f"result of geo.f is not JSON serializable: {keys}",
        f"result of geo.f is not JSON serializable: {keys}",
    ]
    assert (await call(client, port, "geo.f")).body == b'"fine"'


@pytest_twisted.ensureDeferred
async def test_a_nan_at_the_end_of_a_large_result_is_named_without_a_walk_through_all_of_it(
    serve, client
):
    # The encoding of a large result is paced (it steps aside for small
    # requests, under SCHED_BATCH); the NaN it fails on was then looked for
    # through the whole result, unpaced, under the normal policy: half a
    # second of the GIL for 100,000 rows, longer than the encoding itself.
    # Only the part whose encoding failed is looked into now. Rows of a dict
    # subclass count the looks (json.dumps takes their items(), the search
    # their values()).
    looked = [0]

    class Row(dict):  # type: ignore[type-arg]
        def values(self) -> Any:
            looked[0] += 1
            return super().values()

    rows = [Row(id=i) for i in range(4000)]

    @houweb.apiFunction("geo")
    def f(request):
        return [*rows, float("nan")]

    port = await main_port(serve)
    assert error_of(await call(client, port, "geo.f")) == (
        "result of geo.f is not JSON serializable: out of range float value nan"
    )
    assert looked[0] <= _json_pieces.GROUP  # the failing group's rows at most, not 4000


@pytest_twisted.ensureDeferred
async def test_api_error_in_a_url_handler_is_an_ordinary_500(serve, client):
    @houweb.urlHandler("/u")
    def handler(request):
        raise houweb.APIError("bad")

    port = await main_port(serve)
    assert (await client.get(port, "/u")).status == 500


# Threads, async functions, ports.


@pytest_twisted.ensureDeferred
async def test_plain_functions_run_in_the_pool(serve, client):
    threads = []

    @houweb.apiFunction()
    def where(request):
        threads.append(threading.current_thread().name)

    port = await main_port(serve)
    await call(client, port, "where")
    assert threads[0].startswith("PoolThread-houweb")


@pytest_twisted.ensureDeferred
async def test_async_functions_are_awaited_on_the_reactor(serve, client):
    threads = []

    @houweb.apiFunction("a")
    async def slow_add(request, x, y):
        threads.append(threading.current_thread())
        await asyncio.sleep(0.01)
        await task.deferLater(reactor, 0.01, lambda: None)
        return x + y

    @houweb.apiFunction("a", arg_types={"x": int})
    async def refuse(request, x):
        raise houweb.APIError(f"no {x}")

    port = await main_port(serve)
    reply = await call(client, port, "a.slow_add", 1, 2)
    assert reply.body == b"3" and threads == [threading.current_thread()]
    refused = await call(client, port, "a.refuse", "7")
    assert refused.status == 422 and error_of(refused) == "no 7"


@pytest_twisted.ensureDeferred
async def test_functions_answer_only_on_their_ports(serve, client):
    server = await serve(ports=[0])
    main, extra = server.port_numbers()

    @houweb.apiFunction(ports=[extra])
    def add(request, a, b):
        return a + b

    assert (await call(client, main, "add", 1, 2)).status == 404
    replies = await defer.gatherResults(
        [defer.ensureDeferred(call(client, extra, "add", i, 1)) for i in range(20)]
    )
    assert [json.loads(reply.body) for reply in replies] == [i + 1 for i in range(20)]


@pytest_twisted.ensureDeferred
async def test_a_function_bound_to_a_port_beats_one_bound_to_all(serve, client):
    server = await serve(ports=[0])
    main, extra = server.port_numbers()
    houweb.apiFunction(ports=[-1])(lambda request: "everywhere")

    def specific(request):
        return "extra"

    specific.__name__ = "<lambda>"
    houweb.apiFunction(ports=[extra])(specific)
    assert json.loads((await call(client, main, "<lambda>")).body) == "everywhere"
    assert json.loads((await call(client, extra, "<lambda>")).body) == "extra"


@pytest_twisted.ensureDeferred
async def test_registering_the_same_name_again_replaces_it_with_a_warning(serve, client, logged):
    houweb.apiFunction()(lambda request: 1)
    houweb.apiFunction()(lambda request: 2)
    port = await main_port(serve)
    assert (await call(client, port, "<lambda>")).body == b"2"
    assert "API function <lambda> replaced" in messages(logged)


@pytest_twisted.ensureDeferred
async def test_the_query_string_does_not_select_the_call(serve, client):
    houweb.apiFunction()(lambda request: "body wins")
    port = await main_port(serve)
    body = urllib.parse.urlencode({"json": '["<lambda>", [], {}]'}).encode()
    reply = await client.post(port, "/api?cmd_function=other", data=body, headers=FORM)
    assert json.loads(reply.body) == "body wins"


@pytest_twisted.ensureDeferred
async def test_json_wins_over_cmd_function(serve, client):
    houweb.apiFunction()(lambda request: "json")
    port = await main_port(serve)
    body = urllib.parse.urlencode({"cmd_function": "nope", "json": '["<lambda>", [], {}]'})
    reply = await client.post(port, "/api", data=body.encode(), headers=FORM)
    assert json.loads(reply.body) == "json"


@pytest_twisted.ensureDeferred
async def test_an_oversized_call_is_a_json_413(serve, client):
    port = await main_port(serve, max_request_size=100)
    reply = await call(client, port, "f", "x" * 200)
    assert reply.status == 413
    assert error_of(reply) == "request body exceeds the maximum request size of 100 bytes"


# Registration.


def test_the_decorator_returns_the_function_itself(registry):
    def f(request):
        return 1

    assert houweb.apiFunction("ns")(f) is f
    assert registry.function("ns.f", 0, 0).function is f


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"namespace": "houweb"}, ValueError),
        ({"namespace": 3}, TypeError),
        ({"ports": [70000]}, ValueError),
        ({"ports": "main"}, TypeError),
        ({"arg_types": {"x": 3}}, TypeError),
    ],
)
def test_bad_registrations_raise_at_once(registry, arguments, error):
    with pytest.raises(error):
        houweb.apiFunction(**arguments)


def test_a_decorator_used_without_parentheses_says_how_to_use_it(registry):
    with pytest.raises(TypeError, match=r"write @apiFunction\(\)"):

        @houweb.apiFunction
        def f(request):
            return 1


# Introspection.


#: The keys of spec §13.6; houweb.functions adds the describer's schemas.
SPEC_KEYS = ("name", "signature", "doc", "return_binary", "ports")


@pytest_twisted.ensureDeferred
async def test_houweb_functions_lists_the_functions_visible_on_the_port(serve, client):
    server = await serve(ports=[0])
    main, extra = server.port_numbers()
    register_vector_length()
    houweb.apiFunction(return_binary=True, ports=[extra])(lambda request, data=b"": data)

    listed = json.loads((await call(client, main, "houweb.functions")).body)
    assert [{key: entry[key] for key in SPEC_KEYS} for entry in listed] == [
        {
            "name": "geo.vector_length",
            "signature": "(x, y, z)",
            "doc": "Return the length of the vector (x, y, z).",
            "return_binary": False,
            "ports": [0],
        }
    ]
    # And the JSON Schemas of houweb._describe (tests/test_api_docs.py).
    assert listed[0]["parameters"]["required"] == ["x", "y", "z"]
    on_extra = json.loads((await call(client, extra, "houweb.functions")).body)
    assert [entry["name"] for entry in on_extra] == ["<lambda>"]
    assert on_extra[0]["signature"] == "(data=b'')" and on_extra[0]["ports"] == [extra]


@pytest_twisted.ensureDeferred
async def test_houweb_functions_takes_no_arguments(serve, client):
    port = await main_port(serve)
    reply = await call(client, port, "houweb.functions", 1)
    assert reply.status == 422 and error_of(reply).startswith("houweb.functions: ")


@pytest_twisted.ensureDeferred
async def test_api_calls_after_the_first_import_nothing_on_the_reactor(serve, client, monkeypatch):
    # The /api endpoint imported houweb._api inside its answer on every call
    # (an import-machinery pass, some 2% of the reactor thread).
    import builtins

    register_vector_length()
    port = await main_port(serve)
    reply = await call(client, port, "geo.vector_length", 1, 2, 2)
    assert reply.body == b"3.0"
    imports: list[str] = []
    real_import = builtins.__import__

    def noting_import(name, globals=None, locals=None, fromlist=(), level=0):
        if threading.current_thread() is threading.main_thread():
            imports.append(name)
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", noting_import)
    for _ in range(3):
        reply = await call(client, port, "geo.vector_length", 1, 2, 2)
        assert reply.body == b"3.0"
    monkeypatch.setattr(builtins, "__import__", real_import)
    assert "_api" not in imports
