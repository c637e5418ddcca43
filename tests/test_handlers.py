"""Handler classes: URLHandler and AsyncURLHandler (spec §15, §16 item 108)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor, task

import houweb

from .conftest import messages
from .support import sleep


def failures(events) -> str:
    """The exceptions logged as errors, as text."""
    return "\n".join(str(e.get("log_failure", "")) for e in events if "log_failure" in e)


def _answering(text: str, methods=None, **kwargs) -> houweb.URLHandler:
    class Answer(houweb.URLHandler):
        def handle(self, request):
            return houweb.Response(f"{text} {request.method()} {request.path()}")

    return Answer("/h", methods=methods, **kwargs)


@pytest_twisted.ensureDeferred
async def test_url_handler_instance_answers_in_the_pool(serve, client):
    threads = []

    class Hello(houweb.URLHandler):
        def handle(self, request):
            threads.append(threading.current_thread())
            return houweb.Response("hello", content_type="text/plain")

    Hello("/hello")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/hello/")
    assert (reply.status, reply.text, reply.header("Content-Type")) == (200, "hello", "text/plain")
    assert threads[0].name.startswith("PoolThread-houweb")


@pytest_twisted.ensureDeferred
async def test_method_not_listed_is_405_with_allow(serve, client):
    _answering("h", methods=["GET"])
    port = (await serve()).port_numbers()[0]
    reply = await client.post(port, "/h", headers={"Accept": "application/json"})
    assert reply.status == 405
    assert reply.header("Allow") == "GET"
    assert reply.body == b'{"error": "method POST not allowed"}'


@pytest_twisted.ensureDeferred
async def test_allow_lists_every_method_given(serve, client):
    _answering("h", methods=["get", "PUT"])
    port = (await serve()).port_numbers()[0]
    reply = await client.request("DELETE", port, "/h")
    assert (reply.status, reply.header("Allow")) == (405, "GET, PUT")
    assert "<h1>method DELETE not allowed</h1>" in reply.text
    assert (await client.request("PUT", port, "/h")).text == "h PUT /h"


@pytest_twisted.ensureDeferred
async def test_head_is_allowed_when_get_is(serve, client):
    _answering("h", methods=["GET"])
    port = (await serve()).port_numbers()[0]
    reply = await client.request("HEAD", port, "/h")
    assert (reply.status, reply.body, reply.header("Content-Length")) == (200, b"", "9")


@pytest_twisted.ensureDeferred
async def test_methods_none_accepts_every_method(serve, client):
    _answering("h")
    port = (await serve()).port_numbers()[0]
    for method in ("GET", "POST", "PATCH", "OPTIONS", "DELETE"):
        assert (await client.request(method, port, "/h")).text == f"h {method} /h"


@pytest_twisted.ensureDeferred
async def test_allows_partial_matches_paths_below(serve, client):
    _answering("h", allows_partial=True)
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/h/a/b")).text == "h GET /h/a/b"
    assert (await client.get(port, "/hx")).status == 404


@pytest_twisted.ensureDeferred
async def test_without_allows_partial_paths_below_are_404(serve, client):
    _answering("h")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/h/a")).status == 404


@pytest_twisted.ensureDeferred
async def test_ports_bind_the_handler(serve, client):
    server = await serve(ports=[0])
    main, extra = server.port_numbers()
    _answering("h", ports=[extra])
    assert (await client.get(main, "/h")).status == 404
    assert (await client.get(extra, "/h")).status == 200


@pytest_twisted.ensureDeferred
async def test_same_path_again_replaces_with_a_warning(serve, client, logged):
    _answering("first")
    _answering("second")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/h")).text == "second GET /h"
    assert "exact registration for /h replaced" in messages(logged)


@pytest_twisted.ensureDeferred
async def test_handle_may_return_str_like_url_handler_functions(serve, client):
    class Text(houweb.URLHandler):
        def handle(self, request):
            return "hi"

    Text("/t")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/t")
    assert (reply.status, reply.text, reply.header("Content-Type")) == (200, "hi", "text/html")


@pytest_twisted.ensureDeferred
async def test_handle_not_overridden_is_500(serve, client, logged):
    houweb.URLHandler("/bare")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/bare")).status == 500
    assert "does not override handle()" in failures(logged)


def test_bad_arguments_raise_before_registering(registry):
    with pytest.raises(ValueError):
        houweb.URLHandler("hello")
    with pytest.raises(ValueError):
        houweb.URLHandler("/api")
    with pytest.raises(TypeError):
        houweb.URLHandler("/x", methods="GET")
    with pytest.raises(ValueError):
        houweb.URLHandler("/x", methods=["G E T"])
    with pytest.raises(ValueError):
        houweb.URLHandler("/x", ports=[70000])
    assert registry.is_empty()


def test_instances_describe_themselves(registry):
    handler = houweb.URLHandler("/x/", methods=["get"])
    assert (handler.path(), handler.methods()) == ("/x/", ["GET"])
    assert handler.allows("HEAD") and not handler.allows("POST")
    assert houweb.URLHandler("/y").methods() is None


# AsyncURLHandler


class Sends(houweb.AsyncURLHandler):
    """Answers after awaiting both asyncio and Twisted."""

    def __init__(self, path: str, **kwargs) -> None:
        super().__init__(path, **kwargs)
        self.threads: list[threading.Thread] = []

    async def handle(self, request):
        self.threads.append(threading.current_thread())
        await asyncio.sleep(0.01)
        await task.deferLater(reactor, 0.01, lambda: None)
        request.send(houweb.Response(f"sent {request.method()}"))


@pytest_twisted.ensureDeferred
async def test_async_handler_answers_with_request_send_on_the_reactor(serve, client):
    handler = Sends("/a", methods=["GET", "POST"])
    port = (await serve()).port_numbers()[0]
    reply = await client.post(port, "/a")
    assert (reply.status, reply.text) == (200, "sent POST")
    assert handler.threads == [threading.current_thread()]
    assert (await client.request("PUT", port, "/a")).status == 405


@pytest_twisted.ensureDeferred
async def test_answer_is_sent_before_handle_finishes(serve, client):
    finished = []
    release = asyncio.Event()

    class Early(houweb.AsyncURLHandler):
        async def handle(self, request):
            request.send(houweb.Response("early"))
            await release.wait()
            finished.append(True)

    Early("/e")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/e")).text == "early"
    assert finished == []
    release.set()


@pytest_twisted.ensureDeferred
async def test_second_send_raises_and_the_first_stands(serve, client):
    errors = []

    class Twice(houweb.AsyncURLHandler):
        async def handle(self, request):
            request.send(houweb.Response("first"))
            try:
                request.send(houweb.Response("second"))
            except RuntimeError as exc:
                errors.append(str(exc))

    Twice("/twice")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/twice")).text == "first"
    assert errors == ["request.send() was already called for this request"]


@pytest_twisted.ensureDeferred
async def test_returning_without_sending_is_500(serve, client, logged):
    class Silent(houweb.AsyncURLHandler):
        async def handle(self, request):
            await asyncio.sleep(0)

    Silent("/silent")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/silent", headers={"Accept": "application/json"})
    assert reply.status == 500
    assert "returned without calling request.send()" in reply.text
    assert "returned without calling request.send()" in messages(logged)
    assert (await client.get(port, "/silent")).status == 500  # still serving


@pytest_twisted.ensureDeferred
async def test_a_returned_response_is_sent(serve, client):
    class Returns(houweb.AsyncURLHandler):
        async def handle(self, request):
            return houweb.Response("returned", 201)

    Returns("/r")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/r")
    assert (reply.status, reply.text) == (201, "returned")


@pytest_twisted.ensureDeferred
async def test_a_returned_value_of_another_type_is_500(serve, client):
    class Returns(houweb.AsyncURLHandler):
        async def handle(self, request):
            return 42

    Returns("/r")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/r")
    assert reply.status == 500 and "returned int" in reply.text


@pytest_twisted.ensureDeferred
async def test_raising_before_send_is_500(serve, client, logged):
    class Raises(houweb.AsyncURLHandler):
        async def handle(self, request):
            raise ValueError("boom")

    Raises("/boom")
    port = (await serve()).port_numbers()[0]
    reply = await client.get(port, "/boom")
    assert reply.status == 500 and "Traceback" not in reply.text
    assert "boom" in failures(logged)


@pytest_twisted.ensureDeferred
async def test_raising_after_send_keeps_the_answer_and_logs(serve, client, logged):
    class Raises(houweb.AsyncURLHandler):
        async def handle(self, request):
            request.send(houweb.Response("fine"))
            await asyncio.sleep(0.01)
            raise ValueError("late")

    Raises("/late")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/late")).text == "fine"
    for _ in range(100):
        if "late" in failures(logged):
            break
        await sleep(0.01)
    assert "raised after answering" in messages(logged)


@pytest_twisted.ensureDeferred
async def test_send_takes_only_a_response(serve, client):
    errors = []

    class Wrong(houweb.AsyncURLHandler):
        async def handle(self, request):
            try:
                request.send("text")
            except TypeError as exc:
                errors.append(exc)
            request.send(houweb.Response("ok"))

    Wrong("/w")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/w")).text == "ok"
    assert len(errors) == 1


@pytest_twisted.ensureDeferred
async def test_send_from_another_thread_answers(serve, client):
    class Threaded(houweb.AsyncURLHandler):
        async def handle(self, request):
            worker = threading.Thread(target=request.send, args=(houweb.Response("thread"),))
            worker.start()

    Threaded("/th")
    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/th")).text == "thread"


@pytest_twisted.ensureDeferred
async def test_request_send_outside_async_handlers_raises(serve, client):
    @houweb.urlHandler("/plain")
    def plain(request):
        try:
            request.send(houweb.Response("no"))
        except RuntimeError as exc:
            return f"refused: {exc}"
        return "sent?"

    port = (await serve()).port_numbers()[0]
    assert (await client.get(port, "/plain")).text.startswith("refused: Request.send() works only")
